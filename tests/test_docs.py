"""The READMEs name files that exist: a renamed or deleted file fails here, not in a reader's hands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "BENCHMARKS.md", "airflow_cleanrooms/emulator/README.md", "docker/README.md"]
# `path/with/a/slash.ext` or `name.ext` in backticks, as the docs write file names.
FILE_NAME = re.compile(r"`((?:[\w.-]+/)*[\w-]+\.(?:py|json|md|txt|toml|yaml|yml|cfg|sh))`")
# Produced by a run, or inside a container image, not in the repository.
NOT_IN_REPOSITORY = ("artifacts/", "docker/.env", "/opt/")


def documented_files(doc: str) -> list[str]:
    text = (ROOT / doc).read_text()
    return sorted({name for name in FILE_NAME.findall(text) if not any(p in name for p in NOT_IN_REPOSITORY)})


def exists(name: str, doc: str) -> bool:
    """A name is found from the repository root, beside the doc, or (a bare file name) anywhere in it."""
    if (ROOT / name).exists() or (ROOT / doc).parent.joinpath(name).exists():
        return True
    if "/" not in name:
        return any(ROOT.glob(f"[!.]*/**/{name}"))
    return False


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_a_readme_names_exists(doc: str) -> None:
    names = documented_files(doc)
    assert names, f"{doc} names no files: the pattern no longer matches how it writes them"
    missing = [name for name in names if not exists(name, doc)]
    assert not missing, f"{doc} names files that do not exist: {missing}"

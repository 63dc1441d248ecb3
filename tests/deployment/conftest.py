"""Shared helpers for the deployment checks (docker/ lint, plain-process topology, browser).

These checks need tools from Debian's packages (``scripts/ci-system-deps`` installs them). On a
developer box without them they skip with the reason; under CI (``CI=true``) a missing tool is a
failure, so a green CI run always means the checks really ran.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"


def missing_tool(reason: str) -> NoReturn:
    """Skip on a developer box; fail in CI, where scripts/ci-system-deps must have installed it."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI must run this check: call scripts/ci-system-deps first)")
    pytest.skip(f"{reason}; run scripts/ci-system-deps (as root) to install it")


def venv_tool(name: str) -> str | None:
    """A console script of the running interpreter's environment, else one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)

"""
Test-wide Airflow setup.

Airflow reads its configuration at import time, so the test ``AIRFLOW_HOME`` (a fresh temporary
folder, SQLite metadata database) is set here, before any test module imports Airflow. Tests that
need the metadata database (``dag.test()``, real task execution) ask for the ``airflow_db``
fixture, which runs ``airflow db migrate`` once per session. DAG files a test runs must live in
``airflow_dags_folder`` (Airflow 3.3's ``dag.test()`` syncs the bundle that holds the file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="cleanrooms-airflow-home-"))
(_HOME / "dags").mkdir()
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
if metadata.version("apache-airflow").startswith("2."):
    # Airflow 2's unit-test mode defaults to LocalExecutor, which refuses SQLite; dag.test() runs tasks in
    # process, and its reschedule check asks the configured executor (Airflow 3 has no SequentialExecutor).
    os.environ["AIRFLOW__CORE__EXECUTOR"] = "SequentialExecutor"
# Tests never reach real AWS: dummy credentials and a fixed region for every boto3 client.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)
# Where the OpenLineage provider is installed (every stage), its file transport writes each event of a task
# that runs through Airflow (dag.test()) here, one JSON file per event: the lineage tests read them back.
_OPENLINEAGE_EVENTS = _HOME / "openlineage"
try:
    metadata.version("apache-airflow-providers-openlineage")
except metadata.PackageNotFoundError:
    _OPENLINEAGE_INSTALLED = False
else:
    _OPENLINEAGE_INSTALLED = True
    _OPENLINEAGE_EVENTS.mkdir()
    os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
        {"type": "file", "log_file_path": str(_OPENLINEAGE_EVENTS / "ol")}
    )
    os.environ["AIRFLOW__OPENLINEAGE__NAMESPACE"] = "cleanrooms-tests"


def pytest_configure(config: pytest.Config) -> None:
    """Under ``CLEANROOMS_ML_TEST_WHEEL=1`` (the MWAA stages), prove the tests run the installed wheel.

    The stages run pytest with ``--import-mode=append`` and ``PYTHONSAFEPATH=1``, so neither pytest nor
    a ``python -m`` subprocess puts the repository's source ahead of site-packages; this check fails
    the run if something still did.
    """
    if os.environ.get("CLEANROOMS_ML_TEST_WHEEL") != "1":
        return
    import airflow_cleanrooms

    source = Path(__file__).resolve().parent.parent
    location = Path(airflow_cleanrooms.__file__).resolve()
    if location.is_relative_to(source / "airflow_cleanrooms"):
        raise pytest.UsageError(f"CLEANROOMS_ML_TEST_WHEEL=1, but airflow_cleanrooms comes from {location}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def openlineage_events() -> Path:
    """The folder the OpenLineage file transport writes to; skips where the provider is not installed."""
    if not _OPENLINEAGE_INSTALLED:
        pytest.skip("the OpenLineage provider is not installed")
    return _OPENLINEAGE_EVENTS


@pytest.fixture(scope="session")
def airflow_dags_folder() -> Path:
    return _HOME / "dags"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Migrate the test metadata database once per session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
    )
    return _HOME


_SECRETS_MASKER_MODULES = (
    "airflow.sdk._shared.secrets_masker.secrets_masker",  # Airflow 3.1+ (Task SDK)
    "airflow._shared.secrets_masker.secrets_masker",  # Airflow 3.1+ (core)
    "airflow.sdk.execution_time.secrets_masker",  # Airflow 3.0
    "airflow.utils.log.secrets_masker",
)


def _secrets_maskers() -> dict[int, Any]:
    maskers: dict[int, Any] = {}
    for name in _SECRETS_MASKER_MODULES:
        factory = getattr(sys.modules.get(name), "_secrets_masker", None)
        masker = factory() if callable(factory) else None
        if masker is not None and hasattr(masker, "patterns"):
            maskers[id(masker)] = masker
    return maskers


@pytest.fixture(autouse=True)
def _secrets_masker_per_test() -> Iterator[None]:
    """
    Each test starts with the secrets masker it found: the values a test masks are forgotten after it.

    The masker is process-wide and joins its patterns in set order, so a short secret an earlier test
    masked could mask part of a longer one in a later test ("hunter2" turned "hunter2-db-secret" into
    "***-db-secret", depending on the hash seed).
    """
    saved = {key: (set(masker.patterns), masker.replacer) for key, masker in _secrets_maskers().items()}
    yield
    for key, masker in _secrets_maskers().items():
        masker.patterns, masker.replacer = saved.get(key, (set(), None))

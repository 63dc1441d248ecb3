"""Fixtures for the example-DAG tests: the repo's ``dags/`` parsed, and DAG runs with ``dag.test()``."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dags_support import POLL_SECONDS_ENV, REPO_DAGS, RUN_AFTER, dag_bag

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG


@pytest.fixture(scope="session")
def repo_dag_bag() -> Any:
    """The repo's ``dags/`` parsed once (default polling interval, as a deployment would see it)."""
    return dag_bag(REPO_DAGS)


@pytest.fixture
def example_dags(airflow_dags_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example DAG files copied into the configured dags folder, polling every second."""
    monkeypatch.setenv(POLL_SECONDS_ENV, "1")
    for source in sorted(REPO_DAGS.glob("example_cleanrooms_ml_*.py")):
        shutil.copy2(source, airflow_dags_folder / source.name)
    return airflow_dags_folder


@pytest.fixture
def aws_default_emulator(cleanrooms_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example DAGs' ``aws_default`` connection pointed at the test's emulator."""
    from airflow_cleanrooms.emulator.pytest_plugin import connection_json

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection_json(cleanrooms_emulator.url))
    return cleanrooms_emulator


@pytest.fixture
def run_example(example_dags: Path, airflow_db: Path) -> Callable[..., tuple[DAG, DagRun]]:
    """``run_example(dag_id, conf)``: parse the example DAG from the dags folder and ``dag.test()`` it."""

    def run(dag_id: str, conf: dict[str, Any]) -> tuple[DAG, DagRun]:
        bag = dag_bag(example_dags)
        assert not bag.import_errors, bag.import_errors
        dag = bag.dags[dag_id]
        return dag, dag.test(run_after=RUN_AFTER, run_conf=conf)

    return run

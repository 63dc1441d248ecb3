"""Fixtures for the example-DAG tests: the repo's ``dags/`` parsed, and DAG runs with ``dag.test()``."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.dag_test_support import dag_bag, inline_trigger_module, parsed_dags, run_dag_test
from tests.dags.dags_support import FIRST_RUN_AFTER, POLL_SECONDS_ENV, REPO_DAGS

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


_run_after_minutes = itertools.count()


@pytest.fixture
def run_after() -> datetime:
    """A run_after of its own for the test's DAG run (names and the run id derive from it)."""
    return FIRST_RUN_AFTER.add(minutes=next(_run_after_minutes))


@pytest.fixture
def run_example(
    example_dags: Path, airflow_db: Path, run_after: datetime
) -> Callable[..., tuple[DAG, DagRun]]:
    """``run_example(dag_id, conf)``: parse the example DAG from the dags folder, ``dag.test()`` it."""

    def run(dag_id: str, conf: dict[str, Any]) -> tuple[DAG, DagRun]:
        dag = parsed_dags(example_dags)[dag_id]
        return dag, run_dag_test(dag, run_after, conf)

    return run


@pytest.fixture
def inline_triggers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """
    Class names of the triggers ``dag.test()`` ran for deferred tasks, in order.

    ``dag.test()`` runs a deferred task's trigger in process through ``_run_inline_trigger``; the
    spy records each one, which proves that (and where) a task deferred.
    """
    dag_module = inline_trigger_module()
    ran: list[str] = []
    real = dag_module._run_inline_trigger

    def spy(trigger: Any, *args: Any, **kwargs: Any) -> Any:
        ran.append(type(trigger).__name__)
        return real(trigger, *args, **kwargs)

    monkeypatch.setattr(dag_module, "_run_inline_trigger", spy)
    return ran


@pytest.fixture
def sensor_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, BaseException]]]:
    """``(task_id, exception)`` for every error a Clean Rooms ML sensor failed with during the test."""
    try:
        from airflow.sdk.exceptions import AirflowRescheduleException
    except ImportError:  # Airflow < 3.1
        from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef]

    from airflow_cleanrooms.sensors.cleanrooms_ml import CleanRoomsMLBaseSensor

    raised: list[tuple[str, BaseException]] = []

    def record(method_name: str) -> None:
        real = getattr(CleanRoomsMLBaseSensor, method_name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return real(self, *args, **kwargs)
            except AirflowRescheduleException:  # "check again later" in reschedule mode, not a failure
                raise
            except Exception as error:
                raised.append((self.task_id, error))
                raise

        monkeypatch.setattr(CleanRoomsMLBaseSensor, method_name, wrapper)

    record("execute")  # poke/reschedule mode
    record("execute_complete")  # deferrable mode, after the trigger fired
    yield raised

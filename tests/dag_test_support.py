"""
``dag.test()`` on every Airflow this provider supports, for the integration and example-DAG tests.

Airflow 3 takes the run's ``run_after`` and keeps the DAG class in ``airflow.sdk``; Airflow 2.11
takes an ``execution_date`` (which also becomes the run's logical date) and keeps it in
``airflow.models``. Both run a deferred task's trigger in process, through ``_run_inline_trigger``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS


def dag_bag(folder: Path) -> Any:
    """Parse every DAG file of ``folder`` (Airflow's DagBag, wherever this Airflow version keeps it)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag(dag_folder=str(folder))


def parsed_dags(path: Path) -> dict[str, Any]:
    """The DAGs of the file or folder ``path`` by id, asserting that every file imported."""
    bag = dag_bag(path)
    assert not bag.import_errors, bag.import_errors
    return dict(bag.dags)


def run_dag_test(dag: Any, run_after: datetime, conf: dict[str, Any] | None = None) -> Any:
    """``dag.test()`` one run of ``dag`` after ``run_after`` with ``conf``; returns the DagRun."""
    if AIRFLOW_V_3_0_PLUS:
        return dag.test(run_after=run_after, run_conf=conf)
    return dag.test(execution_date=run_after, run_conf=conf)


def inline_trigger_module() -> ModuleType:
    """The module whose ``_run_inline_trigger`` ``dag.test()`` calls for a deferred task."""
    if AIRFLOW_V_3_0_PLUS:
        import airflow.sdk.definitions.dag as sdk_dag

        return sdk_dag
    import airflow.models.dag as models_dag

    return models_dag

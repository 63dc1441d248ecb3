"""Constants and helpers shared by the example-DAG tests (imported as ``dags_support``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pendulum

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun

REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"
POLL_SECONDS_ENV = "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS"

TRAIN_AND_INFER = "example_cleanrooms_ml_train_and_infer"
INFERENCE = "example_cleanrooms_ml_inference"
TRAIN_AND_INFER_TASKS = ["create_trained_model", "wait_trained_model", "start_inference", "wait_inference"]
INFERENCE_TASKS = ["start_inference", "wait_inference"]

# Runs get a known run_after, so the names templated from it are predictable; each test its own
# (dag.test() derives the run id from it, and run ids are unique per DAG).
FIRST_RUN_AFTER = pendulum.datetime(2026, 1, 2, 3, 4, 5, tz="UTC")


def nodash(moment: datetime) -> str:
    """What ``{{ dag_run.run_after | ts_nodash }}`` renders."""
    return moment.strftime("%Y%m%dT%H%M%S")


def task_states(dag_run: DagRun) -> dict[str, str | None]:
    return {ti.task_id: (str(ti.state) if ti.state else None) for ti in dag_run.get_task_instances()}


def train_conf(seeded: dict[str, str], membership_id: str, prefix: str) -> dict[str, Any]:
    """The train-and-infer example's run conf for a seeded membership (names prefixed ``prefix``)."""
    return {
        "membership_id": membership_id,
        "configured_model_algorithm_association_arn": seeded["configured_model_algorithm_association_arn"],
        "training_channel_arn": seeded["ml_input_channel_arn"],
        "inference_channel_arn": seeded["ml_input_channel_arn"],
        "receiver_account": "444455556666",
        "name_prefix": prefix,
        "training_volume_size_gb": 20,
        "epochs": "3",
        "score_threshold": "0.75",
        "team": "fraud",
    }

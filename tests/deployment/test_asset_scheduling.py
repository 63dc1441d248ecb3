"""
Data-aware scheduling in the real deployment: a retraining run's new model (its outlet, the asset
``cleanrooms-ml://<membership>/trained-model/churn``) makes the asset-scheduled scoring DAG run on
its own, and that run scores with the model ARN and version the asset event carried, as the
emulator's record of the start request shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .conftest import (
    MEMBERSHIP_ID,
    RETRAIN_DAG,
    SCORE_DAG,
    ExampleRun,
    RetrainRun,
    trained_model_version,
)

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.process import EmulatorProcess
    from tests.topology import AirflowTopology

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_new_model_schedules_scoring_with_its_arn_and_version(
    deployment: AirflowTopology,
    emulator: EmulatorProcess,
    retrain_run: RetrainRun,
    example_runs: dict[str, ExampleRun],
) -> None:
    assert retrain_run.state == "success"
    model_arn = deployment.xcom(RETRAIN_DAG, retrain_run.run_id, "create_trained_model")
    version = trained_model_version(deployment, RETRAIN_DAG, retrain_run.run_id)
    run = retrain_run.scoring
    # (Airflow 2.11 calls assets datasets.)
    assert run is not None and run["run_type"] in ("asset_triggered", "dataset_triggered"), run
    assert run["state"] == "success", deployment.ui_task_log(
        SCORE_DAG, run["dag_run_id"], "start_inference", 1
    )

    (start,) = [
        call["params"]
        for call in emulator.control.requests("StartTrainedModelInferenceJob")
        if call["params"]["name"].startswith("churn-scores-") and call.get("status", 200) < 300
    ]
    assert start["membershipIdentifier"] == MEMBERSHIP_ID
    assert start["trainedModelArn"] == model_arn
    assert start.get("trainedModelVersionIdentifier") == version  # None where the model has no versions
    assert start["dataSource"] == {"mlInputChannelArn": retrain_run.scoring_channel_arn}
    job_arn = deployment.xcom(SCORE_DAG, run["dag_run_id"], "start_inference")
    assert f":membership/{MEMBERSHIP_ID}/trained-model-inference-job/" in job_arn

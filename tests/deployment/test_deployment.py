"""The example DAGs in a real Airflow deployment, driven only through its REST API.

PostgreSQL, api-server, scheduler, dag-processor, triggerer (LocalExecutor) and the emulator run
as separate processes (tests/topology.py, the topology of docker/docker-compose.yaml). Every
example DAG, sync and deferrable, is unpaused and triggered through /api/v2; the checks read the
outcome back through the API (run and task states, XCom) and from the emulator (boto3 and its
request log).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY

from .conftest import EXAMPLE_DAGS, MEMBERSHIP_ID, RETRAIN_DAG, SCORE_DAG, ExampleRun, name_prefix

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.process import EmulatorProcess
    from tests.topology import AirflowTopology

# The first test also pays for the shared topology (start + all example runs): minutes, not seconds.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

JOB_ARN = re.compile(
    r"^arn:aws[-a-z]*:cleanrooms-ml:[-a-z0-9]+:\d{12}:membership/[-a-f0-9]+/trained-model-inference-job/"
)


def _emulator_client(emulator: EmulatorProcess) -> Any:
    return emulator.client()


def test_every_example_run_succeeds_sync_and_deferrable(example_runs: dict[str, ExampleRun]) -> None:
    for run in example_runs.values():
        logs = "\n".join(f"--- {task}\n{log[-4000:]}" for task, log in run.failure_logs.items())
        assert run.state == "success", f"{run.dag_id} {run.run_id}: {run.state}, {run.task_states}\n{logs}"
        assert set(run.task_states.values()) == {"success"}, f"{run.dag_id}: {run.task_states}"
    expected_tasks = {
        "example_cleanrooms_ml_inference": {"start_inference", "wait_inference"},
        "example_cleanrooms_ml_train_and_infer": {
            "create_trained_model",
            "wait_trained_model",
            "start_inference",
            "wait_inference",
        },
    }
    for dag_id, tasks in expected_tasks.items():
        assert set(example_runs[dag_id].task_states) == tasks
        assert set(example_runs[f"{dag_id}_deferrable"].task_states) == tasks


def test_inference_job_arn_is_in_xcom_and_the_job_ran(
    deployment: AirflowTopology, emulator: EmulatorProcess, example_runs: dict[str, ExampleRun]
) -> None:
    client = _emulator_client(emulator)
    for run in example_runs.values():
        arn = deployment.xcom(run.dag_id, run.run_id, "start_inference")
        assert isinstance(arn, str) and JOB_ARN.match(arn), f"{run.dag_id}: XCom return_value {arn!r}"
        job = client.get_trained_model_inference_job(
            membershipIdentifier=MEMBERSHIP_ID, trainedModelInferenceJobArn=arn
        )
        assert job["status"] == "ACTIVE", f"{run.dag_id}: {job['status']}"
        assert job["name"].startswith(name_prefix(run.dag_id) + "-")
        if "environment" in run.conf:  # inference-only DAGs: the trigger conf reached the API
            assert job["environment"] == run.conf["environment"]
            tags = client.list_tags_for_resource(resourceArn=arn)["tags"]
            assert tags.pop(IDENTITY_TAG_KEY)  # durable execution's task-instance identity tag
            assert tags == run.conf["tags"]


def test_train_and_infer_runs_infer_on_the_model_they_trained(
    deployment: AirflowTopology, emulator: EmulatorProcess, example_runs: dict[str, ExampleRun]
) -> None:
    client = _emulator_client(emulator)
    for dag_id in (
        "example_cleanrooms_ml_train_and_infer",
        "example_cleanrooms_ml_train_and_infer_deferrable",
    ):
        run = example_runs[dag_id]
        model_arn = deployment.xcom(run.dag_id, run.run_id, "create_trained_model")
        job_arn = deployment.xcom(run.dag_id, run.run_id, "start_inference")
        job = client.get_trained_model_inference_job(
            membershipIdentifier=MEMBERSHIP_ID, trainedModelInferenceJobArn=job_arn
        )
        assert job["trainedModelArn"] == model_arn
        model = client.get_trained_model(membershipIdentifier=MEMBERSHIP_ID, trainedModelArn=model_arn)
        assert model["status"] == "ACTIVE"


def test_emulator_holds_exactly_one_job_per_run(
    deployment: AirflowTopology, emulator: EmulatorProcess, example_runs: dict[str, ExampleRun]
) -> None:
    """Every run of the session (these, and any other test's) maps to its own single emulator job."""
    client = _emulator_client(emulator)
    jobs = [
        job["trainedModelInferenceJobArn"]
        for page in client.get_paginator("list_trained_model_inference_jobs").paginate(
            membershipIdentifier=MEMBERSHIP_ID
        )
        for job in page["trainedModelInferenceJobs"]
    ]
    run_jobs: dict[str, str] = {}
    train_runs = 0
    for dag_id in (*EXAMPLE_DAGS, SCORE_DAG, RETRAIN_DAG):
        for run in deployment.dag_runs(dag_id):
            if run["state"] != "success":
                continue
            run_id = run["dag_run_id"]
            train_runs += "train_and_infer" in dag_id or dag_id == RETRAIN_DAG
            if dag_id != RETRAIN_DAG:  # the asset pair's retraining DAG starts no inference job
                run_jobs[f"{dag_id}/{run_id}"] = deployment.xcom(dag_id, run_id, "start_inference")
    assert set(example_runs) <= {key.split("/")[0] for key in run_jobs}
    assert len(set(run_jobs.values())) == len(run_jobs), f"two runs share a job: {run_jobs}"
    assert sorted(jobs) == sorted(run_jobs.values()), "the emulator's jobs are not one per run"
    control = emulator.control
    assert len(control.requests("StartTrainedModelInferenceJob")) == len(run_jobs)
    assert len(control.requests("CreateTrainedModel")) == train_runs


def test_deferrable_runs_waited_in_the_triggerer_and_sync_runs_rescheduled(
    deployment: AirflowTopology, example_runs: dict[str, ExampleRun]
) -> None:
    """The task log (as the UI shows it) tells where each sensor waited."""
    for run in example_runs.values():
        log = deployment.ui_task_log(run.dag_id, run.run_id, "wait_inference", 1)
        if run.dag_id.endswith("_deferrable"):
            assert "Trigger fired event" in log, f"{run.dag_id}: no trigger in the log:\n{log[-3000:]}"
        else:
            assert "Trigger fired event" not in log, f"{run.dag_id}: sync sensor deferred:\n{log[-3000:]}"

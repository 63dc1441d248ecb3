"""
The inference operator and sensor in real DAG runs (``dag.test()``) against the emulator.

Templates render through Airflow itself (params, ``run_id``, ``dag_run.run_after``), the job ARN
travels to the sensor through XCom (``start.output``), and what the emulator received is the proof.
Both the synchronous path (operator polls, sensor in reschedule mode) and the deferrable path
(triggers run in-process by ``dag.test()``) are covered, plus a job failure carrying status details.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pendulum
import pytest

from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS
from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY
from tests.dag_test_support import parsed_dags, run_dag_test
from tests.lineage_support import only, read_events
from tests.topology import wait_until

pytestmark = [pytest.mark.integration]

DAG_ID = "core_inference_dag_run"
RUN_AFTER = pendulum.datetime(2026, 3, 4, 5, 6, 7, tz="UTC")
FAILING_RUN_AFTER = pendulum.datetime(2026, 3, 4, 6, 0, 0, tz="UTC")

DAG_FILE = Path(__file__).parent / "core_dag_files" / "core_inference_dag_run.py"


@pytest.fixture
def core_dag(airflow_dags_folder: Path, airflow_db: Path, cleanrooms_emulator: Any, monkeypatch) -> Any:
    monkeypatch.setenv("CORE_TEST_CONN_ID", cleanrooms_emulator.conn_id)
    shutil.copy2(DAG_FILE, airflow_dags_folder / DAG_FILE.name)

    def load(dag_id: str) -> Any:
        return parsed_dags(airflow_dags_folder / DAG_FILE.name)[dag_id]

    return load


def _states(dag_run: Any) -> dict[str, str | None]:
    return {ti.task_id: (str(ti.state) if ti.state else None) for ti in dag_run.get_task_instances()}


def _provider_lines(logs: str) -> str:
    """What the provider logged (Airflow 3.0's dag.test also prints its own supervisor debug traffic)."""
    return "\n".join(line for line in logs.splitlines() if "airflow_cleanrooms" in line or "Request:" in line)


def _activate_after_first_read(emulator: Any) -> threading.Thread:
    """Turn the inference job ACTIVE once a waiter has read it (pending) once: no timing guesses."""

    def run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            reads = emulator.control.requests("GetTrainedModelInferenceJob")
            if reads:
                emulator.control.force_status(reads[0]["params"]["trainedModelInferenceJobArn"], "ACTIVE")
                return
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _reschedules(dag_run: Any, task_id: str) -> int:
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    ti = dag_run.get_task_instance(task_id)
    if AIRFLOW_V_3_0_PLUS:
        of_this_ti = [TaskReschedule.ti_id == ti.id]
    else:  # Airflow 2.11 keys a reschedule by the task instance's columns
        of_this_ti = [
            TaskReschedule.dag_id == ti.dag_id,
            TaskReschedule.task_id == ti.task_id,
            TaskReschedule.run_id == ti.run_id,
            TaskReschedule.map_index == ti.map_index,
        ]
    with create_session() as session:
        return session.scalar(select(func.count(TaskReschedule.id)).where(*of_this_ti)) or 0


def _rendered_fields(dag_run: Any, task_id: str) -> dict[str, Any]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        fields = RenderedTaskInstanceFields.get_templated_fields(
            dag_run.get_task_instance(task_id), session=session
        )
    assert fields is not None
    return fields


def _conf(seeded: dict[str, str], membership_id: str) -> dict[str, Any]:
    return {
        "membership_id": membership_id,
        "trained_model_arn": seeded["trained_model_arn"],
        "channel_arn": seeded["ml_input_channel_arn"],
        "threshold": "0.75",
        "instance_count": 2,
        "db_password": "s3cr3t-in-conf",
    }


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "sync-reschedule"])
def test_templated_job_runs_and_sensor_gets_the_arn(core_dag, cleanrooms_emulator, deferrable, capfd) -> None:
    membership_id = str(uuid.uuid4())
    seeded = cleanrooms_emulator.control.seed_membership(membership_id, trained_model=True)
    dag = core_dag(DAG_ID + ("_deferrable" if deferrable else ""))
    # The job stays pending until whoever waits (sensor or trigger) has seen it pending once.
    cleanrooms_emulator.control.set_timings(pending_seconds=600, running_seconds=600)
    release = _activate_after_first_read(cleanrooms_emulator)

    dag_run = run_dag_test(dag, RUN_AFTER, _conf(seeded, membership_id))
    release.join(5)

    assert _states(dag_run) == {"start_inference": "success", "wait_inference": "success"}
    if not deferrable:
        # The sensor saw the job pending, gave its slot back (reschedule) and came back.
        assert _reschedules(dag_run, "wait_inference") >= 1
    (start,) = cleanrooms_emulator.control.requests("StartTrainedModelInferenceJob")
    params = start["params"]
    assert params["name"] == "churn-scores-20260304T050607"
    assert params["trainedModelArn"] == seeded["trained_model_arn"]
    assert params["resourceConfig"] == {"instanceType": "ml.m5.xlarge", "instanceCount": 2}
    assert params["environment"] == {"MODEL_THRESHOLD": "0.75", "DB_PASSWORD": "s3cr3t-in-conf"}
    # Besides the user's tags, durable execution adds the task instance's identity tag.
    assert params["tags"].pop(IDENTITY_TAG_KEY)
    assert params["tags"] == {"team": "growth", "run_id": dag_run.run_id}
    assert params["outputConfiguration"] == {"members": [{"accountId": "444455556666"}], "accept": "text/csv"}

    # The job ARN reached the sensor through XCom, and the sensor read that very job.
    start_ti = dag_run.get_task_instance("start_inference")
    job_arn = start_ti.xcom_pull(task_ids="start_inference")
    assert (
        job_arn.startswith("arn:aws:cleanrooms-ml:us-east-1:") and "/trained-model-inference-job/" in job_arn
    )
    reads = cleanrooms_emulator.control.requests("GetTrainedModelInferenceJob")
    assert reads
    assert {r["params"]["trainedModelInferenceJobArn"] for r in reads} == {job_arn}
    status = cleanrooms_emulator.client().get_trained_model_inference_job(
        membershipIdentifier=membership_id, trainedModelInferenceJobArn=job_arn
    )["status"]
    assert status == "ACTIVE"

    # The secret-looking environment value is hidden in the task log and the rendered-template view.
    output = capfd.readouterr()
    logs = output.out + output.err
    assert '"DB_PASSWORD": "***"' in logs
    assert "Request:" in _provider_lines(logs)
    assert "s3cr3t-in-conf" not in _provider_lines(logs)
    rendered = _rendered_fields(dag_run, "start_inference")
    assert rendered["environment"]["MODEL_THRESHOLD"] == "0.75"
    assert rendered["environment"]["DB_PASSWORD"] == "***"
    assert rendered["name"] == "churn-scores-20260304T050607"


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_job_failure_fails_the_waiting_task_with_status_details(
    core_dag, cleanrooms_emulator, deferrable, capfd, openlineage_events
) -> None:
    membership_id = str(uuid.uuid4())
    seeded = cleanrooms_emulator.control.seed_membership(membership_id, trained_model=True)
    cleanrooms_emulator.control.fail_job(
        "churn-scores-20260304T060000", code="ContainerRuntimeError", message="scoring container exited 3"
    )
    dag = core_dag(DAG_ID + ("_deferrable" if deferrable else ""))

    dag_run = run_dag_test(dag, FAILING_RUN_AFTER, _conf(seeded, membership_id))

    states = _states(dag_run)
    if deferrable:  # the operator waits (in the triggerer) and fails
        assert states == {"start_inference": "failed", "wait_inference": "upstream_failed"}
    else:  # the operator only starts the job; the sensor sees it fail
        assert states == {"start_inference": "success", "wait_inference": "failed"}
    output = capfd.readouterr()
    logs = output.out + output.err
    assert "CREATE_FAILED" in logs
    assert "ContainerRuntimeError: scoring container exited 3" in logs
    assert "Request:" in _provider_lines(logs)
    assert "s3cr3t-in-conf" not in _provider_lines(logs)
    if deferrable:  # the operator that waited failed: its OpenLineage FAIL event names the job's end
        key = f"{dag.dag_id}.start_inference@{dag_run.run_id}"

        def failed() -> dict[str, Any] | None:
            events = read_events(openlineage_events).get(key, [])
            return only(events, "FAIL") if any(e["eventType"] == "FAIL" for e in events) else None

        facets = wait_until(failed, 30, f"the FAIL event of {key}", interval=0.2)["run"]["facets"]
        assert facets["cleanroomsMLJob"]["status"] == "CREATE_FAILED"
        assert facets["cleanroomsMLJob"]["statusDetails"] == {
            "statusCode": "ContainerRuntimeError",
            "message": "scoring container exited 3",
        }
        assert facets["externalQuery"]["externalQueryId"] == facets["cleanroomsMLJob"]["arn"]


def test_execution_timeout_cancels_the_job(core_dag, cleanrooms_emulator) -> None:
    membership_id = str(uuid.uuid4())
    seeded = cleanrooms_emulator.control.seed_membership(membership_id, trained_model=True)
    cleanrooms_emulator.control.set_timings(pending_seconds=120, running_seconds=120)
    dag = core_dag("core_inference_execution_timeout")

    conf = {
        "membership_id": membership_id,
        "trained_model_arn": seeded["trained_model_arn"],
        "channel_arn": seeded["ml_input_channel_arn"],
    }
    if AIRFLOW_V_3_0_PLUS:
        dag_run = run_dag_test(dag, RUN_AFTER, conf)
    else:
        # Airflow 2.11's dag.test() fails the task instance, then lets the timeout (a BaseException) escape.
        from airflow.exceptions import AirflowTaskTimeout
        from airflow.models.dagrun import DagRun

        with pytest.raises(AirflowTaskTimeout):
            run_dag_test(dag, RUN_AFTER, conf)
        (dag_run,) = DagRun.find(dag_id=dag.dag_id)

    assert _states(dag_run) == {"start_inference": "failed"}
    (start,) = cleanrooms_emulator.control.requests("StartTrainedModelInferenceJob")
    (cancel,) = cleanrooms_emulator.control.requests("CancelTrainedModelInferenceJob")
    job_arn = cancel["params"]["trainedModelInferenceJobArn"]
    status = cleanrooms_emulator.client().get_trained_model_inference_job(
        membershipIdentifier=membership_id, trainedModelInferenceJobArn=job_arn
    )["status"]
    assert status in {"CANCEL_PENDING", "CANCEL_IN_PROGRESS", "INACTIVE"}
    assert start["params"]["name"] == "timed-out-20260304T050607"


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "sync"])
def test_cli_input_json_alone_starts_one_job_and_waits_for_it(
    core_dag, cleanrooms_emulator, deferrable
) -> None:
    """Membership, name and ARNs only in ``cli_input_json``: the durable lookup and the wait use them."""
    membership_id = str(uuid.uuid4())
    seeded = cleanrooms_emulator.control.seed_membership(membership_id, trained_model=True)
    dag = core_dag("core_inference_cli_input_json" + ("_deferrable" if deferrable else ""))
    cleanrooms_emulator.control.set_timings(pending_seconds=600, running_seconds=600)
    release = _activate_after_first_read(cleanrooms_emulator)

    conf = {
        "membership_id": membership_id,
        "trained_model_arn": seeded["trained_model_arn"],
        "channel_arn": seeded["ml_input_channel_arn"],
    }
    dag_run = run_dag_test(dag, RUN_AFTER, conf)
    release.join(5)

    assert _states(dag_run) == {"start_inference": "success"}
    (start,) = cleanrooms_emulator.control.requests("StartTrainedModelInferenceJob")
    assert start["params"]["membershipIdentifier"] == membership_id
    assert start["params"]["name"] == "from-json-20260304T050607"
    assert IDENTITY_TAG_KEY in start["params"]["tags"]
    # The durable lookup listed the membership from the document before starting.
    (listed,) = cleanrooms_emulator.control.requests("ListTrainedModelInferenceJobs")
    assert listed["params"]["membershipIdentifier"] == membership_id
    job_arn = dag_run.get_task_instance("start_inference").xcom_pull(task_ids="start_inference")
    status = cleanrooms_emulator.client().get_trained_model_inference_job(
        membershipIdentifier=membership_id, trainedModelInferenceJobArn=job_arn
    )["status"]
    assert status == "ACTIVE"

"""
Container logs in real task runs (``dag.test()``) against the emulator: a failing inference job with
``print_log`` shows the container's error line in the task log (sync and deferrable), secrets the
masker knows stay masked in streamed lines, and an association that allows no logs makes the task
log say ``logsStatus`` and why no logs came.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pendulum
import pytest

from tests.dag_test_support import parsed_dags, run_dag_test

pytestmark = [pytest.mark.integration]

RUN_AFTER = pendulum.datetime(2026, 5, 6, 7, 8, 9, tz="UTC")
NO_LOGS_RUN_AFTER = pendulum.datetime(2026, 5, 6, 8, 0, 0, tz="UTC")
SECRET = "hunter2-db-secret"
DAG_FILE = Path(__file__).parent / "core_dag_files" / "container_logs_dag_run.py"


@pytest.fixture
def logs_dag(airflow_dags_folder: Path, airflow_db: Path, cleanrooms_emulator: Any, monkeypatch) -> Any:
    monkeypatch.setenv("CORE_TEST_CONN_ID", cleanrooms_emulator.conn_id)
    shutil.copy2(DAG_FILE, airflow_dags_folder / DAG_FILE.name)

    def load(deferrable: bool | str) -> Any:
        dags = parsed_dags(airflow_dags_folder / DAG_FILE.name)
        if isinstance(deferrable, str):
            return dags[deferrable]
        return dags["container_logs_inference" + ("_deferrable" if deferrable else "")]

    return load


def _run(
    logs_dag: Any, emulator: Any, deferrable: bool | str, run_after: Any, **seed: Any
) -> tuple[Any, str]:
    membership_id = str(uuid.uuid4())
    seeded = emulator.control.seed_membership(membership_id, trained_model=True, **seed)
    job_name = f"scores-{run_after.strftime('%Y%m%dT%H%M%S')}"
    emulator.control.fail_job(job_name, "AlgorithmError", "division by zero in score()")
    conf = {
        "membership_id": membership_id,
        "trained_model_arn": seeded["trained_model_arn"],
        "channel_arn": seeded["ml_input_channel_arn"],
        "db_password": SECRET,
    }
    dag_run = run_dag_test(logs_dag(deferrable), run_after, conf)
    job_arn = emulator.control.requests("StartTrainedModelInferenceJob")
    assert len(job_arn) == 1
    return dag_run, membership_id


_AIRFLOW_30_COMMS = ("SetRenderedFields", "DeferTask", "MaskSecret")


def leaked_lines(logs: str) -> list[str]:
    """
    Lines that show the secret, except Airflow 3.0's own debug lines of the rendered fields its task
    runner sends to the supervisor ("Sending request" / "Received message ... msg=SetRenderedFields(",
    ``DeferTask(`` with the trigger's kwargs, which Airflow stores encrypted, and from 3.0.6
    ``MaskSecret(``, the message that hands the value to mask to the supervisor):
    3.0 sends them unredacted and logs them at debug level, which ``dag.test()`` prints (3.1+ redact
    them first). Those lines are Airflow's, written before the operator's code runs.
    """
    return [
        line[:300]
        for line in logs.splitlines()
        if SECRET in line and not any(f"msg={message}(" in line for message in _AIRFLOW_30_COMMS)
    ]


def container_lines(logs: str) -> str:
    """The streamed container lines of a task's output (what a failed assertion shows)."""
    return "\n".join(line[:300] for line in logs.splitlines() if "[container]" in line)


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_failing_job_streams_the_container_error_line_with_secrets_masked(
    logs_dag, cleanrooms_emulator, deferrable, capfd
) -> None:
    dag_run, _ = _run(logs_dag, cleanrooms_emulator, deferrable, RUN_AFTER)

    assert dag_run.get_task_instance("score").state == "failed"
    output = capfd.readouterr()
    logs = output.out + output.err
    arn_id = cleanrooms_emulator.control.requests("GetTrainedModelInferenceJob")[0]["params"][
        "trainedModelInferenceJobArn"
    ].rsplit("/", 1)[-1]
    assert f"Following log stream: {arn_id}/algo-1" in logs
    assert "[container] ERROR AlgorithmError: division by zero in score()" in logs
    assert "[container] Container exited with code 1" in logs
    # The container printed its environment: the masked value shows as ***.
    assert "[container] Environment: DB_PASSWORD=***, MODE=batch" in logs, container_lines(logs)
    assert not leaked_lines(logs)
    # Lines come once each, in order.
    # (Airflow 3.0's dag.test() prints each record through two handlers: count copies of the first line.)
    copies = logs.count("[container] Starting inference container")
    assert copies in (1, 2)
    assert logs.count("[container] ERROR AlgorithmError") == copies
    assert logs.index("[container] Starting inference container") < logs.index("[container] ERROR")
    # The final state block.
    assert "status:           CREATE_FAILED" in logs
    assert "logs status:      PUBLISH_SUCCEEDED" in logs
    assert cleanrooms_emulator.control.requests("GetLogEvents")
    # The container logs link of the task points at the job's streams.
    link = dag_run.get_task_instance("score").xcom_pull(task_ids="score", key="cleanrooms_ml_container_logs")
    assert link["log_group"] == "/aws/cleanroomsml/TrainedModelInferenceJobs"
    assert link["stream_prefix"] == arn_id
    assert link["aws_domain"] == "aws.amazon.com" and link["region_name"] == "us-east-1"


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_an_association_without_logs_says_logs_status_and_why(
    logs_dag, cleanrooms_emulator, deferrable, capfd
) -> None:
    dag_run, _ = _run(logs_dag, cleanrooms_emulator, deferrable, NO_LOGS_RUN_AFTER, container_logs=False)

    assert dag_run.get_task_instance("score").state == "failed"
    output = capfd.readouterr()
    logs = output.out + output.err
    assert "logs status:      PUBLISH_FAILED" in logs
    assert "trainedModelInferenceJobs.containerLogs is not set" in logs  # logsStatusDetails
    assert "no container logs will be found in CloudWatch Logs for this job" in logs
    assert "No container log streams found in /aws/cleanroomsml/TrainedModelInferenceJobs" in logs
    assert "[container]" not in logs


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_streams_the_container_lines_once(logs_dag, cleanrooms_emulator, mode, capfd) -> None:
    run_after = pendulum.datetime(2026, 5, 6, 9 if mode == "poke" else 10, 0, 0, tz="UTC")
    dag_run, _ = _run(logs_dag, cleanrooms_emulator, f"container_logs_sensor_{mode}", run_after)

    assert dag_run.get_task_instance("wait").state == "failed"
    output = capfd.readouterr()
    logs = output.out + output.err
    assert logs.count("[container] ERROR AlgorithmError: division by zero in score()") == 1
    assert logs.count("[container] Starting inference container") == 1
    assert "[container] Environment: DB_PASSWORD=***, MODE=batch" in logs, container_lines(logs)
    assert not leaked_lines(logs)
    assert "logs status:      PUBLISH_SUCCEEDED" in logs

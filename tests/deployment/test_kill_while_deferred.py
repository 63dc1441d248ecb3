"""
Cancel on kill in a real deployment: a task killed while its wait is deferred cancels its job exactly
once, and a triggerer that stops while the task waits cancels nothing.

Airflow 3.3 calls the trigger's ``on_kill``; Airflow 2.11 to 3.2 only cancel the trigger's ``run``,
which then calls ``on_kill`` itself. Either way the trigger reads the task's state (from the API
server, or the database on 2.11) and cancels only a task that is no longer deferred. The retraining
DAG of the asset pair is the subject: its training operator defers, with ``cancel_on_kill`` on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .conftest import MEMBERSHIP_ID, RETRAIN_DAG, ExampleRun

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_cleanrooms.emulator.process import EmulatorProcess
    from tests.topology import AirflowTopology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASK = "create_trained_model"


@pytest.fixture
def long_training(emulator: EmulatorProcess, example_runs: dict[str, ExampleRun]) -> Iterator[None]:
    """
    Trained models started from now on train for an hour, so the wait stays deferred until the test
    acts (after the example runs, which share the emulator, are done).
    """
    before = emulator.control.timings()
    emulator.control.set_timings(training_seconds=3600)
    yield
    # Unset, training lasts running_seconds: the same thing, said explicitly.
    emulator.control.set_timings(training_seconds=before["training_seconds"] or before["running_seconds"])


def start_deferred_training(
    deployment: AirflowTopology, emulator: EmulatorProcess, seeded: dict[str, str]
) -> tuple[str, str]:
    """Trigger a retraining run; wait until its task is deferred and its trigger polls; ``(run_id, ARN)``."""
    conf = {
        "configured_model_algorithm_association_arn": seeded["configured_model_algorithm_association_arn"],
        "training_channel_arn": seeded["ml_input_channel_arn"],
    }
    run_id = deployment.trigger(RETRAIN_DAG, conf=conf)

    def deferred() -> bool | None:
        return deployment.task_instance(RETRAIN_DAG, run_id, TASK)["state"] == "deferred" or None

    deployment.wait_for(f"{TASK} deferred", deferred, timeout=240)
    arn = str(deployment.xcom(RETRAIN_DAG, run_id, TASK, "trained_model_arn"))
    # The triggerer picks the wait up a moment later; a task killed before that leaves nobody to cancel
    # (README, "Use"). Every Get of the model from now on is the trigger's poll: the operator's are done.
    polls = len(gets_of(emulator, arn))
    deployment.wait_for("the trigger's first poll", lambda: len(gets_of(emulator, arn)) > polls or None, 60)
    return run_id, arn


def calls_of(emulator: EmulatorProcess, operation: str, arn: str) -> list[dict[str, Any]]:
    return [call for call in emulator.control.requests(operation) if call["params"]["trainedModelArn"] == arn]


def cancels_of(emulator: EmulatorProcess, arn: str) -> list[dict[str, Any]]:
    return calls_of(emulator, "CancelTrainedModel", arn)


def gets_of(emulator: EmulatorProcess, arn: str) -> list[dict[str, Any]]:
    return calls_of(emulator, "GetTrainedModel", arn)


def test_a_task_killed_while_deferred_cancels_its_job_once(
    deployment: AirflowTopology, emulator: EmulatorProcess, seeded: dict[str, str], long_training: None
) -> None:
    run_id, arn = start_deferred_training(deployment, emulator, seeded)

    deployment.set_task_state(RETRAIN_DAG, run_id, TASK, "failed")  # "Mark failed" in the UI

    deployment.wait_for("the job's cancel call", lambda: cancels_of(emulator, arn) or None, timeout=120)
    assert deployment.wait_run_finished(RETRAIN_DAG, run_id, 120) == "failed"
    # The trigger logged why it cancelled (the task log on Airflow 3, its trigger log file on 2.11).
    deployment.wait_for(
        "the trigger's decision",
        lambda: "Task killed while deferred" in trigger_log(deployment, run_id) or None,
        60,
    )

    def cancelled() -> bool | None:  # a cancelled trained model ends INACTIVE
        model = emulator.client().get_trained_model(membershipIdentifier=MEMBERSHIP_ID, trainedModelArn=arn)
        return model["status"] == "INACTIVE" or None

    deployment.wait_for("the model's cancellation to finish", cancelled, timeout=60)
    (cancel,) = cancels_of(emulator, arn)  # one call, also after the cancel went through
    assert cancel["status"] == 200, cancel


def test_a_triggerer_that_stops_while_the_task_waits_cancels_nothing(
    deployment: AirflowTopology, emulator: EmulatorProcess, seeded: dict[str, str], long_training: None
) -> None:
    """SIGTERM, as a deploy or a scale-in stops a triggerer: the next triggerer takes the wait over."""
    run_id, arn = start_deferred_training(deployment, emulator, seeded)

    assert deployment.terminate("triggerer") == 0
    deployment.start("triggerer")
    emulator.control.force_status(arn, "ACTIVE")  # the training ends; the new triggerer sees it

    assert deployment.wait_run_finished(RETRAIN_DAG, run_id, 240) == "success"
    # Airflow 2.11's triggerer cancels each wait as it stops, and the wait asks for the task's state
    # (deferred: the job is kept), if the process lives long enough to answer; 3.x ends the trigger
    # process without cancelling. Either way no cancel call may reach AWS.
    assert cancels_of(emulator, arn) == []


def trigger_log(deployment: AirflowTopology, run_id: str) -> str:
    """What the run's training task and its triggers logged (task log files and triggerer output)."""
    files = sorted(deployment.task_log_dir(RETRAIN_DAG, run_id, TASK).glob("attempt=*"))
    logs = [path.read_text(errors="replace") for path in files]
    return "\n".join(logs + [deployment.tail(name, 100_000) for name in deployment.triggerers])

"""
Both example DAGs end to end against the emulator, with ``dag.test()``, in sync and deferrable mode.

What the emulator received is the proof: the inference job request carries the names rendered from
the run, the environment and tags rendered from the params, and the trained model ARN the upstream
task created. A training failure stops the run at the training sensor, with the failure's status
details in the error, and no inference job is ever started.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY
from tests.dags.dags_support import INFERENCE, TRAIN_AND_INFER, nodash, task_states, train_conf

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START = "StartTrainedModelInferenceJob"
CREATE = "CreateTrainedModel"
MODES = [pytest.param(False, id="sync"), pytest.param(True, id="deferrable")]


def _dag_id(base: str, deferrable: bool) -> str:
    return f"{base}_deferrable" if deferrable else base


def _only(requests: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(requests) == 1, requests
    return requests[0]["params"]


@pytest.mark.parametrize("deferrable", MODES)
def test_train_and_infer_end_to_end(
    deferrable: bool,
    aws_default_emulator: Any,
    run_example: Any,
    run_after: datetime,
    inline_triggers: list[str],
) -> None:
    emulator = aws_default_emulator
    membership_id = str(uuid.uuid4())
    seeded = emulator.control.seed_membership(membership_id)
    dag_id = _dag_id(TRAIN_AND_INFER, deferrable)
    suffix = nodash(run_after)

    _, dag_run = run_example(dag_id, train_conf(seeded, membership_id, "e2e"))

    assert task_states(dag_run) == dict.fromkeys(
        ["create_trained_model", "wait_trained_model", "start_inference", "wait_inference"], "success"
    )
    assert str(dag_run.state) == "success"

    # Training got the rendered name, the association, the channel and the typed params.
    create = _only(emulator.control.requests(CREATE))
    assert create["name"] == f"e2e-model-{suffix}"
    assert (
        create["configuredModelAlgorithmAssociationArn"]
        == seeded["configured_model_algorithm_association_arn"]
    )
    assert create["dataChannels"] == [
        {"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}
    ]
    assert create["resourceConfig"]["volumeSizeInGB"] == 20
    assert create["hyperparameters"] == {"epochs": "3"}

    # Inference got the ARN of the model the upstream task created, and everything rendered.
    client = emulator.client()
    (model,) = client.list_trained_models(membershipIdentifier=membership_id)["trainedModels"]
    start = _only(emulator.control.requests(START))
    assert start["trainedModelArn"] == model["trainedModelArn"]
    assert start["membershipIdentifier"] == membership_id
    assert start["name"] == f"e2e-scores-{suffix}"
    assert start["environment"] == {"SCORE_THRESHOLD": "0.75", "AIRFLOW_RUN_ID": dag_run.run_id}
    assert start["tags"].pop(IDENTITY_TAG_KEY)  # durable execution's task-instance identity tag
    assert start["tags"] == {"team": "fraud", "airflow-dag": dag_id, "airflow-run-after": suffix}
    assert start["outputConfiguration"] == {"accept": "text/csv", "members": [{"accountId": "444455556666"}]}
    assert start["dataSource"] == {"mlInputChannelArn": seeded["ml_input_channel_arn"]}

    # Both resources really finished.
    (job,) = client.list_trained_model_inference_jobs(membershipIdentifier=membership_id)[
        "trainedModelInferenceJobs"
    ]
    assert (
        client.get_trained_model(
            membershipIdentifier=membership_id, trainedModelArn=model["trainedModelArn"]
        )["status"]
        == "ACTIVE"
    )
    assert (
        client.get_trained_model_inference_job(
            membershipIdentifier=membership_id, trainedModelInferenceJobArn=job["trainedModelInferenceJobArn"]
        )["status"]
        == "ACTIVE"
    )

    # Which way the sensors waited: in deferrable mode each one deferred to its trigger.
    assert inline_triggers == (
        ["CleanRoomsMLTrainedModelCompleteTrigger", "CleanRoomsMLTrainedModelInferenceJobCompleteTrigger"]
        if deferrable
        else []
    )


@pytest.mark.parametrize("deferrable", MODES)
def test_inference_dag_end_to_end(
    deferrable: bool,
    aws_default_emulator: Any,
    run_example: Any,
    run_after: datetime,
    inline_triggers: list[str],
) -> None:
    emulator = aws_default_emulator
    membership_id = str(uuid.uuid4())
    seeded = emulator.control.seed_membership(membership_id, trained_model=True)
    conf = {
        "membership_id": membership_id,
        "trained_model_arn": seeded["trained_model_arn"],
        "ml_input_channel_arn": seeded["ml_input_channel_arn"],
        "instance_type": "ml.c5.xlarge",
        "instance_count": 3,
        "receiver_account": "444455556666",
        "name_prefix": "nightly",
        "environment": {"SCORE_THRESHOLD": "0.9", "MODE": "batch"},
        "tags": {"team": "risk", "cost-center": "42"},
    }

    _, dag_run = run_example(_dag_id(INFERENCE, deferrable), conf)

    assert task_states(dag_run) == {"start_inference": "success", "wait_inference": "success"}
    start = _only(emulator.control.requests(START))
    assert start["name"] == f"nightly-{nodash(run_after)}"
    assert start["trainedModelArn"] == seeded["trained_model_arn"]
    # Numbers and objects arrive typed, though Jinja rendered them as strings.
    assert start["resourceConfig"] == {"instanceType": "ml.c5.xlarge", "instanceCount": 3}
    assert start["environment"] == {"SCORE_THRESHOLD": "0.9", "MODE": "batch"}
    assert start["tags"].pop(IDENTITY_TAG_KEY)  # durable execution's task-instance identity tag
    assert start["tags"] == {"team": "risk", "cost-center": "42"}
    assert start["outputConfiguration"]["members"] == [{"accountId": "444455556666"}]
    assert inline_triggers == (["CleanRoomsMLTrainedModelInferenceJobCompleteTrigger"] if deferrable else [])


@pytest.mark.parametrize("deferrable", MODES)
def test_failed_training_stops_at_the_training_sensor(
    deferrable: bool,
    aws_default_emulator: Any,
    run_example: Any,
    run_after: datetime,
    sensor_errors: list[tuple[str, BaseException]],
) -> None:
    emulator = aws_default_emulator
    membership_id = str(uuid.uuid4())
    seeded = emulator.control.seed_membership(membership_id)
    emulator.control.fail_job(
        f"broken-model-{nodash(run_after)}",
        "InsufficientTrainingData",
        "only 12 rows in the training channel",
    )

    _, dag_run = run_example(
        _dag_id(TRAIN_AND_INFER, deferrable), train_conf(seeded, membership_id, "broken")
    )

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == {
        "create_trained_model": "success",
        "wait_trained_model": "failed",
        "start_inference": "upstream_failed",
        "wait_inference": "upstream_failed",
    }
    assert emulator.control.requests(START) == []
    # The training sensor failed with an error naming the status and carrying the statusDetails.
    ((task_id, error),) = sensor_errors
    assert task_id == "wait_trained_model"
    message = str(error)
    assert "CREATE_FAILED" in message
    assert "InsufficientTrainingData" in message
    assert "only 12 rows in the training channel" in message

"""
Every kind of invalid operator input fails before any API call, with a message naming the argument.

The corpus (``dags/bad_input_corpus.py``) is run in-process here against the emulator, through the
operator as shipped (with durable execution on, so the name-collision check takes part); the
reliability suite runs the same corpus as a mapped task in real Airflow.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY, task_instance_identity
from tests.reliability.dags.bad_input_corpus import CORPUS, RENDERED_STRING, BadInput, arguments
from tests.reliability.durable_support import FakeTaskInstance, FakeTaskStateStore, make_context

MEMBERSHIP = "5a1c7e2b-3d4f-4a5b-9c6d-7e8f9a0b1c2d"
START = "StartTrainedModelInferenceJob"

InferenceOperator = CleanRoomsMLStartTrainedModelInferenceJobOperator

pytestmark = pytest.mark.integration


def test_corpus_has_at_least_25_kinds_with_unique_ids() -> None:
    ids = [entry.id for entry in CORPUS]
    assert len(ids) >= 25
    assert len(set(ids)) == len(ids)


def _block_name(emulator: Any, seeded: dict[str, str], name: str) -> str:
    """A job called ``name`` that another task instance started, held running."""
    identity = task_instance_identity("another_dag", "another_task", "another_run", -1)
    arn = emulator.client().start_trained_model_inference_job(
        membershipIdentifier=MEMBERSHIP,
        name=name,
        trainedModelArn=seeded["trained_model_arn"],
        resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        outputConfiguration={"members": [{"accountId": "111122223333"}]},
        dataSource={"mlInputChannelArn": seeded["ml_input_channel_arn"]},
        tags={IDENTITY_TAG_KEY: identity},
    )["trainedModelInferenceJobArn"]
    emulator.control.force_status(arn, "CREATE_IN_PROGRESS")
    return str(arn)


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.id for entry in CORPUS])
def test_bad_input_fails_before_any_call(cleanrooms_emulator: Any, entry: BadInput) -> None:
    seeded = cleanrooms_emulator.control.seed_membership(MEMBERSHIP, trained_model=True)
    taken = "taken-name"
    if "taken_name" in entry.needs:
        _block_name(cleanrooms_emulator, seeded, taken)
    cleanrooms_emulator.control.clear_requests()
    values = {
        "@MEMBERSHIP@": MEMBERSHIP,
        "@TRAINED_MODEL_ARN@": seeded["trained_model_arn"],
        "@CHANNEL_ARN@": seeded["ml_input_channel_arn"],
        "@ASSOCIATION_ARN@": seeded["configured_model_algorithm_association_arn"],
        "@TAKEN_NAME@": taken,
        RENDERED_STRING: "ml.m5.xlarge",
    }
    op = InferenceOperator(
        task_id="bad_input",
        aws_conn_id=cleanrooms_emulator.conn_id,
        waiter_delay=0,
        **arguments(entry, "corpus-job", values),
    )

    with pytest.raises(ValueError) as raised:
        op.execute(make_context(FakeTaskInstance(task_id="bad_input"), FakeTaskStateStore()))

    message = str(raised.value)
    assert entry.names in message
    if entry.hint:
        assert entry.hint in message
    assert cleanrooms_emulator.control.requests(START) == []

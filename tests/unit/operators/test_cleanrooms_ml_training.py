"""CleanRoomsMLCreateTrainedModelOperator and CleanRoomsMLCreateMLInputChannelOperator with the Stubber."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_cleanrooms.compat import TaskDeferred, model_has_member
from airflow_cleanrooms.exceptions import (
    CleanRoomsMLJobFailedError,
    CleanRoomsMLRequestError,
    CleanRoomsMLWaitTimeoutError,
)
from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateMLInputChannelOperator,
    CleanRoomsMLCreateTrainedModelOperator,
)
from airflow_cleanrooms.service_model import added_in, camel_to_snake, input_members
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLInputChannelActiveTrigger,
    CleanRoomsMLTrainedModelCompleteTrigger,
)
from tests.unit.unit_support import (
    ASSOCIATION_ARN,
    CHANNEL_ARGS,
    CHANNEL_ARN,
    GET_MODEL,
    MEMBERSHIP,
    MODEL_ARN,
    ROLE_ARN,
    VERSION,
    channel_response,
    expect_durable_start,
    make_operator,
    model_response,
    with_version,
)

TRAINING_REQUEST: dict[str, Any] = {
    "membershipIdentifier": MEMBERSHIP,
    "name": "churn-model",
    "configuredModelAlgorithmAssociationArn": ASSOCIATION_ARN,
    "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 10},
    "dataChannels": [{"mlInputChannelArn": CHANNEL_ARN, "channelName": "train"}],
}
GET_VERSION = with_version(GET_MODEL)
#: trainingInputMode is in botocore's model from 1.38 (the lowest stage runs 1.37.1).
HAS_INPUT_MODE = model_has_member("CreateTrainedModelRequest", "trainingInputMode")
CREATED = with_version({"trainedModelArn": MODEL_ARN})


def training(**overrides: Any) -> CleanRoomsMLCreateTrainedModelOperator:
    return make_operator(
        CleanRoomsMLCreateTrainedModelOperator,
        **{"task_id": "create_trained_model", "waiter_max_attempts": 4, **overrides},
    )


class TestCreateTrainedModel:
    def test_every_member_is_a_templated_argument(self) -> None:
        op = training()
        model_members = {camel_to_snake(member) for member in input_members("CreateTrainedModel")}
        for member in input_members("CreateTrainedModel"):
            assert camel_to_snake(member) in op.template_fields
        for name in (
            "hyperparameters",
            "environment",
            "resource_config",
            "stopping_condition",
            "data_channels",
            "description",
            "kms_key_arn",
            "tags",
            "ml_model_training_payer_account_id",
        ):
            # Members newer than the installed botocore are not offered (the lowest stage: 1.37.1).
            assert name in op.template_fields or name not in model_members

    def test_trains_waits_and_returns_arn_and_version(self, stub_for, context, ti) -> None:
        op = training(
            hyperparameters={"epochs": "3"},
            stopping_condition={"maxRuntimeInSeconds": "3600"},
            **({"training_input_mode": "File"} if HAS_INPUT_MODE else {}),
        )
        stubber = stub_for(op)
        expect_durable_start(
            stubber,
            context["ti"],
            {
                **TRAINING_REQUEST,
                "hyperparameters": {"epochs": "3"},
                "stoppingCondition": {"maxRuntimeInSeconds": 3600},
                **({"trainingInputMode": "File"} if HAS_INPUT_MODE else {}),
            },
            CREATED,
        )
        stubber.add_response("get_trained_model", model_response("CREATE_IN_PROGRESS"), GET_VERSION)
        stubber.add_response("get_trained_model", model_response("ACTIVE"), GET_VERSION)
        assert op.execute(context) == MODEL_ARN
        assert ti.xcoms.get("trained_model_version_identifier") == VERSION
        assert ti.xcoms["trained_model_arn"] == MODEL_ARN
        link = ti.xcoms["cleanrooms_ml_trained_model"]
        assert link["collaboration_id"] == "99999999-2222-3333-4444-555555555555"  # from GetTrainedModel
        assert (
            op.operator_extra_links[0]
            .format_link(**link)
            .endswith("#/collaborations/99999999-2222-3333-4444-555555555555")
        )

    @pytest.mark.parametrize("status", ["CREATE_FAILED", "DELETE_PENDING", "INACTIVE", "CANCEL_FAILED"])
    def test_failure_status(self, stub_for, context, status) -> None:
        op = training()
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], TRAINING_REQUEST, CREATED)
        stubber.add_response(
            "get_trained_model",
            model_response(status, {"statusCode": "AlgorithmError", "message": "bad"}),
            GET_VERSION,
        )
        with pytest.raises(CleanRoomsMLJobFailedError, match="AlgorithmError: bad"):
            op.execute(context)

    def test_timeout_cancels_the_training_version(self, stub_for, context) -> None:
        op = training(waiter_max_attempts=1)
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], TRAINING_REQUEST, CREATED)
        stubber.add_response("get_trained_model", model_response("CREATE_IN_PROGRESS"), GET_VERSION)
        stubber.add_response("cancel_trained_model", {}, GET_VERSION)
        with pytest.raises(CleanRoomsMLWaitTimeoutError):
            op.execute(context)

    def test_on_kill_cancels_the_training(self, stub_for, context) -> None:
        op = training(wait_for_completion=False)
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], TRAINING_REQUEST, CREATED)
        op.execute(context)
        stubber.add_response("cancel_trained_model", {}, GET_VERSION)
        op.on_kill()

    def test_validation_before_any_call(self, stub_for, context) -> None:
        has_mode = HAS_INPUT_MODE
        op = training(hyperparameters="epochs=3", **({"training_input_mode": "file"} if has_mode else {}))
        stub_for(op)
        with pytest.raises(CleanRoomsMLRequestError) as raised:
            op.execute(context)
        text = str(raised.value)
        assert not has_mode or "training_input_mode: 'file' is not one of" in text
        assert "hyperparameters: rendered to a string, but an object (dict) is needed" in text
        assert "epochs=3" not in text  # map members may hold secrets: their strings are not echoed

    def test_deferrable_hands_the_version_to_the_trigger(self, stub_for, context, ti) -> None:
        op = training(deferrable=True)
        expect_durable_start(stub_for(op), context["ti"], TRAINING_REQUEST, CREATED)
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)
        trigger = deferred.value.trigger
        assert isinstance(trigger, CleanRoomsMLTrainedModelCompleteTrigger)
        _, kwargs = trigger.serialize()
        assert kwargs.get("version_identifier") == VERSION
        assert kwargs["cancel_on_kill"] is True

        resumed = training(deferrable=True)
        stub_for(resumed)
        event = {"status": "success", "trained_model_arn": MODEL_ARN}
        assert resumed.execute_complete(context, event) == MODEL_ARN

    def test_deferred_failure_reads_status_with_the_version(self, stub_for, context, ti) -> None:
        ti.xcoms["trained_model_version_identifier"] = VERSION
        op = training(deferrable=True)
        stub_for(op).add_response(
            "get_trained_model",
            model_response("CREATE_FAILED", {"statusCode": "X", "message": "Y"}),
            GET_VERSION,
        )
        with pytest.raises(CleanRoomsMLJobFailedError, match="X: Y"):
            op.execute_complete(context, {"status": "error", "message": "m", "trained_model_arn": MODEL_ARN})


CHANNEL_REQUEST: dict[str, Any] = {  # what CHANNEL_ARGS (the operator's arguments) become
    "membershipIdentifier": MEMBERSHIP,
    "configuredModelAlgorithmAssociations": [ASSOCIATION_ARN],
    "inputChannel": CHANNEL_ARGS["input_channel"],
    "name": "channel",
    "retentionInDays": 30,
}
GET_CHANNEL = {"membershipIdentifier": MEMBERSHIP, "mlInputChannelArn": CHANNEL_ARN}


def channel(**overrides: Any) -> CleanRoomsMLCreateMLInputChannelOperator:
    return make_operator(
        CleanRoomsMLCreateMLInputChannelOperator,
        **{"task_id": "create_channel", "waiter_max_attempts": 4, **overrides},
    )


class TestCreateMLInputChannel:
    def test_creates_and_waits_for_active(self, stub_for, context) -> None:
        op = channel()
        stubber = stub_for(op)
        stubber.add_response("create_ml_input_channel", {"mlInputChannelArn": CHANNEL_ARN}, CHANNEL_REQUEST)
        stubber.add_response("get_ml_input_channel", channel_response("CREATE_IN_PROGRESS"), GET_CHANNEL)
        stubber.add_response("get_ml_input_channel", channel_response("ACTIVE"), GET_CHANNEL)
        assert op.execute(context) == CHANNEL_ARN

    def test_failure(self, stub_for, context) -> None:
        op = channel()
        stubber = stub_for(op)
        stubber.add_response("create_ml_input_channel", {"mlInputChannelArn": CHANNEL_ARN}, CHANNEL_REQUEST)
        stubber.add_response("get_ml_input_channel", channel_response("CREATE_FAILED"), GET_CHANNEL)
        with pytest.raises(CleanRoomsMLJobFailedError, match="CREATE_FAILED"):
            op.execute(context)

    def test_on_kill_does_not_call_anything(self, stub_for, context) -> None:
        op = channel(wait_for_completion=False)
        stub_for(op).add_response(
            "create_ml_input_channel", {"mlInputChannelArn": CHANNEL_ARN}, CHANNEL_REQUEST
        )
        op.execute(context)
        op.on_kill()  # channels have no cancel operation

    def test_union_data_source_must_set_exactly_one(self, stub_for, context) -> None:
        op = channel(input_channel={"dataSource": {}, "roleArn": ROLE_ARN})
        stub_for(op)
        with pytest.raises(
            CleanRoomsMLRequestError, match=r"input_channel\.dataSource: must set exactly one"
        ):
            op.execute(context)

    def test_deferrable(self, stub_for, context) -> None:
        op = channel(deferrable=True)
        stub_for(op).add_response(
            "create_ml_input_channel", {"mlInputChannelArn": CHANNEL_ARN}, CHANNEL_REQUEST
        )
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)
        assert isinstance(deferred.value.trigger, CleanRoomsMLInputChannelActiveTrigger)


@pytest.mark.skipif(HAS_INPUT_MODE, reason="the installed botocore model has trainingInputMode")
def test_an_argument_the_installed_model_lacks_fails_at_parse_time() -> None:
    # The refusal names the release that added the member (airflow_cleanrooms/model_history.json).
    added = added_in("CreateTrainedModelRequest", "trainingInputMode")
    expected = (
        rf"model has no training_input_mode \(botocore {added} added trainingInputMode\); "
        rf"upgrade botocore \(and aiobotocore\) to {added} or later to use it"
    )
    with pytest.raises(TypeError, match=expected):
        training(training_input_mode="File")

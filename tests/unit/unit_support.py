"""Shared pieces for the unit tests: ARNs, model-valid responses, a fake task instance."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_cleanrooms.compat import has_model_versions
from airflow_cleanrooms.service_model import service_model

MEMBERSHIP = "11111111-2222-3333-4444-555555555555"
ACCOUNT = "123456789012"
_PREFIX = f"arn:aws:cleanrooms-ml:us-east-1:{ACCOUNT}:membership/{MEMBERSHIP}"
JOB_ARN = f"{_PREFIX}/trained-model-inference-job/job-1"
MODEL_ARN = f"{_PREFIX}/trained-model/model-1"
CHANNEL_ARN = f"{_PREFIX}/ml-input-channel/channel-1"
ASSOCIATION_ARN = f"{_PREFIX}/configured-model-algorithm-association/assoc-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/cleanrooms-ml"
#: Trained model versions (``versionIdentifier``) are in botocore's model from 1.38; the lowest stage
#: runs 1.37.1 (boto3's floor), where a trained model has no version and none is sent or expected.
MODEL_VERSIONS = has_model_versions()
VERSION: str | None = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee" if MODEL_VERSIONS else None
needs_model_versions = pytest.mark.skipif(
    not MODEL_VERSIONS, reason="the installed botocore model has no trained model versions"
)
#: The members the installed model gives ServiceQuotaExceededException. botocore 1.37 (Airflow 3.0's
#: pins) has ``message`` only: a refused start still waits for a slot there, but the quota's name and
#: value are not in the answer.
QUOTA_ERROR_MEMBERS = set(service_model().shape_for("ServiceQuotaExceededException").members)
needs_quota_value = pytest.mark.skipif(
    "quotaValue" not in QUOTA_ERROR_MEMBERS,
    reason="the installed botocore's ServiceQuotaExceededException has no quotaValue member",
)


def with_version(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` plus ``versionIdentifier`` where the installed model has trained model versions."""
    return {**params, "versionIdentifier": VERSION} if VERSION else dict(params)


CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)

INFERENCE_ARGS: dict[str, Any] = {
    "membership_identifier": MEMBERSHIP,
    "name": "churn-scores",
    "trained_model_arn": MODEL_ARN,
    "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
    "output_configuration": {"members": [{"accountId": ACCOUNT}], "accept": "text/csv"},
    "data_source": {"mlInputChannelArn": CHANNEL_ARN},
}
INFERENCE_REQUEST: dict[str, Any] = {
    "membershipIdentifier": MEMBERSHIP,
    "name": "churn-scores",
    "trainedModelArn": MODEL_ARN,
    "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
    "outputConfiguration": {"members": [{"accountId": ACCOUNT}], "accept": "text/csv"},
    "dataSource": {"mlInputChannelArn": CHANNEL_ARN},
}
TRAINING_ARGS: dict[str, Any] = {
    "membership_identifier": MEMBERSHIP,
    "name": "churn-model",
    "configured_model_algorithm_association_arn": ASSOCIATION_ARN,
    "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 10},
    "data_channels": [{"mlInputChannelArn": CHANNEL_ARN, "channelName": "train"}],
}


CHANNEL_ARGS: dict[str, Any] = {
    "membership_identifier": MEMBERSHIP,
    "configured_model_algorithm_associations": [ASSOCIATION_ARN],
    "input_channel": {
        "dataSource": {"protectedQueryInputParameters": {"sqlParameters": {"queryString": "SELECT 1"}}},
        "roleArn": ROLE_ARN,
    },
    "name": "channel",
    "retention_in_days": "30",
}


def make_operator(cls: type[Any], **overrides: Any) -> Any:
    """
    One of the provider's operators with valid arguments for ``cls``'s operation, waiting with
    ``waiter_delay=0`` (every call is stubbed: no clock to wait for), sync unless ``overrides`` say.
    """
    from airflow_cleanrooms.operators.cleanrooms_ml import (
        CleanRoomsMLCreateMLInputChannelOperator,
        CleanRoomsMLCreateTrainedModelOperator,
        CleanRoomsMLStartTrainedModelInferenceJobOperator,
    )

    required = {
        CleanRoomsMLStartTrainedModelInferenceJobOperator: INFERENCE_ARGS,
        CleanRoomsMLCreateTrainedModelOperator: TRAINING_ARGS,
        CleanRoomsMLCreateMLInputChannelOperator: CHANNEL_ARGS,
    }[cls]
    arguments: dict[str, Any] = {
        "task_id": "task",
        "aws_conn_id": None,
        "region_name": "us-east-1",
        "waiter_delay": 0,
        "waiter_max_attempts": 5,
        "deferrable": False,
        **required,
    }
    arguments.update(overrides)
    return cls(**arguments)


def job_response(status: str, details: dict[str, str] | None = None) -> dict[str, Any]:
    """A GetTrainedModelInferenceJob response that satisfies the model."""
    response: dict[str, Any] = {
        "createTime": CREATED,
        "updateTime": CREATED,
        "trainedModelInferenceJobArn": JOB_ARN,
        "name": "churn-scores",
        "status": status,
        "trainedModelArn": MODEL_ARN,
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "outputConfiguration": {"members": [{"accountId": ACCOUNT}]},
        "membershipIdentifier": MEMBERSHIP,
        "dataSource": {"mlInputChannelArn": CHANNEL_ARN},
    }
    if details:
        response["statusDetails"] = details
    return response


def model_response(status: str, details: dict[str, str] | None = None) -> dict[str, Any]:
    """A GetTrainedModel response that satisfies the model."""
    response: dict[str, Any] = {
        "membershipIdentifier": MEMBERSHIP,
        "collaborationIdentifier": "99999999-2222-3333-4444-555555555555",
        "trainedModelArn": MODEL_ARN,
        "name": "churn-model",
        "status": status,
        "configuredModelAlgorithmAssociationArn": ASSOCIATION_ARN,
        "createTime": CREATED,
        "updateTime": CREATED,
        "dataChannels": [{"mlInputChannelArn": CHANNEL_ARN, "channelName": "train"}],
    }
    if details:
        response["statusDetails"] = details
    return with_version(response)


def channel_response(status: str) -> dict[str, Any]:
    """A GetMLInputChannel response that satisfies the model."""
    return {
        "membershipIdentifier": MEMBERSHIP,
        "collaborationIdentifier": "99999999-2222-3333-4444-555555555555",
        "mlInputChannelArn": CHANNEL_ARN,
        "name": "channel",
        "configuredModelAlgorithmAssociations": [ASSOCIATION_ARN],
        "status": status,
        "retentionInDays": 30,
        "inputChannel": {
            "dataSource": {"protectedQueryInputParameters": {"sqlParameters": {"queryString": "SELECT 1"}}},
            "roleArn": ROLE_ARN,
        },
        "createTime": CREATED,
        "updateTime": CREATED,
    }


GET_JOB = {"membershipIdentifier": MEMBERSHIP, "trainedModelInferenceJobArn": JOB_ARN}
GET_MODEL = {"membershipIdentifier": MEMBERSHIP, "trainedModelArn": MODEL_ARN}


class FakeTaskInstance:
    """
    Just enough of a task instance for operators, shaped like Airflow's: the key that durable
    execution's identity tag is made of (dag_id, task_id, run_id, map_index), try_number, and XCom
    push/pull kept in a dict.
    """

    def __init__(self, task_id: str = "task", *, try_number: int = 1) -> None:
        self.dag_id = "unit_dag"
        self.task_id = task_id
        self.run_id = "manual__2026-01-01T00:00:00+00:00"
        self.map_index = -1
        self.try_number = try_number
        self.stats_tags: dict[str, str] = {}
        self.xcoms: dict[str, Any] = {}

    @property
    def identity(self) -> str:
        """The identity tag value durable execution puts on the jobs this task instance starts."""
        from airflow_cleanrooms.operators.start import task_instance_identity

        return task_instance_identity(self.dag_id, self.task_id, self.run_id, self.map_index)

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:  # Airflow 2.11 adds execution_date
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get(key)


def expect_durable_start(
    stubber: Any,
    ti: FakeTaskInstance,
    request: dict[str, Any],
    response: dict[str, Any],
    listed: list[dict[str, Any]] | None = None,
) -> None:
    """
    Queue what a durable start calls: the membership's listing (``listed``, default empty), then the
    start call with the request plus the task instance's identity tag.
    """
    from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY
    from airflow_cleanrooms.wait_semantics import RESOURCE_KINDS

    kind = next(
        k for k in RESOURCE_KINDS if k.start_operation and k.list_operation and k.arn_member in response
    )
    assert kind.list_operation is not None and kind.start_operation is not None
    stubber.add_response(
        xform(kind.list_operation),
        {kind.list_result_key: listed or []},
        {"membershipIdentifier": request["membershipIdentifier"], "maxResults": kind.list_page_size},
    )
    tagged = {**request, "tags": {**request.get("tags", {}), IDENTITY_TAG_KEY: ti.identity}}
    stubber.add_response(xform(kind.start_operation), response, tagged)


def xform(operation_name: str) -> str:
    from botocore import xform_name

    return xform_name(operation_name)

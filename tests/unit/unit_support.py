"""Shared pieces for the unit tests: ARNs, model-valid responses, a fake task instance."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

MEMBERSHIP = "11111111-2222-3333-4444-555555555555"
ACCOUNT = "123456789012"
_PREFIX = f"arn:aws:cleanrooms-ml:us-east-1:{ACCOUNT}:membership/{MEMBERSHIP}"
JOB_ARN = f"{_PREFIX}/trained-model-inference-job/job-1"
MODEL_ARN = f"{_PREFIX}/trained-model/model-1"
CHANNEL_ARN = f"{_PREFIX}/ml-input-channel/channel-1"
ASSOCIATION_ARN = f"{_PREFIX}/configured-model-algorithm-association/assoc-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/cleanrooms-ml"
VERSION = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
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
        "versionIdentifier": VERSION,
        "name": "churn-model",
        "status": status,
        "configuredModelAlgorithmAssociationArn": ASSOCIATION_ARN,
        "createTime": CREATED,
        "updateTime": CREATED,
        "dataChannels": [{"mlInputChannelArn": CHANNEL_ARN, "channelName": "train"}],
    }
    if details:
        response["statusDetails"] = details
    return response


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
    """Just enough of a task instance for operators: XCom push/pull kept in a dict."""

    def __init__(self, task_id: str = "task") -> None:
        self.task_id = task_id
        self.map_index = -1
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get(key)

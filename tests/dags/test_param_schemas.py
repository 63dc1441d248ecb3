"""
``airflow_cleanrooms.param_schemas``: JSON schemas from the botocore model agree with the model.

The cross-check: for a set of requests, the JSON schema of the whole request shape accepts exactly
the ones the provider's model-driven validator (``service_model.find_input_issues``) accepts.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from airflow_cleanrooms.param_schemas import member_schema, shape_schema
from airflow_cleanrooms.service_model import find_input_issues, operation_model

OP = "StartTrainedModelInferenceJob"
MEMBERSHIP = "0f0e0d0c-0b0a-4090-8070-605040302010"
BASE = f"arn:aws:cleanrooms-ml:us-east-1:111122223333:membership/{MEMBERSHIP}"
VALID: dict[str, Any] = {
    "membershipIdentifier": MEMBERSHIP,
    "name": "scores-20260102T030405",
    "trainedModelArn": f"{BASE}/trained-model/m1",
    "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 2},
    "outputConfiguration": {"accept": "text/csv", "members": [{"accountId": "444455556666"}]},
    "dataSource": {"mlInputChannelArn": f"{BASE}/ml-input-channel/c1"},
    "environment": {"SCORE_THRESHOLD": "0.5"},
    "tags": {"team": "growth"},
}


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    request = copy.deepcopy(VALID)
    target = request
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return request


_DELETE = object()

CASES = [
    pytest.param(VALID, id="valid"),
    pytest.param(_with(("resourceConfig", "instanceCount"), 11), id="count-too-high"),
    pytest.param(_with(("resourceConfig", "instanceType"), "ml.nope"), id="bad-instance-type"),
    pytest.param(_with(("outputConfiguration", "members"), []), id="no-receiver"),
    pytest.param(_with(("outputConfiguration", "members"), [{"accountId": "1"}]), id="short-account"),
    pytest.param(_with(("dataSource", "mlInputChannelArn"), "arn:aws:s3:::b"), id="bad-channel-arn"),
    pytest.param(_with(("tags",), {"aws:x": "y"}), id="reserved-tag-key"),
    pytest.param(_with(("tags",), {"Aws:x": "y"}), id="reserved-tag-key-mixed-case"),
    pytest.param(_with(("environment",), {"9X": "y"}), id="bad-env-name"),
    pytest.param(_with(("name",), ""), id="empty-name"),
    pytest.param(_with(("name",), "n" * 64), id="long-name"),
    pytest.param(_with(("trainedModelArn",), _DELETE), id="missing-required"),
    pytest.param(_with(("resourceConfig", "instanceCounts"), 1), id="unknown-member"),
]


@pytest.mark.parametrize("request_", CASES)
def test_request_schema_agrees_with_the_model_validator(request_: dict[str, Any]) -> None:
    input_shape = operation_model(OP).input_shape
    assert input_shape is not None
    schema = shape_schema(input_shape)
    model_accepts = not find_input_issues(OP, request_)
    schema_accepts = jsonschema.Draft202012Validator(schema).is_valid(request_)
    assert schema_accepts is model_accepts


def test_member_schema_steps_through_lists_and_structures() -> None:
    assert member_schema(OP, "outputConfiguration", "members", "accountId") == {
        "type": "string",
        "minLength": 12,
        "maxLength": 12,
        "pattern": "^(?:[0-9]{12})$",
    }
    count = member_schema(OP, "resourceConfig", "instanceCount")
    assert count["type"] == "integer" and count["minimum"] >= 1


def test_patterns_are_anchored() -> None:
    # botocore patterns must match the whole value; a bare JSON-schema pattern only needs to occur.
    arn = jsonschema.Draft202012Validator(member_schema(OP, "trainedModelArn"))
    assert arn.is_valid(VALID["trainedModelArn"])
    assert not arn.is_valid("junk " + VALID["trainedModelArn"])
    assert not arn.is_valid(VALID["trainedModelArn"] + " junk")


def test_member_schema_needs_a_member() -> None:
    with pytest.raises(ValueError, match="at least one member"):
        member_schema(OP)

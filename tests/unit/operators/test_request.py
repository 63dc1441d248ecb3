"""Unit tests of ``operators/request.py``: operator arguments -> a validated API request."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_cleanrooms.exceptions import CleanRoomsMLRequestError
from airflow_cleanrooms.operators.request import (
    REDACTED,
    argument_members,
    argument_names,
    build_request,
    json_argument_names,
    redacted_for_log,
    suggest_argument,
)
from airflow_cleanrooms.service_model import camel_to_snake, input_members, required_input_members
from tests.unit.unit_support import INFERENCE_ARGS, INFERENCE_REQUEST, MEMBERSHIP, MODEL_ARN

OPERATION = "StartTrainedModelInferenceJob"


def problems(arguments: dict[str, Any], **documents: Any) -> dict[str, str]:
    """``{path: message}`` of the error ``build_request`` raises (the test fails if it does not)."""
    with pytest.raises(CleanRoomsMLRequestError) as raised:
        build_request(OPERATION, arguments, **documents)
    return {issue.path: issue.message for issue in raised.value.issues}


def test_arguments_are_the_installed_models_input_members_in_snake_case() -> None:
    members = input_members(OPERATION)
    assert argument_members(OPERATION) == {camel_to_snake(m): m for m in members}
    assert argument_names(OPERATION)[:2] == tuple(camel_to_snake(m) for m in list(members)[:2])
    containers = {
        camel_to_snake(m) for m, s in members.items() if s.type_name in ("structure", "map", "list")
    }
    assert set(json_argument_names(OPERATION)) == containers
    assert {"resource_config", "environment", "tags"} <= containers
    assert "name" not in containers


def test_arguments_alone_give_the_camel_case_request() -> None:
    assert build_request(OPERATION, INFERENCE_ARGS) == INFERENCE_REQUEST


def test_cli_input_json_alone_is_a_whole_request_and_arguments_override_members_as_a_whole() -> None:
    document = json.dumps({**INFERENCE_REQUEST, "description": "from the document"})
    assert build_request(OPERATION, {}, cli_input_json=document) == {
        **INFERENCE_REQUEST,
        "description": "from the document",
    }
    overridden = build_request(
        OPERATION, {"resource_config": {"instanceType": "ml.c5.xlarge"}}, cli_input_json=INFERENCE_REQUEST
    )
    assert overridden["resourceConfig"] == {"instanceType": "ml.c5.xlarge"}
    assert overridden["membershipIdentifier"] == MEMBERSHIP


def test_cli_input_yaml_is_read_like_the_cli_and_not_together_with_json() -> None:
    yaml_document = "\n".join(f"{key}: {json.dumps(value)}" for key, value in INFERENCE_REQUEST.items())
    assert build_request(OPERATION, {}, cli_input_yaml=yaml_document) == INFERENCE_REQUEST
    found = problems({}, cli_input_json=INFERENCE_REQUEST, cli_input_yaml=yaml_document)
    assert "may not be given along with cli_input_json" in found["cli_input_yaml"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [("{not json", "is not valid JSON"), ("[1, 2]", "must be a JSON object (dict)")],
)
def test_a_document_that_is_not_a_json_object_is_named(document: str, expected: str) -> None:
    assert expected in problems(INFERENCE_ARGS, cli_input_json=document)["cli_input_json"]


def test_an_unknown_document_member_lists_the_allowed_ones_and_suggests_the_closest() -> None:
    found = problems({}, cli_input_json={**INFERENCE_REQUEST, "trainedModelArm": MODEL_ARN})
    message = found["cli_input_json.trainedModelArm"]
    assert "is not a member of the StartTrainedModelInferenceJob input" in message
    assert "did you mean 'trainedModelArn'?" in message


def test_rendered_strings_become_what_the_model_wants() -> None:
    request = build_request(
        OPERATION,
        {
            **INFERENCE_ARGS,
            "resource_config": '{"instanceType": "ml.m5.xlarge", "instanceCount": "2"}',
            "output_configuration": json.dumps(INFERENCE_ARGS["output_configuration"]),
        },
    )
    assert request["resourceConfig"] == {"instanceType": "ml.m5.xlarge", "instanceCount": 2}
    assert request["outputConfiguration"] == INFERENCE_REQUEST["outputConfiguration"]


def test_a_string_where_an_object_is_needed_names_the_argument_and_the_way_out() -> None:
    message = problems({**INFERENCE_ARGS, "resource_config": "ml.m5.xlarge"})["resource_config"]
    assert "rendered to a string, but an object (dict) is needed" in message
    assert "render_template_as_native_obj=True" in message


def test_an_empty_optional_value_means_not_given_and_an_empty_required_one_is_an_error() -> None:
    assert "description" not in build_request(OPERATION, {**INFERENCE_ARGS, "description": ""})
    assert "name" in problems({**INFERENCE_ARGS, "name": ""})
    assert "name" in required_input_members(OPERATION)


def test_every_problem_is_reported_at_once_by_argument_name() -> None:
    found = problems(
        {
            **INFERENCE_ARGS,
            "membership_identifier": None,
            "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 0},
            "tags": {"aws:reserved": "x"},
        }
    )
    assert "membership_identifier" in found
    assert any(path.startswith("resource_config") for path in found)
    assert any(path.startswith("tags") for path in found)


def test_an_unknown_argument_is_a_type_error_like_python_gives() -> None:
    with pytest.raises(TypeError, match="has no argument"):
        build_request(OPERATION, {**INFERENCE_ARGS, "instance_type": "ml.m5.xlarge"})


def test_values_under_sensitive_keys_never_appear_in_errors_or_logs() -> None:
    secret = "hunter2-very-secret"
    arguments = {**INFERENCE_ARGS, "environment": {"DB_PASSWORD": secret, "MODE": 7}}
    with pytest.raises(CleanRoomsMLRequestError) as raised:
        build_request(OPERATION, arguments)
    assert secret not in str(raised.value)
    logged = redacted_for_log({"environment": {"DB_PASSWORD": secret, "MODE": "fast"}, "name": "n"})
    assert logged == {"environment": {"DB_PASSWORD": "***", "MODE": "fast"}, "name": "n"}


@pytest.mark.parametrize("value", [{"nested": "hunter2-very-secret"}, ["hunter2-very-secret"], 314159265])
def test_an_invalid_secret_value_is_redacted_in_the_message_that_reports_it(value: Any) -> None:
    with pytest.raises(CleanRoomsMLRequestError) as raised:
        build_request(OPERATION, {**INFERENCE_ARGS, "environment": {"API_TOKEN": value}})
    message = str(raised.value)
    assert "environment['API_TOKEN']" in message
    assert "hunter2" not in message
    assert "314159265" not in message
    assert REDACTED in message


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("trained_model", "trained_model_arn"), ("resourceconfig", "resource_config"), ("zzz", None)],
)
def test_a_misspelled_keyword_gets_the_argument_it_most_likely_meant(typed: str, meant: str | None) -> None:
    assert suggest_argument(OPERATION, typed) == meant

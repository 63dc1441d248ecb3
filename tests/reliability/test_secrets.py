"""
Secrets: values under sensitive-looking keys are masked, credentials are never logged.

"Sensitive-looking" is Airflow's own rule (``should_hide_value_for_key``: names containing
``password``, ``secret``, ``token``, ``api_key``, ...), which in Airflow 3.3 lives in
``airflow.sdk._shared.secrets_masker``. The rendered-template view is what the task process sends to
the API server (``_serialize_rendered_fields``); the task log is filtered by the secrets masker that
``mask_secret`` feeds. The reliability suite checks the same in real task logs and the REST API's
rendered fields.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from airflow.sdk._shared.secrets_masker import redact, should_hide_value_for_key

from airflow_cleanrooms.emulator.pytest_plugin import connection_uri_env
from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from tests.reliability.durable_support import FakeTaskInstance, FakeTaskStateStore, make_context

MEMBERSHIP = "3e5a7c9b-1d2f-4a6b-8c0d-2e4f6a8b0c1d"
ARN_PREFIX = f"arn:aws:cleanrooms-ml:us-east-1:123456789012:membership/{MEMBERSHIP}"
InferenceOperator = CleanRoomsMLStartTrainedModelInferenceJobOperator


def _operator(environment: dict[str, Any], **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "task_id": "start_inference",
        "membership_identifier": MEMBERSHIP,
        "name": "secrets-job",
        "trained_model_arn": f"{ARN_PREFIX}/trained-model/m1",
        "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "output_configuration": {"members": [{"accountId": "111122223333"}]},
        "data_source": {"mlInputChannelArn": f"{ARN_PREFIX}/ml-input-channel/c1"},
        "environment": environment,
        "waiter_delay": 0,
    }
    options.update(kwargs)
    return InferenceOperator(**options)


def test_airflow_rule_decides_what_is_sensitive() -> None:
    assert should_hide_value_for_key("API_TOKEN")
    assert should_hide_value_for_key("db_password")
    assert should_hide_value_for_key("CLIENT_SECRET")
    assert not should_hide_value_for_key("MODEL_THRESHOLD")


def test_rendered_template_view_masks_sensitive_environment_values() -> None:
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    op = _operator(
        {"API_TOKEN": "tok-rendered-123", "DB_PASSWORD": "pw-rendered-456", "MODEL_THRESHOLD": "0.5"}
    )
    rendered = _serialize_rendered_fields(op)
    environment = rendered["environment"]
    if isinstance(environment, str):  # the JSON renderer may hand the dict over as a string
        environment = json.loads(environment)
    assert environment == {"API_TOKEN": "***", "DB_PASSWORD": "***", "MODEL_THRESHOLD": "0.5"}
    assert "tok-rendered-123" not in json.dumps(rendered)


def test_building_the_request_registers_sensitive_values_with_the_masker() -> None:
    op = _operator({"API_TOKEN": "tok-log-789", "MODEL_THRESHOLD": "0.75"})
    request = op.build_request()
    assert request["environment"]["API_TOKEN"] == "tok-log-789"  # the API still gets the value
    assert redact("container token is tok-log-789") == "container token is ***"
    assert redact("threshold 0.75") == "threshold 0.75"


@pytest.mark.parametrize(
    "environment",
    [
        {"DB_PASSWORD": 424242},  # wrong type: the error must not echo the value
        {**{f"VAR_{i}": str(i) for i in range(16)}, "DB_PASSWORD": "hunter2-in-a-too-big-map"},
    ],
    ids=["non-string-secret", "secret-in-oversized-map"],
)
def test_validation_errors_never_echo_sensitive_values(environment: dict[str, Any]) -> None:
    op = _operator(environment)
    with pytest.raises(ValueError, match="environment") as raised:
        op.build_request()
    message = str(raised.value)
    assert "424242" not in message
    assert "hunter2-in-a-too-big-map" not in message


@pytest.mark.integration
def test_credentials_are_never_logged(
    cleanrooms_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret_key = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-NOT-A-REAL-KEY"
    connection = {
        "conn_type": "aws",
        "login": "AKIAEXAMPLEKEYID0001",
        "password": secret_key,
        "extra": {"region_name": "us-east-1", "endpoint_url": cleanrooms_emulator.url},
    }
    monkeypatch.setenv(connection_uri_env("secret_conn"), json.dumps(connection))
    seeded = cleanrooms_emulator.control.seed_membership(MEMBERSHIP, trained_model=True)
    caplog.set_level(logging.DEBUG)
    op = _operator(
        {"API_TOKEN": "tok-never-logged-1", "MODEL_THRESHOLD": "0.5"},
        aws_conn_id="secret_conn",
        trained_model_arn=seeded["trained_model_arn"],
        data_source={"mlInputChannelArn": seeded["ml_input_channel_arn"]},
    )
    op.execute(make_context(FakeTaskInstance(), FakeTaskStateStore()))

    output = capsys.readouterr()
    everything = caplog.text + output.out + output.err
    assert "secrets-job" in everything  # the capture did see the task's logs
    assert secret_key not in everything

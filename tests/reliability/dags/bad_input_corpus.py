"""
The bad-input corpus: kinds of invalid arguments for the inference-job operator.

Each entry is a set of argument overrides on top of a valid baseline, and the argument path the
failure message must name. Every one must fail before any API call. The corpus is shared by the
in-process test (``tests/reliability/test_bad_input_corpus.py``) and by the reliability suite's DAG,
which runs it as a mapped task in real Airflow; that is why it lives next to the DAGs (the dags
folder is on ``sys.path`` when Airflow parses them) and uses only the standard library.

Placeholders (strings) are filled per run: ``@MEMBERSHIP@``, ``@TRAINED_MODEL_ARN@``,
``@CHANNEL_ARN@``, ``@ASSOCIATION_ARN@`` and ``@TAKEN_NAME@`` (the name of a running job another
task started). In the DAG, ``@RENDERED_STRING@`` becomes a Jinja template that renders to a plain
string; in-process it is that plain string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MEMBERSHIP = "@MEMBERSHIP@"
TRAINED_MODEL_ARN = "@TRAINED_MODEL_ARN@"
CHANNEL_ARN = "@CHANNEL_ARN@"
ASSOCIATION_ARN = "@ASSOCIATION_ARN@"
TAKEN_NAME = "@TAKEN_NAME@"
RENDERED_STRING = "@RENDERED_STRING@"

_ACCOUNT = "123456789012"
_MEMBERSHIP_ID = "0f3e5c1a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
_PREFIX = f"arn:aws:cleanrooms-ml:us-east-1:{_ACCOUNT}"
_IN_MEMBERSHIP = f"{_PREFIX}:membership/{_MEMBERSHIP_ID}"


@dataclass(frozen=True)
class BadInput:
    """One kind of invalid input: the overrides, the argument the error must name, a hint it must give."""

    id: str
    overrides: dict[str, Any]
    names: str
    hint: str | None = None
    needs: tuple[str, ...] = field(default=())


def baseline(name: str) -> dict[str, Any]:
    """A valid set of arguments (with placeholders)."""
    return {
        "membership_identifier": MEMBERSHIP,
        "name": name,
        "trained_model_arn": TRAINED_MODEL_ARN,
        "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "output_configuration": {"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
        "data_source": {"mlInputChannelArn": CHANNEL_ARN},
        "environment": {"MODEL_THRESHOLD": "0.5"},
        "tags": {"team": "growth"},
    }


def _rc(**values: Any) -> dict[str, Any]:
    return {"resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1, **values}}


CORPUS: tuple[BadInput, ...] = (
    BadInput("membership-not-a-uuid", {"membership_identifier": "membership-1"}, "membership_identifier"),
    BadInput(
        "membership-uppercase-uuid",
        {"membership_identifier": _MEMBERSHIP_ID.upper()},
        "membership_identifier",
    ),
    BadInput(
        "trained-model-arn-of-another-kind",
        {"trained_model_arn": f"{_IN_MEMBERSHIP}/ml-input-channel/c1"},
        "trained_model_arn",
    ),
    BadInput(
        "trained-model-arn-of-another-service",
        {"trained_model_arn": f"arn:aws:sagemaker:us-east-1:{_ACCOUNT}:model/churn"},
        "trained_model_arn",
    ),
    BadInput(
        "trained-model-arn-11-digit-account",
        {"trained_model_arn": _IN_MEMBERSHIP.replace(_ACCOUNT, _ACCOUNT[:-1]) + "/trained-model/m"},
        "trained_model_arn",
    ),
    BadInput(
        "association-arn-malformed",
        {"configured_model_algorithm_association_arn": f"{_PREFIX}:training-dataset/x"},
        "configured_model_algorithm_association_arn",
    ),
    BadInput(
        "channel-arn-malformed",
        {"data_source": {"mlInputChannelArn": "ml-input-channel/1"}},
        "data_source.mlInputChannelArn",
    ),
    BadInput(
        "kms-arn-of-another-service",
        {"kms_key_arn": f"arn:aws:secretsmanager:us-east-1:{_ACCOUNT}:secret:key"},
        "kms_key_arn",
    ),
    BadInput("name-empty", {"name": ""}, "name"),
    BadInput("name-whitespace", {"name": "   "}, "name"),
    BadInput("name-64-characters", {"name": "n" * 64}, "name", hint="at most 63"),
    BadInput(
        "instance-type-outside-enum",
        _rc(instanceType="ml.m5.xlarg"),
        "resource_config.instanceType",
        hint="did you mean 'ml.m5.xlarge'",
    ),
    BadInput("instance-count-0", _rc(instanceCount=0), "resource_config.instanceCount", hint="1 to 10"),
    BadInput("instance-count-11", _rc(instanceCount=11), "resource_config.instanceCount", hint="1 to 10"),
    BadInput(
        "payload-0-mb",
        {"container_execution_parameters": {"maxPayloadInMB": 0}},
        "container_execution_parameters.maxPayloadInMB",
    ),
    BadInput(
        "payload-101-mb",
        {"container_execution_parameters": {"maxPayloadInMB": 101}},
        "container_execution_parameters.maxPayloadInMB",
    ),
    BadInput(
        "two-output-members",
        {"output_configuration": {"members": [{"accountId": "111122223333"}, {"accountId": "444455556666"}]}},
        "output_configuration.members",
    ),
    BadInput("no-output-members", {"output_configuration": {"members": []}}, "output_configuration.members"),
    BadInput(
        "account-id-not-12-digits",
        {"output_configuration": {"members": [{"accountId": "11112222333"}]}},
        "output_configuration.members[0].accountId",
    ),
    BadInput(
        "payer-account-with-letters",
        {"ml_model_inference_payer_account_id": "11112222333a"},
        "ml_model_inference_payer_account_id",
    ),
    BadInput(
        "environment-17-entries",
        {"environment": {f"VAR_{i}": str(i) for i in range(17)}},
        "environment",
        hint="at most 16",
    ),
    BadInput("environment-non-string-value", {"environment": {"MODEL_THRESHOLD": 0.5}}, "environment"),
    BadInput("tag-key-starting-with-AWS:", {"tags": {"AWS:team": "growth"}}, "tags", hint="aws:"),
    BadInput("tag-value-257-characters", {"tags": {"team": "v" * 257}}, "tags"),
    BadInput("tag-key-129-characters", {"tags": {"k" * 129: "v"}}, "tags"),
    BadInput(
        "misspelled-key-instancetype",
        {"resource_config": {"instancetype": "ml.m5.xlarge", "instanceCount": 1}},
        "resource_config",
        hint="did you mean 'instanceType'",
    ),
    BadInput(
        "template-renders-a-string-where-a-dict-is-needed",
        {"resource_config": RENDERED_STRING},
        "resource_config",
        hint="rendered to a string",
    ),
    BadInput("data-source-missing", {"data_source": None}, "data_source", hint="is required"),
    BadInput("description-256-characters", {"description": "d" * 256}, "description"),
    BadInput(
        "model-version-not-a-uuid",
        {"trained_model_version_identifier": "v1"},
        "trained_model_version_identifier",
    ),
    BadInput(
        "cli-input-json-unknown-member",
        {"cli_input_json": {"kmsKeyARN": "arn:aws:kms:us-east-1:123456789012:key/k"}},
        "cli_input_json.kmsKeyARN",
        hint="did you mean 'kmsKeyArn'",
    ),
    BadInput(
        "name-of-a-running-job-of-another-task",
        {"name": TAKEN_NAME},
        "name",
        hint="another task instance",
        needs=("taken_name",),
    ),
)


def fill(value: Any, values: dict[str, str]) -> Any:
    """Replace the placeholders in a (nested) value."""
    if isinstance(value, str):
        for placeholder, replacement in values.items():
            value = value.replace(placeholder, replacement)
        return value
    if isinstance(value, dict):
        return {fill(k, values): fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    return value


def arguments(entry: BadInput, name: str, values: dict[str, str]) -> dict[str, Any]:
    """The full (invalid) operator arguments of one entry, placeholders filled."""
    merged = {**baseline(name), **entry.overrides}
    return fill({k: v for k, v in merged.items() if v is not None}, values)

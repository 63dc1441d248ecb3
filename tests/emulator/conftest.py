"""Fixtures for the emulator's own tests (the ``cleanrooms_emulator`` fixture comes from the plugin)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle


ACCOUNT = "123456789012"


@pytest.fixture
def client(cleanrooms_emulator: EmulatorHandle) -> Any:
    """A boto3 client that sends what it is given (no client-side validation, no retries)."""
    return cleanrooms_emulator.client(
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1})
    )


@pytest.fixture
def membership() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def seeded(cleanrooms_emulator: EmulatorHandle, membership: str) -> dict[str, str]:
    return cleanrooms_emulator.control.seed_membership(membership, trained_model=True)


@pytest.fixture
def make_inference_request(seeded: dict[str, str]) -> Any:
    """``make_inference_request(name=..., **extra)``: a StartTrainedModelInferenceJob request."""
    return lambda name="nightly-scoring", **extra: _inference_request(seeded, name, **extra)


def _inference_request(seeded: dict[str, str], name: str, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "membershipIdentifier": seeded["membership_id"],
        "name": name,
        "trainedModelArn": seeded["trained_model_arn"],
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "outputConfiguration": {"accept": "text/csv", "members": [{"accountId": ACCOUNT}]},
        "dataSource": {"mlInputChannelArn": seeded["ml_input_channel_arn"]},
    }
    request.update(extra)
    return request


@pytest.fixture
def required_check() -> Any:
    """``required_check(operation, response)`` -> required output members missing from a response."""
    from airflow_cleanrooms.service_model import operation_model

    return lambda operation, response: _missing_required(response, operation_model(operation).output_shape)


def _missing_required(value: Any, shape: Any, path: str = "") -> list[str]:
    """Every member the model marks required that ``value`` (a parsed response) lacks."""
    missing: list[str] = []
    if shape.type_name == "structure":
        for name in shape.required_members:
            if value.get(name) is None:
                missing.append(f"{path}.{name}")
        for name, item in value.items():
            if name in shape.members and item is not None:
                missing += _missing_required(item, shape.members[name], f"{path}.{name}")
    elif shape.type_name == "list":
        for index, item in enumerate(value):
            missing += _missing_required(item, shape.member, f"{path}[{index}]")
    return missing

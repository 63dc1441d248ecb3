"""The pytest plugin's fixtures: an Airflow AWS connection that reaches the emulator, restored after."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cleanrooms.emulator.pytest_plugin import CONN_ID, connection_uri_env

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle

ENV = connection_uri_env(CONN_ID)


@pytest.fixture(scope="module", autouse=True)
def no_connection_before() -> Any:
    previous = os.environ.pop(ENV, None)
    yield
    if previous is not None:
        os.environ[ENV] = previous


def test_airflow_hook_reaches_the_emulator_through_the_connection(
    cleanrooms_emulator: EmulatorHandle, membership: str
) -> None:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    conn = json.loads(os.environ[ENV])
    assert conn["conn_type"] == "aws"
    assert conn["extra"] == {"region_name": "us-east-1", "endpoint_url": cleanrooms_emulator.url}
    seed = cleanrooms_emulator.control.seed_membership(membership, trained_model=True)
    hook = AwsBaseHook(aws_conn_id=cleanrooms_emulator.conn_id, client_type="cleanroomsml")
    models = hook.conn.list_trained_models(membershipIdentifier=membership)["trainedModels"]
    assert [m["trainedModelArn"] for m in models] == [seed["trained_model_arn"]]
    assert [m["status"] for m in models] == ["ACTIVE"]
    (call,) = cleanrooms_emulator.control.requests("ListTrainedModels")
    assert call["params"] == {"membershipIdentifier": membership}


def test_the_connection_is_removed_after_each_test() -> None:
    assert ENV not in os.environ


def test_each_test_starts_from_an_empty_emulator(
    cleanrooms_emulator: EmulatorHandle, membership: str
) -> None:
    assert cleanrooms_emulator.control.requests() == []
    client = cleanrooms_emulator.client()
    assert client.list_configured_model_algorithms()["configuredModelAlgorithms"] == []
    assert cleanrooms_emulator.control.timings()["pending_seconds"] == 0.2

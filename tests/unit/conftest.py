"""Fixtures for the unit tests: a fake task instance context and Stubber helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from airflow_cleanrooms.aio import client_pool
from tests.unit.trigger_support import AsyncScriptedClient, ScriptedClient, connection_env
from tests.unit.unit_support import FakeTaskInstance


@pytest.fixture
def ti() -> FakeTaskInstance:
    return FakeTaskInstance()


@pytest.fixture
def context(ti: FakeTaskInstance) -> dict[str, Any]:
    return {"ti": ti}


@pytest.fixture(autouse=True)
def _no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waits poll with waiter_delay=0 in tests; make sure nothing sleeps for real either way."""
    import airflow_cleanrooms.hooks.cleanrooms_ml as hook_module

    monkeypatch.setattr(hook_module.time, "sleep", lambda _seconds: None)


@pytest.fixture
def stub_for():
    """``stub_for(operator_or_sensor)`` -> an active Stubber on its hook's client; checked at teardown."""
    stubbers: list[Stubber] = []

    def make(task: Any) -> Stubber:
        # Start calls go through the hook's single-attempt client; a Stubber answers before any retry
        # could happen, so the unit tests queue every call on the one stubbed client.
        task.hook.__dict__["single_attempt_conn"] = task.hook.conn
        stubber = Stubber(task.hook.conn)
        stubber.activate()
        stubbers.append(stubber)
        return stubber

    yield make
    for stubber in stubbers:
        stubber.assert_no_pending_responses()
        stubber.deactivate()


@pytest.fixture
def stubbed_hook() -> Iterator[tuple[Any, Stubber]]:
    from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook

    hook = CleanRoomsMLHook(aws_conn_id=None, region_name="us-east-1")
    stubber = Stubber(hook.conn)
    stubber.activate()
    yield hook, stubber
    stubber.assert_no_pending_responses()
    stubber.deactivate()


# ---- connections and scripted clients of the trigger and client-pool tests ----------------------


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SCALE_A", connection_env("AKIASCALEAAAAAAAAAAA", "secret-a"))
    monkeypatch.setenv("AIRFLOW_CONN_SCALE_A_TWIN", connection_env("AKIASCALEAAAAAAAAAAA", "secret-a"))
    monkeypatch.setenv("AIRFLOW_CONN_SCALE_B", connection_env("AKIASCALEBBBBBBBBBBB", "secret-b"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCALE_EU", connection_env("AKIASCALEAAAAAAAAAAA", "secret-a", "eu-west-1")
    )


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, list[Any]], list[ScriptedClient]]:
    """Replace client construction with scripted clients; returns (scripts by job ARN, clients built)."""
    by_arn: dict[str, list[Any]] = {}
    built: list[ScriptedClient] = []

    def build(hook: Any, transport: str = "thread") -> ScriptedClient:
        client = (AsyncScriptedClient if transport == "aio" else ScriptedClient)(hook, by_arn)
        built.append(client)
        return client

    monkeypatch.setattr(client_pool, "create_client_blocking", build)
    return by_arn, built

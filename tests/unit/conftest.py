"""Fixtures for the unit tests: a fake task instance context and Stubber helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

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

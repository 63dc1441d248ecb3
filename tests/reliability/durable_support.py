"""
Test support for durable execution: a task-instance-like context without a running Airflow.

``FakeTaskInstance`` and ``FakeTaskStateStore`` stand in for what the Task SDK hands an operator
(``context["ti"]``, ``context["task_state_store"]``), so the mixin's decisions can be driven try by
try against the emulator in-process. The real task execution path is covered by the suite in
``test_reliability_suite.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any


@dataclass
class FakeTaskStateStore:
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        assert value is not None
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


@dataclass
class FakeTaskInstance:
    dag_id: str = "reliability_dag"
    task_id: str = "start_inference"
    run_id: str = "manual__2026-01-01T00:00:00+00:00"
    map_index: int = -1
    try_number: int = 1
    stats_tags: dict[str, str] = field(default_factory=dict)
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def make_context(
    ti: FakeTaskInstance, store: FakeTaskStateStore | None, queued_at: datetime | None = None
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "ti": ti,
        "task_instance": ti,
        "dag_run": SimpleNamespace(queued_at=queued_at or datetime.now(timezone.utc)),
    }
    if store is not None:
        context["task_state_store"] = store
    return context

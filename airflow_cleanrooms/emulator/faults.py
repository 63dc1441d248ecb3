"""
Faults injected on demand: throttling, 5xx answers, added latency, dropped connections.

Fractions are applied deterministically (an accumulator per fault, not a random draw): a rate of
0.25 faults exactly every fourth matching request, so tests that use fractions are repeatable.
``*_next`` counts fault the next N matching requests, whatever the rates say (e.g. "the next two
polls are throttled, then the service recovers").
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

THROTTLE = "throttle"
ERROR = "error"
DROP = "drop"
_ACTIONS = (DROP, ERROR, THROTTLE)


@dataclass
class FaultSettings:
    """What to inject, and into which operations (``operations=None``: every AWS operation)."""

    throttle_rate: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency_seconds: float = 0.0
    throttle_next: int = 0
    error_next: int = 0
    drop_next: int = 0
    operations: list[str] | None = None

    def update(self, values: Mapping[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault setting {key!r}; known: {', '.join(sorted(known))}")
            if key == "operations":
                if value is not None and (
                    not isinstance(value, list) or not all(isinstance(v, str) for v in value)
                ):
                    raise ValueError("operations must be a list of operation names or null")
                self.operations = list(value) if value else None
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"fault setting {key} must be a number >= 0, got {value!r}")
            if key.endswith("_rate") and value > 1:
                raise ValueError(f"fault setting {key} is a fraction between 0 and 1, got {value!r}")
            if key.endswith("_next"):
                value = int(value)
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultDecision:
    """What to do to one request: wait ``latency`` seconds, then maybe ``action`` instead of answering."""

    latency: float = 0.0
    action: str | None = None


@dataclass
class FaultInjector:
    settings: FaultSettings = field(default_factory=FaultSettings)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._credit = dict.fromkeys(_ACTIONS, 0.0)

    def configure(self, values: Mapping[str, Any], replace: bool = False) -> FaultSettings:
        with self._lock:
            settings = FaultSettings() if replace else FaultSettings(**self.settings.as_dict())
            settings.update(values)
            self.settings = settings
            self._credit = dict.fromkeys(_ACTIONS, 0.0)
            return settings

    def decide(self, operation: str) -> FaultDecision:
        with self._lock:
            s = self.settings
            if s.operations is not None and operation not in s.operations:
                return FaultDecision()
            decision = FaultDecision(latency=s.latency_seconds)
            for action in _ACTIONS:
                pending = getattr(s, f"{action}_next")
                if pending > 0:
                    setattr(s, f"{action}_next", pending - 1)
                    decision.action = action
                    return decision
            for action in _ACTIONS:
                rate = getattr(s, f"{action}_rate")
                if rate <= 0:
                    continue
                self._credit[action] += rate
                if self._credit[action] >= 1.0 - 1e-9:
                    self._credit[action] -= 1.0
                    decision.action = action
                    return decision
            return decision

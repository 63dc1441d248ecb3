"""
The log of AWS API calls the emulator received, for tests to assert on.

Each entry holds the operation name, its parsed parameters (model member names, as the client sent
them), the HTTP status answered, the error code if any, the fault injected if any, and the AWS limit
that refused it if any (``rate``, ``quota`` or ``token``). Headers are
never recorded (they carry credentials and signatures). Only the newest ``maxlen`` calls are kept, so
a long demo with many pollers stays small.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any


class RequestLog:
    def __init__(self, maxlen: int = 10_000):
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def record(
        self,
        operation: str,
        params: dict[str, Any],
        status: int,
        error: str | None = None,
        fault: str | None = None,
        limit: str | None = None,
    ) -> None:
        entry = {
            "seq": next(self._seq),
            "time": time.time(),
            "operation": operation,
            "params": params,
            "status": status,
            "error": error,
            "fault": fault,
            "limit": limit,
        }
        with self._lock:
            self._entries.append(entry)

    def entries(self, operation: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._entries)
        if operation is not None:
            items = [e for e in items if e["operation"] == operation]
        return items

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

"""
The emulator's request and reply types, and the request ids every answer carries: what the HTTP
server, the Clean Rooms ML and Logs handlers, STS and the control endpoint exchange. A leaf.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.errors import EmulatorError

# Request ids are UUID-shaped: a random per-process prefix and a counter.
_REQUEST_ID_PREFIX = str(uuid.uuid4())[:24]
_REQUEST_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_REQUEST_COUNTER) % 16**12:012x}"


@dataclass
class HttpRequest:
    method: str
    raw_path: str
    query_string: str
    headers: Mapping[str, str]  # case-insensitive mapping
    body: bytes


@dataclass
class HttpReply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (injected latency)
    drop: bool = False  # close the connection without answering


def json_reply(status: int, payload: Any, request_id: str | None = None) -> HttpReply:
    headers = {"Content-Type": "application/json"}
    if request_id:
        headers["x-amzn-RequestId"] = request_id
    return HttpReply(status, json.dumps(payload, default=str).encode(), headers)


def error_reply(error: EmulatorError, request_id: str) -> HttpReply:
    reply = json_reply(error.status, {**error.members, "message": error.message}, request_id)
    reply.headers["x-amzn-ErrorType"] = error.code
    return reply


@dataclass
class View:
    """A read response the wire layer may cache: equal keys always render equal responses."""

    key: tuple[Any, ...]
    build: Callable[[], dict[str, Any]]

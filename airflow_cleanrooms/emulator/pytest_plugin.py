"""
pytest plugin (entry point ``pytest11``): fixtures that run the Clean Rooms ML emulator for a test.

``cleanrooms_emulator``
    An in-process emulator shared by the session (started on first use on a free port, with fast
    phase timings) and reset before each test. Gives ``.url``, ``.control`` (an
    :class:`~airflow_cleanrooms.emulator.control.EmulatorControl`), ``.server``, ``.client()`` (a boto3
    client) and ``.conn_id``: an Airflow AWS connection, set for the test as the environment variable
    ``AIRFLOW_CONN_<CONN_ID>`` (``endpoint_url`` = the emulator, region ``us-east-1``, dummy keys)
    and removed/restored afterwards.

``cleanrooms_emulator_process``
    A factory starting the emulator as a separate process (``python -m airflow_cleanrooms.emulator``)
    that a test can stop, kill and restart on the same port and state file (for "the emulator went
    away mid-wait" tests). Every process it started is stopped at teardown.

Both are as strict as AWS (the emulator's default limits: job quotas, request rates, expiring
session tokens). A test that needs a kinder world says so where a reader sees it, with the marker
``@pytest.mark.emulator_limits(...)`` (on the test, its class or module):

* ``emulator_limits("off")``: every limit off;
* ``emulator_limits(request_rate="off", inference_jobs_per_membership=20)``: those limits changed
  (``Limits`` field names; ``"off"`` or ``None`` switches one off);
* ``reason="..."`` is for the reader.

The closest marker wins, and both fixtures apply it (the process fixture as command-line flags).
A test can also call ``cleanrooms_emulator.control.set_limits(...)`` / ``no_limits()``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_cleanrooms.emulator.control import EmulatorControl
from airflow_cleanrooms.emulator.limits import Limits, coerce_limit
from airflow_cleanrooms.emulator.process import CONN_ID, EmulatorProcess, emulator_client
from airflow_cleanrooms.emulator.server import EmulatorServer

LIMITS_MARKER = "emulator_limits"

REGION = "us-east-1"
# Fast enough for tests, slow enough that a poller sees every status.
FAST_TIMINGS: dict[str, float] = {
    "pending_seconds": 0.2,
    "running_seconds": 0.6,
    "cancel_seconds": 0.2,
}


def connection_uri_env(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_json(
    url: str,
    region: str = REGION,
    role_arn: str | None = None,
    assume_role_kwargs: dict[str, Any] | None = None,
) -> str:
    """
    An Airflow AWS connection (JSON form) pointing at the emulator.

    With ``role_arn`` the connection assumes that role through the emulator's STS: the amazon
    provider never sends role assumption to the connection's ``endpoint_url``, only to
    ``service_config.sts.endpoint_url``, so both are set.
    """
    extra: dict[str, Any] = {"region_name": region, "endpoint_url": url}
    if role_arn is not None:
        extra["role_arn"] = role_arn
        extra["service_config"] = {"sts": {"endpoint_url": url}}
        if assume_role_kwargs:
            extra["assume_role_kwargs"] = dict(assume_role_kwargs)
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{LIMITS_MARKER}(off=None, reason=None, **limits): change the emulator's AWS limits for this "
        "test ('off' positional: every limit off; keywords: Limits fields, 'off'/None switches one off)",
    )


def marked_limits(node: pytest.Item) -> dict[str, Any] | None:
    """The limits the closest ``emulator_limits`` marker asks for (``{"off": True, ...}``), or None."""
    marker = node.get_closest_marker(LIMITS_MARKER)
    if marker is None:
        return None
    values = {k: v for k, v in marker.kwargs.items() if k != "reason"}
    for arg in marker.args:
        if arg != "off":
            raise pytest.UsageError(f"{LIMITS_MARKER} takes 'off' or keyword limits, got {arg!r}")
        values["off"] = True
    for name, value in values.items():
        if name != "off":
            coerce_limit(name, value)  # a typo fails the test at once, not deep in a run
    return values


def limit_flags(values: dict[str, Any]) -> list[str]:
    """``marked_limits`` as command-line flags of ``python -m airflow_cleanrooms.emulator``."""
    flags = ["--no-limits"] if values.get("off") else []
    for name, value in values.items():
        if name == "off":
            continue
        value = coerce_limit(name, value)
        if name == "token_expiry":
            text = "on" if value else "off"
        else:
            text = "off" if value is None else str(value)
        flags += ["--" + name.replace("_", "-"), text]
    return flags


@dataclass
class EmulatorHandle:
    """What ``cleanrooms_emulator`` gives a test."""

    server: EmulatorServer
    conn_id: str = CONN_ID
    region: str = REGION

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.url)

    def client(self, service_name: str = "cleanroomsml", **kwargs: Any) -> Any:
        """A boto3 client for the emulator (dummy credentials): ``cleanroomsml``, or ``logs``, ``sts``."""
        return emulator_client(self.url, service_name, self.region, **kwargs)


class _EnvPatch:
    """Set environment variables and put back what was there before."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str) -> None:
        if name not in self._saved:
            self._saved[name] = os.environ.get(name)
        os.environ[name] = value

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


@pytest.fixture(scope="session")
def cleanrooms_emulator_server() -> Iterator[EmulatorServer]:
    """The session's in-process emulator (``:memory:`` state, fast timings)."""
    server = EmulatorServer(port=0, state=":memory:", timings=FAST_TIMINGS)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cleanrooms_emulator(
    cleanrooms_emulator_server: EmulatorServer, request: pytest.FixtureRequest
) -> Iterator[EmulatorHandle]:
    """
    A freshly reset emulator (AWS's limits, or what the test's ``emulator_limits`` marker says) and
    an Airflow connection (``.conn_id``) pointing at it.
    """
    cleanrooms_emulator_server.reset()
    marked = marked_limits(request.node)
    if marked is not None:
        limits = Limits.off() if marked.pop("off", False) else cleanrooms_emulator_server.limits
        limits.update(marked)
        cleanrooms_emulator_server.limits.update(limits.as_dict())
        cleanrooms_emulator_server.responses.limiter.refill()
    handle = EmulatorHandle(cleanrooms_emulator_server)
    env = _EnvPatch()
    env.set(connection_uri_env(handle.conn_id), connection_json(handle.url, handle.region))
    try:
        yield handle
    finally:
        env.restore()


@pytest.fixture
def cleanrooms_emulator_process(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., EmulatorProcess]]:
    """
    Factory: ``cleanrooms_emulator_process(*cli_args, state=None, set_connection=True, env=None)``
    starts an emulator process (fast timings unless the args or ``env`` say otherwise; AWS's limits
    unless the test's ``emulator_limits`` marker or the args say otherwise) and returns its
    :class:`EmulatorProcess`; with ``set_connection`` it also sets
    ``AIRFLOW_CONN_CLEANROOMS_EMULATOR`` (restored at teardown).
    """
    marked = marked_limits(request.node)
    marker_flags = limit_flags(marked) if marked is not None else []
    started: list[EmulatorProcess] = []
    env_patch = _EnvPatch()

    def start(
        *args: str,
        state: str | Path | None = None,
        set_connection: bool = True,
        env: dict[str, str] | None = None,
    ) -> EmulatorProcess:
        defaults: list[str] = []
        for name, value in FAST_TIMINGS.items():
            flag = "--" + name.replace("_", "-")
            if flag not in args and f"CLEANROOMS_EMULATOR_{name.upper()}" not in (env or {}):
                defaults += [flag, str(value)]
        path = Path(state) if state is not None else tmp_path / f"emulator-{len(started)}.db"
        proc = EmulatorProcess(
            state=path, args=[*defaults, *marker_flags, *args], env=dict(env or {})
        ).start()
        started.append(proc)
        if set_connection:
            env_patch.set(connection_uri_env(proc.conn_id), connection_json(proc.url))
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
        env_patch.restore()

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
from airflow_cleanrooms.emulator.process import CONN_ID, EmulatorProcess
from airflow_cleanrooms.emulator.server import EmulatorServer

REGION = "us-east-1"
# Fast enough for tests, slow enough that a poller sees every status.
FAST_TIMINGS: dict[str, float] = {
    "pending_seconds": 0.2,
    "running_seconds": 0.6,
    "cancel_seconds": 0.2,
}


def connection_uri_env(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def connection_json(url: str, region: str = REGION) -> str:
    """An Airflow AWS connection (JSON form) pointing at the emulator."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": region, "endpoint_url": url},
        }
    )


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

    def client(self, **kwargs: Any) -> Any:
        """A boto3 ``cleanroomsml`` client for the emulator (dummy credentials)."""
        import boto3

        options: dict[str, Any] = {
            "endpoint_url": self.url,
            "region_name": self.region,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        options.update(kwargs)
        return boto3.client("cleanroomsml", **options)


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
def cleanrooms_emulator(cleanrooms_emulator_server: EmulatorServer) -> Iterator[EmulatorHandle]:
    """A freshly reset emulator and an Airflow connection (``.conn_id``) pointing at it."""
    cleanrooms_emulator_server.reset()
    handle = EmulatorHandle(cleanrooms_emulator_server)
    env = _EnvPatch()
    env.set(connection_uri_env(handle.conn_id), connection_json(handle.url, handle.region))
    try:
        yield handle
    finally:
        env.restore()


@pytest.fixture
def cleanrooms_emulator_process(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """
    Factory: ``cleanrooms_emulator_process(*cli_args, state=None, set_connection=True, env=None)``
    starts an emulator process (fast timings unless the args or ``env`` say otherwise) and returns
    its :class:`EmulatorProcess`; with ``set_connection`` it also sets
    ``AIRFLOW_CONN_CLEANROOMS_EMULATOR`` (restored at teardown).
    """
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
        proc = EmulatorProcess(state=path, args=[*defaults, *args], env=dict(env or {})).start()
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

"""
The emulator in a child process (``python -m airflow_cleanrooms.emulator``): started on a free port,
its URL read from its log, stopped, killed and restarted on demand. Used by the pytest plugin's
``cleanrooms_emulator_process`` fixture, the reliability suite and the benchmarks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_cleanrooms.emulator.control import EmulatorControl

#: Airflow connection id the emulator fixtures point at the emulator.
CONN_ID = "cleanrooms_emulator"
_LISTENING = re.compile(r"listening on (http://\S+)")


def emulator_client(
    url: str, service_name: str = "cleanroomsml", region: str = "us-east-1", **kwargs: Any
) -> Any:
    """A boto3 client for the emulator at ``url`` (dummy credentials; ``kwargs`` override any option)."""
    import boto3

    options: dict[str, Any] = {
        "endpoint_url": url,
        "region_name": region,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        **kwargs,
    }
    return boto3.client(service_name, **options)


@dataclass
class EmulatorProcess:
    """An emulator in a child process: ``stop()`` (SIGTERM), ``kill()`` (SIGKILL), ``restart()``."""

    state: Path | str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    url: str = ""
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    conn_id: str = CONN_ID
    #: Timeout of :attr:`control`'s requests (seconds).
    control_timeout: float = 10.0

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.url, timeout=self.control_timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, service_name: str = "cleanroomsml", **kwargs: Any) -> Any:
        """A boto3 client for this emulator (:func:`emulator_client`)."""
        return emulator_client(self.url, service_name, **kwargs)

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        if self.running:
            return self
        command = [
            sys.executable,
            "-m",
            "airflow_cleanrooms.emulator",
            "--port",
            str(self.port),
            "--state",
            str(self.state),
            *self.args,
        ]
        env = {**os.environ, **self.env}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
        )
        found = threading.Event()
        process = self.process

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.output.append(line.rstrip("\n"))
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.url = match.group(1)
                    self.port = int(self.url.rsplit(":", 1)[1])
                    found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(timeout) or not self.url or not self.running:
            self.kill()
            raise RuntimeError("the emulator process did not start:\n" + "\n".join(self.output[-20:]))
        self.control.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the emulator vanishes without any cleanup."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, timeout: float = 30.0) -> EmulatorProcess:
        """Stop (if running) and start again on the same port and state file."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

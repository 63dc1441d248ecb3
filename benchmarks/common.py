"""Shared pieces of the benchmarks: the emulator in a subprocess, the environment, job creation."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MEMBERSHIP = "0b1f6c2a-3d4e-4f50-8a6b-7c8d9e0f1a2b"
# Two connections with different keys: waits are split between them, and must never share a client.
CONNECTIONS = {
    "bench_a": ("AKIABENCHAAAAAAAAAAA", "bench-secret-a"),
    "bench_b": ("AKIABENCHBBBBBBBBBBB", "bench-secret-b"),
}
_LISTENING = re.compile(r"listening on (http://\S+)")


def connection_uri_env(url: str) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables for the benchmark connections, pointing at the emulator."""
    import json

    env = {}
    for conn_id, (key, secret) in CONNECTIONS.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
            {
                "conn_type": "aws",
                "login": key,
                "password": secret,
                "extra": {"region_name": "us-east-1", "endpoint_url": url},
            }
        )
    return env


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a measured subprocess: a throwaway AIRFLOW_HOME, no examples, dummy AWS keys."""
    home = Path(tempfile.mkdtemp(prefix="cleanrooms-bench-home-"))
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
        }
    )
    env.pop("AWS_PROFILE", None)
    env.update(extra or {})
    return env


class EmulatorProcess:
    """``python -m airflow_cleanrooms.emulator`` in a subprocess, so its CPU is off the measured loop."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> EmulatorProcess:
        cmd = [
            sys.executable,
            "-m",
            "airflow_cleanrooms.emulator",
            "--port",
            "0",
            "--state",
            ":memory:",
            "--log-level",
            "WARNING",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(), cwd=ROOT
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = _LISTENING.search(line)
            if match:
                self.url = match.group(1)
                break
        if not self.url:
            self.__exit__()
            raise RuntimeError("the emulator did not start:\n" + "".join(lines))
        # Keep draining its output so it never blocks on a full pipe.
        import threading

        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    @property
    def control(self) -> Any:
        from airflow_cleanrooms.emulator.control import EmulatorControl

        return EmulatorControl(self.url, timeout=120)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def boto3_client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "cleanroomsml",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(max_pool_connections=16, retries={"mode": "standard", "max_attempts": 5}),
    )


def create_jobs(url: str, n: int, seed: dict[str, str], prefix: str) -> list[dict[str, Any]]:
    """Start ``n`` inference jobs (8 at a time); returns their ARNs with the wall time each was created."""
    client = boto3_client(url)

    def start(i: int) -> dict[str, Any]:
        before = time.time()
        response = client.start_trained_model_inference_job(
            membershipIdentifier=MEMBERSHIP,
            name=f"{prefix}-{i:05d}",
            trainedModelArn=seed["trained_model_arn"],
            resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            outputConfiguration={"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
            dataSource={"mlInputChannelArn": seed["ml_input_channel_arn"]},
        )
        after = time.time()
        return {"arn": response["trainedModelInferenceJobArn"], "created": (before + after) / 2}

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, range(n)))

"""Shared pieces of the benchmarks: the emulator in a subprocess, the environment, job creation."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from airflow_cleanrooms.emulator.process import EmulatorProcess

ROOT = Path(__file__).resolve().parents[1]
MEMBERSHIP = "0b1f6c2a-3d4e-4f50-8a6b-7c8d9e0f1a2b"
# Two connections with different keys: waits are split between them, and must never share a client.
CONNECTIONS = {
    "bench_a": ("AKIABENCHAAAAAAAAAAA", "bench-secret-a"),
    "bench_b": ("AKIABENCHBBBBBBBBBBB", "bench-secret-b"),
}


# The rate-limited run: a multi-team triggerer's connections, one AWS account each (the emulator takes
# a 12-digit access key as the caller's account), with MEMBERSHIPS_PER_TEAM memberships each.
TEAMS = {
    "team_a": ("111100000001", "team-secret-a"),
    "team_b": ("111100000002", "team-secret-b"),
    "team_c": ("111100000003", "team-secret-c"),
    "team_d": ("111100000004", "team-secret-d"),
}
MEMBERSHIPS_PER_TEAM = 2


def connection_uri_env(url: str, connections: dict[str, tuple[str, str]] | None = None) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` variables for the benchmark connections, pointing at the emulator."""
    import json

    env = {}
    for conn_id, (key, secret) in (connections or CONNECTIONS).items():
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


def emulator_process(*args: str) -> EmulatorProcess:
    """The emulator in its own process (its CPU off the measured loop), quiet; use it as ``with``."""
    return EmulatorProcess(
        state=":memory:", args=["--log-level", "WARNING", *args], env=child_env(), control_timeout=120
    )


def boto3_client(url: str, key: str = "testing", secret: str = "testing") -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "cleanroomsml",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(max_pool_connections=16, retries={"mode": "standard", "max_attempts": 5}),
    )


def _start_job(client: Any, membership: str, name: str, seed: dict[str, str]) -> dict[str, Any]:
    """Start one inference job; its ARN and the wall time it was created (mid-call)."""
    before = time.time()
    response = client.start_trained_model_inference_job(
        membershipIdentifier=membership,
        name=name,
        trainedModelArn=seed["trained_model_arn"],
        resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        outputConfiguration={"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
        dataSource={"mlInputChannelArn": seed["ml_input_channel_arn"]},
    )
    after = time.time()
    return {"arn": response["trainedModelInferenceJobArn"], "created": (before + after) / 2}


def create_jobs(url: str, n: int, seed: dict[str, str], prefix: str) -> list[dict[str, Any]]:
    """Start ``n`` inference jobs (8 at a time); returns their ARNs with the wall time each was created."""
    client = boto3_client(url)

    def start(i: int) -> dict[str, Any]:
        return _start_job(client, MEMBERSHIP, f"{prefix}-{i:05d}", seed)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, range(n)))


def create_team_jobs(url: str, n: int, seeds: dict[str, dict[str, str]], prefix: str) -> list[dict[str, Any]]:
    """
    Start ``n`` inference jobs spread round-robin over the memberships of :data:`TEAMS` (``seeds``:
    membership id -> its seeded resources, ``MEMBERSHIPS_PER_TEAM`` per team in team order), each
    by its team's account. Returns ARN, creation time, connection id, membership and account of each.
    """
    layout = [
        (conn_id, key, secret, membership)
        for t, (conn_id, (key, secret)) in enumerate(TEAMS.items())
        for membership in list(seeds)[t * MEMBERSHIPS_PER_TEAM : (t + 1) * MEMBERSHIPS_PER_TEAM]
    ]
    clients = {conn_id: boto3_client(url, key, secret) for conn_id, (key, secret) in TEAMS.items()}

    def start(i: int) -> dict[str, Any]:
        conn_id, key, _, membership = layout[i % len(layout)]
        return {
            **_start_job(clients[conn_id], membership, f"{prefix}-{i:05d}", seeds[membership]),
            "conn_id": conn_id,
            "membership": membership,
            "account": key,
        }

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(start, range(n)))

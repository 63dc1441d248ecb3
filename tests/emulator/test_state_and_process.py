"""State that survives restarts, the command line, and concurrent clients."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from airflow_cleanrooms.emulator import EmulatorServer
from airflow_cleanrooms.emulator.limits import Limits
from airflow_cleanrooms.emulator.process import emulator_client

ACCOUNT = "123456789012"


def boto_client(url: str, **config: Any) -> Any:
    return emulator_client(url, config=Config(retries={"total_max_attempts": 1}, **config))


def start_job(client: Any, seed: dict[str, str], name: str) -> str:
    return str(
        client.start_trained_model_inference_job(
            membershipIdentifier=seed["membership_id"],
            name=name,
            trainedModelArn=seed["trained_model_arn"],
            resourceConfig={"instanceType": "ml.m5.xlarge"},
            outputConfiguration={"members": [{"accountId": ACCOUNT}]},
            dataSource={"mlInputChannelArn": seed["ml_input_channel_arn"]},
            tags={"kept": "yes"},
        )["trainedModelInferenceJobArn"]
    )


def test_restart_on_the_same_file_keeps_jobs_and_their_progress(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    membership = str(uuid.uuid4())
    with EmulatorServer(state=str(state), pending_seconds=100, running_seconds=100) as first:
        seed = first.control.seed_membership(membership, trained_model=True)
        client = boto_client(first.url)
        arn = start_job(client, seed, "survivor")
        first.control.fail_job("doomed", message="boom")
        doomed = start_job(client, seed, "doomed")
        first_port = first.port

    # A second server on the same file (another port) sees every job, still on the stored schedule.
    with EmulatorServer(state=str(state), pending_seconds=1, running_seconds=1) as second:
        assert second.port != first_port or second.url
        client = boto_client(second.url)
        key = {"membershipIdentifier": membership}
        job = client.get_trained_model_inference_job(**key, trainedModelInferenceJobArn=arn)
        assert job["status"] == "CREATE_PENDING"
        assert job["tags"] == {"kept": "yes"}
        second.control.advance_clock(150)
        assert client.get_trained_model_inference_job(**key, trainedModelInferenceJobArn=arn)["status"] == (
            "CREATE_IN_PROGRESS"
        )
        second.control.advance_clock(100)
        assert (
            client.get_trained_model_inference_job(**key, trainedModelInferenceJobArn=arn)["status"]
            == "ACTIVE"
        )
        failed = client.get_trained_model_inference_job(**key, trainedModelInferenceJobArn=doomed)
        assert (failed["status"], failed["statusDetails"]["message"]) == ("CREATE_FAILED", "boom")
        listed = client.list_trained_model_inference_jobs(membershipIdentifier=membership)
        assert {j["trainedModelInferenceJobArn"] for j in listed["trainedModelInferenceJobs"]} == {
            arn,
            doomed,
        }
        # The failure rule was kept too.
        assert [r["name"] for r in second.control.failures()] == ["doomed"]


def test_memory_state_is_not_shared(tmp_path: Path) -> None:
    membership = str(uuid.uuid4())
    with EmulatorServer(state=":memory:") as first:
        seed = first.control.seed_membership(membership, trained_model=True)
    with EmulatorServer(state=":memory:") as second:
        client = boto_client(second.url)
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_trained_model(
                membershipIdentifier=membership, trainedModelArn=seed["trained_model_arn"]
            )


def test_concurrent_clients() -> None:
    membership = str(uuid.uuid4())
    # 64 jobs in flight in one membership, started 32 at a time: the server's concurrency, with AWS's
    # job quotas and request rates off.
    with EmulatorServer(
        state=":memory:", pending_seconds=0, running_seconds=1000, limits=Limits.off()
    ) as server:
        seed = server.control.seed_membership(membership, trained_model=True)
        client = boto_client(server.url, max_pool_connections=32)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            # 64 distinct jobs started and polled at once.
            arns = list(pool.map(lambda i: start_job(client, seed, f"job-{i}"), range(64)))
            statuses = list(
                pool.map(
                    lambda arn: client.get_trained_model_inference_job(
                        membershipIdentifier=membership, trainedModelInferenceJobArn=arn
                    )["status"],
                    arns,
                )
            )

            # 16 racers for one name: exactly one wins, the rest get a ConflictException.
            def race(_: int) -> str:
                try:
                    start_job(client, seed, "contended")
                    return "started"
                except client.exceptions.ConflictException:
                    return "conflict"

            outcomes = list(pool.map(race, range(16)))
        assert len(set(arns)) == 64
        assert set(statuses) == {"CREATE_IN_PROGRESS"}
        assert sorted(outcomes) == ["conflict"] * 15 + ["started"]
        assert len(server.control.requests("StartTrainedModelInferenceJob")) == 64 + 16


def test_command_line_flags_env_restart_and_sigterm(cleanrooms_emulator_process: Any, tmp_path: Path) -> None:
    state = tmp_path / "cli.db"
    proc = cleanrooms_emulator_process(
        "--running-seconds",
        "500",
        "--fail-job",
        "doomed:AlgorithmError:exit 1",
        state=state,
        env={"CLEANROOMS_EMULATOR_PENDING_SECONDS": "42", "CLEANROOMS_EMULATOR_THROTTLE_RATE": "0"},
    )
    assert f"Clean Rooms ML emulator listening on {proc.url}" in proc.output
    assert proc.url.startswith("http://127.0.0.1:")
    health = proc.control.health()
    assert health["timings"]["pending_seconds"] == 42  # from the environment
    assert health["timings"]["running_seconds"] == 500  # from the flag
    assert health["state"] == str(state)
    conn = json.loads(os.environ["AIRFLOW_CONN_CLEANROOMS_EMULATOR"])
    assert conn["extra"]["endpoint_url"] == proc.url

    membership = str(uuid.uuid4())
    seed = proc.control.seed_membership(membership, trained_model=True)
    arn = start_job(boto_client(proc.url), seed, "before-restart")

    # SIGTERM: clean exit 0; then a restart on the same port and file keeps the job.
    assert proc.stop() == 0
    assert proc.output[-1] == "Clean Rooms ML emulator stopped"
    port = proc.port
    proc.start()
    assert proc.port == port
    client = boto_client(proc.url)
    job = client.get_trained_model_inference_job(
        membershipIdentifier=membership, trainedModelInferenceJobArn=arn
    )
    assert job["name"] == "before-restart"

    # SIGKILL loses nothing either (every write is committed before it is answered).
    proc.kill()
    proc.start()
    client = boto_client(proc.url)
    assert (
        client.get_trained_model_inference_job(
            membershipIdentifier=membership, trainedModelInferenceJobArn=arn
        )["name"]
        == "before-restart"
    )
    assert proc.control.failures()[0]["statusCode"] == "AlgorithmError"

    # Ctrl-C (SIGINT) stops it cleanly too.
    assert proc.process is not None
    proc.process.send_signal(signal.SIGINT)
    assert proc.process.wait(30) == 0
    assert not any("Traceback" in line for line in proc.output)


def test_console_script_help_lists_flags_and_their_environment_variables() -> None:
    script = Path(sys.executable).parent / "cleanrooms-ml-emulator"
    assert script.exists(), "the console script is declared in pyproject.toml"
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    for flag, env in [
        ("--port", "CLEANROOMS_EMULATOR_PORT"),
        ("--state", "CLEANROOMS_EMULATOR_STATE"),
        ("--pending-seconds", "CLEANROOMS_EMULATOR_PENDING_SECONDS"),
        ("--throttle-rate", "CLEANROOMS_EMULATOR_THROTTLE_RATE"),
        ("--fail-job", "CLEANROOMS_EMULATOR_FAIL_JOB"),
    ]:
        assert flag in shown and env in shown


def test_two_servers_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    state = str(tmp_path / "shared.db")
    membership = str(uuid.uuid4())
    with EmulatorServer(state=state, pending_seconds=100) as first, EmulatorServer(state=state) as second:
        seed = first.control.seed_membership(membership, trained_model=True)
        arn = start_job(boto_client(first.url), seed, "shared")
        key = {"membershipIdentifier": membership, "trainedModelInferenceJobArn": arn}
        other = boto_client(second.url)
        assert other.get_trained_model_inference_job(**key)["status"] == "CREATE_PENDING"
        other.cancel_trained_model_inference_job(**key)
        assert boto_client(first.url).get_trained_model_inference_job(**key)["status"] == "CANCEL_PENDING"

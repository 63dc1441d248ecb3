"""
Waits outlive their credentials: a connection with ``role_arn`` assumes the role through the
emulator's STS, whose credentials here last 6 seconds, while the jobs run 27 seconds (real time:
botocore decides when to refresh on the wall clock, so the clock is not moved).

Every wait path is exercised at once on its own job: the trigger on the pooled thread-transport
client and on the pooled aiobotocore client (each keeps its one client for the whole wait), the
operators' sync wait (``hook.wait_for``), a sensor poking in ``poke`` mode (one hook for every poke)
and in ``reschedule`` mode (a new task instance, so a new hook, per poke). The counter-proof runs the
same waits on clients built from frozen credentials: they fail with ``ExpiredTokenException``, so
the first test would fail if any of those clients stopped refreshing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from airflow_cleanrooms.aio import client_pool
from airflow_cleanrooms.aio.client_pool import SharedClientPool, close_shared_clients
from airflow_cleanrooms.emulator.pytest_plugin import connection_json
from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook
from airflow_cleanrooms.sensors.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobSensor
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobCompleteTrigger
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL_INFERENCE_JOB, error_code

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROLE_ARN = "arn:aws:iam::210987654321:role/cleanrooms-ml-waits"
CONN_ID = "cleanrooms_role"
CREDENTIAL_SECONDS = 6
JOB_SECONDS = 27
DELAY = 2


class AioTrigger(CleanRoomsMLTrainedModelInferenceJobCompleteTrigger):
    client_transport = "aio"


@pytest.fixture
def role_jobs(cleanrooms_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``start(name)`` -> the ARN of a ``JOB_SECONDS`` job started through the role connection."""
    control = cleanrooms_emulator.control
    control.set_limits(credential_seconds=CREDENTIAL_SECONDS)
    control.set_timings(pending_seconds=1, running_seconds=JOB_SECONDS)
    membership = str(uuid.uuid4())
    seed = control.seed_membership(membership, trained_model=True)
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", connection_json(cleanrooms_emulator.url, role_arn=ROLE_ARN)
    )
    hook = CleanRoomsMLHook(aws_conn_id=CONN_ID)

    def start(name: str) -> str:
        response = hook.conn.start_trained_model_inference_job(
            membershipIdentifier=membership,
            name=name,
            trainedModelArn=seed["trained_model_arn"],
            resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            outputConfiguration={"members": [{"accountId": "111122223333"}]},
            dataSource={"mlInputChannelArn": seed["ml_input_channel_arn"]},
        )
        return str(response["trainedModelInferenceJobArn"])

    start.membership = membership  # type: ignore[attr-defined]
    start.control = control  # type: ignore[attr-defined]
    return start


def _trigger(cls: type, membership: str, arn: str) -> Any:
    return cls(
        membership_identifier=membership,
        trained_model_inference_job_arn=arn,
        waiter_delay=DELAY,
        waiter_max_attempts=4 * JOB_SECONDS // DELAY,
        aws_conn_id=CONN_ID,
    )


def _run_triggers(*triggers: Any) -> tuple[list[dict[str, Any]], int]:
    """Run each trigger to its event on one loop, as the triggerer does; also the clients built."""

    async def main() -> tuple[list[dict[str, Any]], int]:
        async def first(trigger: Any) -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("the trigger ended without an event")

        try:
            events = await asyncio.gather(*(first(t) for t in triggers))
            return list(events), SharedClientPool.for_running_loop().clients_created
        finally:
            await close_shared_clients()

    return asyncio.run(main())


def _sync_wait(hook: CleanRoomsMLHook, membership: str, arn: str) -> str | None:
    state = hook.wait_for(
        TRAINED_MODEL_INFERENCE_JOB,
        membership,
        arn,
        waiter_delay=DELAY,
        waiter_max_attempts=4 * JOB_SECONDS // DELAY,
        max_error_streak=0,
    )
    return state.status


def _sensor(membership: str, arn: str, mode: str) -> CleanRoomsMLTrainedModelInferenceJobSensor:
    return CleanRoomsMLTrainedModelInferenceJobSensor(
        task_id=f"sensor_{mode}",
        membership_identifier=membership,
        trained_model_inference_job_arn=arn,
        aws_conn_id=CONN_ID,
        poke_interval=DELAY,
        mode=mode,
    )


def _poke_until_done(membership: str, arn: str, mode: str) -> int:
    """Poke as the sensor's mode does: one sensor for every poke, or a new one per poke (reschedule)."""
    sensor = _sensor(membership, arn, mode)
    pokes = 0
    while True:
        if mode == "reschedule":
            sensor = _sensor(membership, arn, mode)
        pokes += 1
        if sensor.poke({}):
            return pokes
        time.sleep(DELAY)


@pytest.mark.timeout(4 * JOB_SECONDS)
def test_every_wait_path_outlives_many_credential_lifetimes(role_jobs):
    membership, control = role_jobs.membership, role_jobs.control
    arns = {path: role_jobs(f"creds-{path}") for path in ("thread", "aio", "sync", "poke", "reschedule")}
    started = time.monotonic()
    with ThreadPoolExecutor(3) as threads:
        sync = threads.submit(_sync_wait, CleanRoomsMLHook(aws_conn_id=CONN_ID), membership, arns["sync"])
        poke = threads.submit(_poke_until_done, membership, arns["poke"], "poke")
        reschedule = threads.submit(_poke_until_done, membership, arns["reschedule"], "reschedule")
        events, clients_built = _run_triggers(
            _trigger(CleanRoomsMLTrainedModelInferenceJobCompleteTrigger, membership, arns["thread"]),
            _trigger(AioTrigger, membership, arns["aio"]),
        )
        assert sync.result() == "ACTIVE"
        assert poke.result() > 1 and reschedule.result() > 1
    waited = time.monotonic() - started
    assert [event["status"] for event in events] == ["success", "success"], events
    # One pooled client per transport served its wait from start to end.
    assert clients_built == 2
    # The waits spanned several lifetimes, the role was assumed again along the way, and no request
    # was ever refused for an expired token.
    assert waited > 3 * CREDENTIAL_SECONDS
    assert len(control.requests("AssumeRole")) > waited / CREDENTIAL_SECONDS
    refused = [r for r in control.requests() if r["error"] == "ExpiredTokenException"]
    assert refused == []


def _frozen_client(hook: Any, transport: str = "thread") -> Any:
    """A client of ``hook``'s connection made from a snapshot of its assumed-role credentials."""
    frozen = hook.get_session(region_name=hook.region_name).get_credentials().get_frozen_credentials()
    return boto3.client(
        "cleanroomsml",
        region_name=hook.region_name,
        endpoint_url=hook.conn_config.get_service_endpoint_url(service_name="cleanroomsml"),
        aws_access_key_id=frozen.access_key,
        aws_secret_access_key=frozen.secret_key,
        aws_session_token=frozen.token,
    )


@pytest.mark.timeout(4 * JOB_SECONDS)
def test_the_same_waits_fail_with_expired_token_when_credentials_are_frozen(role_jobs, monkeypatch):
    membership = role_jobs.membership
    trigger_arn, sync_arn = role_jobs("frozen-trigger"), role_jobs("frozen-sync")
    monkeypatch.setattr(client_pool, "create_client_blocking", _frozen_client)
    hook = CleanRoomsMLHook(aws_conn_id=CONN_ID)
    hook.__dict__["conn"] = _frozen_client(hook)
    with ThreadPoolExecutor(1) as threads:
        sync = threads.submit(_sync_wait, hook, membership, sync_arn)
        (event,), _ = _run_triggers(
            _trigger(CleanRoomsMLTrainedModelInferenceJobCompleteTrigger, membership, trigger_arn)
        )
        with pytest.raises(ClientError) as raised:
            sync.result()
    assert event["status"] == "error" and "ExpiredTokenException" in event["message"], event
    assert error_code(raised.value) == "ExpiredTokenException"

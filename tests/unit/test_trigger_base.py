"""The shared base run loop: client sharing, schedule, error budget and the events it emits."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from airflow_cleanrooms.aio import client_pool
from airflow_cleanrooms.aio.client_pool import SharedClientPool, close_shared_clients
from tests.unit.trigger_support import (
    JOB_ARN,
    MEMBERSHIP,
    AsyncScriptedClient,
    ScaleTestHook,
    ScaleTestJobTrigger,
    ScriptedClient,
    connection_env,
    job,
)


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SCALE_A", connection_env("AKIASCALEAAAAAAAAAAA", "secret-a"))
    monkeypatch.setenv("AIRFLOW_CONN_SCALE_A_TWIN", connection_env("AKIASCALEAAAAAAAAAAA", "secret-a"))
    monkeypatch.setenv("AIRFLOW_CONN_SCALE_B", connection_env("AKIASCALEBBBBBBBBBBB", "secret-b"))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCALE_EU", connection_env("AKIASCALEAAAAAAAAAAA", "secret-a", "eu-west-1")
    )


@pytest.fixture
def scripts(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, list[Any]], list[ScriptedClient]]:
    """Replace client construction with scripted clients; returns (scripts by job ARN, clients built)."""
    by_arn: dict[str, list[Any]] = {}
    built: list[ScriptedClient] = []

    def build(hook: Any, transport: str = "thread") -> ScriptedClient:
        client = (AsyncScriptedClient if transport == "aio" else ScriptedClient)(hook, by_arn)
        built.append(client)
        return client

    monkeypatch.setattr(client_pool, "create_client_blocking", build)
    return by_arn, built


def trigger(n: int = 1, **kwargs: Any) -> ScaleTestJobTrigger:
    kwargs.setdefault("aws_conn_id", "scale_a")
    return ScaleTestJobTrigger(
        membership_identifier=MEMBERSHIP, trained_model_inference_job_arn=JOB_ARN.format(n=n), **kwargs
    )


async def first_event(t: ScaleTestJobTrigger) -> dict[str, Any]:
    async for event in t.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


def run_all(*triggers: ScaleTestJobTrigger) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        try:
            return list(await asyncio.gather(*(first_event(t) for t in triggers)))
        finally:
            await close_shared_clients()

    return asyncio.run(main())


def throttled() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 429},
        },
        "GetTrainedModelInferenceJob",
    )


# -- client sharing ---------------------------------------------------------------------------------


def test_triggers_on_one_connection_share_one_client_and_other_connections_get_their_own(scripts):
    by_arn, built = scripts
    for n in range(6):
        by_arn[JOB_ARN.format(n=n)] = [job("CREATE_IN_PROGRESS"), job("ACTIVE")]
    same = [trigger(0), trigger(1), trigger(2)]
    twin, other, eu = (
        trigger(3, aws_conn_id="scale_a_twin"),
        trigger(4, aws_conn_id="scale_b"),
        trigger(5, aws_conn_id="scale_eu"),
    )
    events = run_all(*same, twin, other, eu)

    assert [e["status"] for e in events] == ["success"] * 6
    assert len({t._client_id for t in same}) == 1
    # A twin connection (same keys, other id), other keys, other region: never the same client.
    ids = {same[0]._client_id, twin._client_id, other._client_id, eu._client_id}
    assert len(ids) == 4
    assert len(built) == 4
    assert {c.hook.aws_conn_id for c in built} == {"scale_a", "scale_a_twin", "scale_b", "scale_eu"}
    assert same[0]._client_key.identity == twin._client_key.identity  # same keys...
    assert same[0]._client_key != twin._client_key  # ...still not shared across connection ids
    assert same[0]._client_key.identity != other._client_key.identity
    # Each job was polled through the client of its own connection.
    for client in built:
        arns = {call["trainedModelInferenceJobArn"] for call in client.calls}
        expected = {
            "scale_a": {JOB_ARN.format(n=n) for n in range(3)},
            "scale_a_twin": {JOB_ARN.format(n=3)},
            "scale_b": {JOB_ARN.format(n=4)},
            "scale_eu": {JOB_ARN.format(n=5)},
        }[client.hook.aws_conn_id]
        assert arns == expected


@pytest.mark.parametrize("transport", ["thread", "aio"])
def test_real_clients_carry_each_connections_credentials_and_region(transport):
    def botocore_client(client: Any) -> Any:
        return client.client if transport == "thread" else client

    async def main() -> tuple[list[Any], int]:
        pool = SharedClientPool.for_running_loop()
        seen = []
        async with (
            pool.lease(ScaleTestHook(aws_conn_id="scale_a"), transport) as (key_a, client_a),
            pool.lease(ScaleTestHook(aws_conn_id="scale_a"), transport) as (key_a2, client_a2),
            pool.lease(ScaleTestHook(aws_conn_id="scale_b"), transport) as (key_b, client_b),
            pool.lease(ScaleTestHook(aws_conn_id="scale_eu"), transport) as (_, client_eu),
        ):
            assert key_a == key_a2 and client_a is client_a2
            assert key_a.transport == transport
            assert pool.leases(key_a) == 2
            assert client_a is not client_b and client_a is not client_eu
            for client in (client_a, client_b, client_eu):
                real = botocore_client(client)
                creds = real._request_signer._credentials
                seen.append((creds.access_key, creds.secret_key, real.meta.region_name))
            # No explicit retry config: the shared client retries in botocore's standard mode.
            assert botocore_client(client_a).meta.config.retries["mode"] == "standard"
            # A real call goes out through the client (nothing listens there: a connection error).
            with pytest.raises(EndpointConnectionError):
                await client_a.get_trained_model_inference_job(
                    membershipIdentifier=MEMBERSHIP, trainedModelInferenceJobArn=JOB_ARN.format(n=1)
                )
        assert pool.leases(key_a) == 0 and pool.leases(key_b) == 0
        created = pool.clients_created
        await close_shared_clients()
        return seen, created

    seen, created = asyncio.run(main())
    assert seen == [
        ("AKIASCALEAAAAAAAAAAA", "secret-a", "us-east-1"),
        ("AKIASCALEBBBBBBBBBBB", "secret-b", "us-east-1"),
        ("AKIASCALEAAAAAAAAAAA", "secret-a", "eu-west-1"),
    ]
    assert created == 3


def test_idle_client_is_closed_after_its_last_lease_and_a_new_one_is_built_afterwards(scripts):
    _, built = scripts

    async def main() -> None:
        pool = SharedClientPool.for_running_loop()
        pool.idle_ttl = 0.0
        async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")) as (key, _):
            assert not built[0].closed
        for _ in range(50):
            if built[0].closed:
                break
            await asyncio.sleep(0.01)
        assert built[0].closed and pool.keys == []
        async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")) as (key2, _):
            assert key2 == key and len(built) == 2
        await close_shared_clients()
        assert built[1].closed

    asyncio.run(main())
    assert len(built) == 2


def test_pools_are_per_event_loop(scripts):
    _, built = scripts

    async def lease_once() -> int:
        async with SharedClientPool.for_running_loop().lease(ScaleTestHook(aws_conn_id="scale_a")) as (_, c):
            result = id(c)
        await close_shared_clients()
        return result

    asyncio.run(lease_once())
    asyncio.run(lease_once())
    assert len(built) == 2 and built[0] is not built[1]


def test_lease_is_released_when_the_trigger_is_cancelled(scripts):
    by_arn, _ = scripts
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_IN_PROGRESS")]

    class Slow(ScaleTestJobTrigger):
        def poll_interval(self, rng: random.Random) -> float:
            return 3600.0  # the first poll comes at once, then it waits "forever"

    t = Slow(
        membership_identifier=MEMBERSHIP,
        trained_model_inference_job_arn=JOB_ARN.format(n=1),
        aws_conn_id="scale_a",
    )

    async def main() -> int:
        task = asyncio.ensure_future(first_event(t))
        while getattr(t, "_client_key", None) is None:
            await asyncio.sleep(0.01)
        pool = SharedClientPool.for_running_loop()
        assert pool.leases(t._client_key) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        leases = pool.leases(t._client_key)
        await close_shared_clients()
        return leases

    assert asyncio.run(main()) == 0


# -- schedule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [1, 5, 30, 60])
def test_poll_intervals_are_jittered_within_bounds(delay):
    t = trigger(waiter_delay=delay)
    rng = random.Random(42)
    schedule = super(ScaleTestJobTrigger, t)  # the base class's decisions, not the test double's
    intervals = [schedule.poll_interval(rng) for _ in range(2000)]
    firsts = [schedule.first_poll_delay(rng) for _ in range(2000)]
    assert all((1 - t.jitter) * delay <= i <= delay for i in intervals)
    assert all(0 <= f <= min(t.max_first_poll_spread, delay) for f in firsts)
    assert max(firsts) > 0.9 * min(t.max_first_poll_spread, delay)
    # Not lockstep: the intervals actually spread over the window.
    assert max(intervals) - min(intervals) > 0.9 * t.jitter * delay
    assert len({round(i, 6) for i in intervals}) > 1000


def test_waits_started_together_do_not_poll_in_lockstep(scripts):
    by_arn, _ = scripts
    triggers = [trigger(n, waiter_delay=10) for n in range(20)]
    for n in range(20):
        by_arn[JOB_ARN.format(n=n)] = [job("CREATE_IN_PROGRESS")] * 4 + [job("ACTIVE")]
    run_all(*triggers)
    for t in triggers:
        assert len(t.slept) == 5  # first-poll spread + 4 intervals
        assert 0 <= t.slept[0] <= 10.0
        assert all(8.0 <= s <= 10.0 for s in t.slept[1:])
    # The poll instants of the 20 waits differ.
    instants = {round(sum(t.slept), 6) for t in triggers}
    assert len(instants) == 20


# -- events -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["thread", "aio"])
def test_success_event(scripts, transport, monkeypatch):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_PENDING"), job("CREATE_IN_PROGRESS"), job("ACTIVE")]
    monkeypatch.setattr(ScaleTestJobTrigger, "client_transport", transport)
    t = trigger(1)
    [event] = run_all(t)
    assert t._client_key.transport == transport
    assert isinstance(built[0], AsyncScriptedClient) == (transport == "aio")
    assert event == {"status": "success", "trained_model_inference_job_arn": JOB_ARN.format(n=1)}
    assert len(built[0].calls) == 3
    assert built[0].calls[0] == {
        "membershipIdentifier": MEMBERSHIP,
        "trainedModelInferenceJobArn": JOB_ARN.format(n=1),
    }


@pytest.mark.parametrize("status", ["CREATE_FAILED", "INACTIVE"])
def test_failure_event_carries_status_and_status_details(scripts, status):
    by_arn, _ = scripts
    details = {"statusCode": "ALGORITHM_ERROR", "message": "container exited with code 3"}
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_IN_PROGRESS"), job(status, statusDetails=details)]
    [event] = run_all(trigger(1))
    assert event["status"] == "error"
    assert event["trained_model_inference_job_arn"] == JOB_ARN.format(n=1)
    assert event["job_status"] == status
    assert event["status_details"] == details
    assert "Inference job failed" in event["message"]
    assert status in event["message"] and "container exited with code 3" in event["message"]


def test_max_attempts_exhausted_is_a_timeout_error_event(scripts):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_IN_PROGRESS")]
    [event] = run_all(trigger(1, waiter_max_attempts=3))
    assert event["status"] == "error"
    assert "timed out" in event["message"]
    assert event["job_status"] == "CREATE_IN_PROGRESS"
    assert event["status_details"] is None
    assert len(built[0].calls) == 3


def test_transient_errors_within_budget_do_not_use_attempts(scripts):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [
        job("CREATE_IN_PROGRESS"),
        throttled(),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        ClientError(
            {
                "Error": {"Code": "InternalServerException", "Message": "boom"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            },
            "GetTrainedModelInferenceJob",
        ),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
        job("ACTIVE"),
    ]
    [event] = run_all(trigger(1, waiter_max_attempts=2))
    assert event["status"] == "success"
    assert len(built[0].calls) == 6


def test_error_budget_exhausted_ends_the_wait_with_a_clear_error(scripts):
    by_arn, built = scripts
    t = trigger(1, waiter_max_attempts=100)
    by_arn[JOB_ARN.format(n=1)] = [
        job("CREATE_IN_PROGRESS", statusDetails={"message": "queued"}),
        throttled(),
    ]
    [event] = run_all(t)
    assert event["status"] == "error"
    assert f"gave up after {t.max_transient_errors + 1} consecutive transient errors" in event["message"]
    assert "ThrottlingException" in event["message"]
    assert event["job_status"] == "CREATE_IN_PROGRESS"
    assert event["status_details"] == {"message": "queued"}
    assert len(built[0].calls) == 1 + t.max_transient_errors + 1


def test_streak_resets_after_an_answer(scripts):
    by_arn, _ = scripts
    t = trigger(1, waiter_max_attempts=100)
    budget = t.max_transient_errors
    by_arn[JOB_ARN.format(n=1)] = (
        [throttled()] * budget + [job("CREATE_IN_PROGRESS")] + [throttled()] * budget + [job("ACTIVE")]
    )
    [event] = run_all(t)
    assert event["status"] == "success"


@pytest.mark.parametrize(
    ("code", "http"), [("AccessDeniedException", 403), ("ResourceNotFoundException", 404)]
)
def test_non_transient_errors_fail_at_once(scripts, code, http):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [
        ClientError(
            {"Error": {"Code": code, "Message": "nope"}, "ResponseMetadata": {"HTTPStatusCode": http}},
            "GetTrainedModelInferenceJob",
        )
    ]
    [event] = run_all(trigger(1))
    assert event["status"] == "error"
    assert code in event["message"]
    assert event["job_status"] is None and event["status_details"] is None
    assert len(built[0].calls) == 1


def test_client_that_cannot_be_built_gives_an_error_event(monkeypatch):
    def broken(hook: Any, transport: str = "thread") -> Any:
        raise RuntimeError("no credentials anywhere")

    monkeypatch.setattr(client_pool, "create_client_blocking", broken)
    [event] = run_all(trigger(1))
    assert event["status"] == "error"
    assert "no credentials anywhere" in event["message"]
    assert event["trained_model_inference_job_arn"] == JOB_ARN.format(n=1)


# -- serialization ----------------------------------------------------------------------------------


def test_serialization_round_trip_is_aws_base_waiter_trigger_compatible():
    t = trigger(
        7,
        waiter_delay=12,
        waiter_max_attempts=34,
        region_name="eu-west-1",
        verify=False,
        botocore_config={"read_timeout": 5},
    )
    classpath, kwargs = t.serialize()
    assert classpath == f"{ScaleTestJobTrigger.__module__}.ScaleTestJobTrigger"
    assert kwargs == {
        "waiter_delay": 12,
        "waiter_max_attempts": 34,
        "aws_conn_id": "scale_a",
        "membership_identifier": MEMBERSHIP,
        "trained_model_inference_job_arn": JOB_ARN.format(n=7),
        "region_name": "eu-west-1",
        "verify": False,
        "botocore_config": {"read_timeout": 5},
    }
    again = ScaleTestJobTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    hook = again.hook()
    assert isinstance(hook, ScaleTestHook)
    assert (hook.aws_conn_id, hook._region_name, hook._verify) == ("scale_a", "eu-west-1", False)


def test_subclass_without_hook_class_is_rejected_at_import_time():
    from airflow_cleanrooms.triggers.base import CleanRoomsMLBaseWaiterTrigger

    with pytest.raises(AttributeError, match="aws_hook_class"):
        type("NoHook", (CleanRoomsMLBaseWaiterTrigger,), {})


def test_rotated_connection_credentials_get_a_new_client(monkeypatch):
    async def main() -> None:
        pool = SharedClientPool.for_running_loop()
        pool.key_ttl = 0.0  # every lease looks the connection up
        async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")) as (old_key, old_client):
            monkeypatch.setenv("AIRFLOW_CONN_SCALE_A", connection_env("AKIASCALEROTATEDXXXX", "secret-new"))
            async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")) as (new_key, new_client):
                assert new_key.aws_conn_id == old_key.aws_conn_id
                assert new_key != old_key and new_client is not old_client
                assert new_client.client._request_signer._credentials.access_key == "AKIASCALEROTATEDXXXX"
                assert old_client.client._request_signer._credentials.access_key == "AKIASCALEAAAAAAAAAAA"
        await close_shared_clients()

    asyncio.run(main())


def test_connection_lookup_serves_leases_for_key_ttl_then_is_made_again(scripts, monkeypatch):
    lookups: list[str] = []
    resolve = client_pool.resolve_client_key

    def counting_resolve(hook: Any, transport: str = "thread") -> Any:
        lookups.append(hook.aws_conn_id)
        return resolve(hook, transport)

    monkeypatch.setattr(client_pool, "resolve_client_key", counting_resolve)

    async def main() -> tuple[Any, ...]:
        pool = SharedClientPool.for_running_loop()
        pool.key_ttl = 2.0
        now = [1000.0]
        pool.clock = lambda: now[0]  # the test's clock: no real sleep
        keys = []
        for _ in range(5):  # a batch of triggers starting one after the other: one lookup
            async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")) as (key, _client):
                keys.append(key)
        async with pool.lease(ScaleTestHook(aws_conn_id="scale_b")) as (other, _client):
            pass  # another connection is looked up on its own
        monkeypatch.setenv("AIRFLOW_CONN_SCALE_A", connection_env("AKIASCALEROTATEDXXXX", "secret-new"))
        async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")) as (within_ttl, _client):
            pass
        now[0] += 2.1
        async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")) as (after_ttl, _client):
            pass
        await close_shared_clients()
        return keys, other, within_ttl, after_ttl

    keys, other, within_ttl, after_ttl = asyncio.run(main())
    assert lookups == ["scale_a", "scale_b", "scale_a"]
    assert all(key == keys[0] for key in keys) and other != keys[0]
    assert within_ttl == keys[0]  # the change is not seen yet...
    assert after_ttl != keys[0] and after_ttl.aws_conn_id == "scale_a"  # ...and is after key_ttl


@pytest.mark.timeout(120)
def test_lease_of_a_client_whose_construction_finished_before_its_callbacks_ran(scripts):
    # Regression: a trigger arriving in the loop iteration between the construction finishing and
    # its done callbacks running used to spin forever (awaiting a done future does not suspend).
    async def main() -> None:
        pool = SharedClientPool.for_running_loop()
        hook = ScaleTestHook(aws_conn_id="scale_a")
        key = await pool.run_blocking(("key",), client_pool.resolve_client_key, hook, "thread")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(ScriptedClient(hook, {}))
        pool._creating[key] = done  # finished; its done callbacks never ran
        async with pool.lease(hook) as (leased_key, _):
            assert leased_key == key and pool.leases(key) == 1 and pool.keys == [key]
        await close_shared_clients()

    asyncio.run(main())


# -- acceptors --------------------------------------------------------------------------------------

_ACCEPTOR_RESPONSES = [
    {"status": "ACTIVE"},
    {"status": "CREATE_FAILED", "statusDetails": {"message": "m"}},
    {"jobs": [{"s": "A"}, {"s": "A"}]},
    {"jobs": [{"s": "A"}, {"s": "B"}]},
    {"jobs": []},
    {"jobs": "A"},
    {},
    {"Error": {"Code": "ResourceNotFoundException", "Message": "gone"}, "status": "ACTIVE"},
    {"Error": {"Message": "no code"}, "status": "ACTIVE"},
    {"ResponseMetadata": {"HTTPStatusCode": 404}},
]


@pytest.mark.parametrize(
    "acceptor",
    [
        {"matcher": "path", "argument": "status", "expected": "ACTIVE", "state": "success"},
        {"matcher": "path", "argument": "statusDetails.message", "expected": "m", "state": "failure"},
        {"matcher": "pathAll", "argument": "jobs[].s", "expected": "A", "state": "success"},
        {"matcher": "pathAny", "argument": "jobs[].s", "expected": "B", "state": "failure"},
        {"matcher": "pathAny", "argument": "jobs", "expected": "A", "state": "retry"},
        {"matcher": "error", "expected": "ResourceNotFoundException", "state": "failure"},
        {"matcher": "error", "expected": True, "state": "failure"},
        {"matcher": "error", "expected": False, "state": "success"},
        {"matcher": "status", "expected": 404, "state": "failure"},
    ],
    ids=lambda a: f"{a['matcher']}-{a.get('argument', '')}-{a['expected']}",
)
def test_acceptors_match_exactly_as_botocores(acceptor):
    from botocore.waiter import WaiterModel

    from airflow_cleanrooms.wait_semantics import waiter_acceptors

    config = {"operation": "Op", "delay": 1, "maxAttempts": 2, "acceptors": [acceptor]}
    model = WaiterModel({"version": 2, "waiters": {"w": config}})
    waiter = model.get_waiter("w")
    [ours] = waiter_acceptors(waiter)
    [theirs] = waiter.acceptors
    assert (ours.state, ours.explanation) == (theirs.state, theirs.explanation)
    for response in _ACCEPTOR_RESPONSES:
        assert bool(ours.matches(response)) == bool(theirs.matcher_func(response)), response

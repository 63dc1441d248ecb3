"""The loop's shared client pool: one client per connection identity, leased, closed when idle."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from airflow_cleanrooms.aio import client_pool
from airflow_cleanrooms.aio.client_pool import SharedClientPool, close_shared_clients
from tests.unit.trigger_support import (
    JOB_ARN,
    MEMBERSHIP,
    ScaleTestHook,
    ScaleTestJobTrigger,
    ScriptedClient,
    TriggererComms,
    connection_env,
    first_event,
    job,
    run_all,
    trigger,
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
        while not built[0].closed:  # closed by a task the idle timer starts (the test's timeout bounds it)
            await asyncio.sleep(0.01)
        assert pool.keys == []
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


def test_lookups_and_client_construction_ask_airflow_on_the_triggerers_loop(monkeypatch):
    """
    Regression (Airflow 3.0.6, a real triggerer): the connection lookup ran on the pool's own threads,
    so the triggerer's answer was read on a second event loop ("Response read out of order!") and the
    trigger process exited. Both blocking steps that may ask Airflow now run through asgiref.
    """
    comms = TriggererComms()
    build = client_pool.create_client_blocking

    def building(hook: Any, transport: str = "thread") -> Any:
        comms.send()  # building a client may read the hook's connection
        return build(hook, transport)

    monkeypatch.setattr(client_pool, "create_client_blocking", building)

    async def main() -> asyncio.AbstractEventLoop:
        pool = SharedClientPool.for_running_loop()
        assert await pool.run_blocking(("lookup",), comms.send, "the connection") == "the connection"
        async with pool.lease(ScaleTestHook(aws_conn_id="scale_a")):
            pass
        await close_shared_clients()
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert comms.loops == [loop, loop]

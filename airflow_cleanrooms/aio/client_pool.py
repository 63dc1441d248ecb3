"""
One AWS client per connection identity, shared by the triggers of one event loop.

Why: the amazon provider's ``AwsBaseWaiterTrigger`` opens a new aiobotocore client for every trigger,
and the client's ``__aenter__`` builds the session, resolves credentials and loads the service model
on the triggerer's event loop, which stalls it when many triggers start together (BENCHMARKS.md,
"Why the client pool and the poll scheduler"). Here a trigger leases a client from the pool of its
running loop instead:

* the key (:class:`ClientKey`) is everything that makes two clients differ: transport, hook class and
  service, connection id, region, SSL verification, botocore config, endpoint URL and a hash of the
  credential material (connection login/password/extra, or the AWS environment when the connection
  has none). Two connections never share a client, even when their contents are identical;
* resolving the key (the Airflow connection lookup) and building the client (session, credentials,
  service model, endpoint) run in a worker thread, so the loop never blocks on them; concurrent
  triggers with the same parameters share one lookup and one construction;
* clients are reference-counted by leases and closed after ``idle_ttl`` seconds without one;
* pools are per event loop (a weak mapping keyed by the loop).

Two transports, chosen per trigger class (``CleanRoomsMLBaseWaiterTrigger.client_transport``):

``"thread"`` (default)
    A thread-safe boto3 client; each API call runs on the pool's own small thread pool
    (:data:`THREAD_WORKERS` threads, the client's connection pool sized to match). The request's
    serialization, signing, socket I/O and parsing stay off the event loop, and the client is the
    same boto3 stack the operators' hook uses (no aiobotocore, whose releases pin botocore, at run
    time). BENCHMARKS.md compares the two transports ("Why the thread transport is the default").
``"aio"``
    One aiobotocore client, built and entered off the loop (on a short-lived private loop in a worker
    thread: it binds nothing to that loop; its aiohttp session and locks are created lazily on the
    loop of the first request) and used from the owning loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import os
import random
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import botocore.loaders
from asgiref.sync import sync_to_async
from botocore.config import Config

from airflow_cleanrooms.aio.keys import ClientKey, PerLoop, role_account

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Hashable

    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

log = logging.getLogger(__name__)

#: Retry behaviour given to a shared client when neither the connection nor the trigger configures
#: one: botocore's "standard" mode retries throttling, 5xx and connection errors with backoff.
DEFAULT_RETRIES: dict[str, Any] = {"mode": "standard", "max_attempts": 3}

#: Threads (per event loop) that run the API calls of ``"thread"``-transport clients.
THREAD_WORKERS = 4

TRANSPORTS = ("thread", "aio")

_RNG = random.Random()

# Environment the default credential chain reads when a connection carries no credentials itself.
_ENV_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def _config_options(config: Config | dict[str, Any] | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, dict):
        return dict(config)
    return dict(getattr(config, "_user_provided_options", {}))


def _service_name(hook: AwsGenericHook) -> str:
    if not hook.client_type:
        raise ValueError(f"{type(hook).__name__} has no client_type; a shared async client needs one.")
    return hook.client_type


async def run_sync(func: Callable[..., Any], *args: Any) -> Any:
    """
    Run a blocking call that may ask Airflow for something (a connection, a task instance's state) from
    a trigger, the way Airflow's triggerer requires: through asgiref's ``sync_to_async``, as the amazon
    provider's hooks and triggers make such calls.

    Airflow 3.0 and 3.1 answer a Task SDK call from a trigger on the triggerer's event loop only when
    asgiref ran it (it records that loop for the thread). Called from a thread of any other pool, the
    call opened a second event loop reading the same pipe: "Response read out of order!", and the
    trigger process exited, failing every trigger it ran. Airflow 3.2 serializes such calls with a lock
    and 3.3 bridges them, so both also work this way. With asgiref's default ``thread_sensitive`` the
    calls run one at a time on one thread, so the pipe never sees two at once (Airflow 3.0.2, which this
    provider does not support, did not guard it).
    """
    return await sync_to_async(partial(func, *args))()


def resolve_client_key(hook: AwsGenericHook, transport: str = "thread") -> ClientKey:
    """Resolve the hook's connection and return its client key (blocking: run it off the loop)."""
    conn = hook.conn_config
    service = _service_name(hook)
    material: dict[str, Any] = {
        "conn_type": conn.conn_type,
        "login": conn.login,
        "password": conn.password,
        "extra": conn.extra_config,
        "aws_access_key_id": conn.aws_access_key_id,
        "aws_secret_access_key": conn.aws_secret_access_key,
        "aws_session_token": conn.aws_session_token,
        "profile_name": conn.profile_name,
        "role_arn": conn.role_arn,
        "assume_role_method": conn.assume_role_method,
        "assume_role_kwargs": conn.assume_role_kwargs,
    }
    if not conn.aws_access_key_id:
        # The default credential chain decides: the environment is part of the identity.
        material["env"] = {name: os.environ.get(name) for name in _ENV_CREDENTIAL_VARS}
    return ClientKey(
        transport=transport,
        hook_class=f"{type(hook).__module__}.{type(hook).__qualname__}",
        service_name=service,
        aws_conn_id=hook.aws_conn_id,
        region_name=conn.region_name,
        verify=repr(conn.verify),
        botocore_config=_canonical(_config_options(conn.botocore_config)),
        endpoint_url=conn.get_service_endpoint_url(service_name=service),
        identity=hashlib.sha256(_canonical(material).encode()).hexdigest(),
        account=role_account(conn.role_arn),
    )


def client_config(hook: AwsGenericHook, transport: str = "thread") -> Config:
    """
    The hook's botocore config, with :data:`DEFAULT_RETRIES` unless retries are configured and, for
    the thread transport, a connection pool as large as the thread pool unless one is configured.
    """
    config = copy.deepcopy(hook.config)
    options = _config_options(config)
    if "retries" not in options:
        config = config.merge(Config(retries=dict(DEFAULT_RETRIES)))
    if transport == "thread" and "max_pool_connections" not in options:
        config = config.merge(Config(max_pool_connections=THREAD_WORKERS))
    return config


def shared_loader() -> Any:
    """The amazon provider's process-wide botocore loader (its async sessions use it too)."""
    global _LOADER
    if _LOADER is None:
        from airflow.providers.amazon.aws.hooks import base_aws

        _LOADER = getattr(base_aws, "_loader", None) or botocore.loaders.create_loader()
    return _LOADER


_LOADER: Any = None


class ThreadedClient:
    """
    Async facade over a thread-safe boto3 client: ``await client.get_x(**kwargs)`` runs the call on
    the pool's thread pool. ``client`` is the boto3 client itself.
    """

    def __init__(self, client: Any, executor: ThreadPoolExecutor) -> None:
        self.client = client
        self._executor = executor

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)

        async def call(**kwargs: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(self._executor, partial(method, **kwargs))

        call.__name__ = name
        # Kept: every wait on this client gets the same coroutine function, not a closure of its own.
        self.__dict__[name] = call
        return call

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.client.close)


def create_client_blocking(hook: AwsGenericHook, transport: str = "thread") -> Any:
    """
    Build a client for ``hook`` in the calling (worker) thread.

    ``"thread"``: a boto3 client (wrapped in :class:`ThreadedClient` by the pool). ``"aio"``: an
    entered aiobotocore client, built on a short-lived private loop; it binds nothing to that loop
    (its aiohttp session and locks are created lazily, on the loop of the first request).
    """
    config = client_config(hook, transport)
    if transport == "thread":
        # As hook.get_client_type() does, but on a session that uses the process-wide botocore
        # loader: the service model and endpoint JSON are parsed once per process, not once per
        # client (json.loads holds the GIL, which would stall the event loop thread meanwhile).
        session = hook.get_session(region_name=hook.region_name)
        botocore_session = getattr(session, "_session", None)
        if botocore_session is not None:
            botocore_session.register_component("data_loader", shared_loader())
        service = _service_name(hook)
        return session.client(
            service_name=service,
            endpoint_url=hook.conn_config.get_service_endpoint_url(service_name=service),
            config=hook._get_config(config),
            verify=hook.verify,
        )

    async def _build() -> Any:
        creator = hook.get_client_type(region_name=hook.region_name, config=config, deferrable=True)
        return await creator.__aenter__()

    return asyncio.run(_build())


class _Entry:
    __slots__ = ("client", "close_handle", "key", "refs")

    def __init__(self, key: ClientKey, client: Any) -> None:
        self.key = key
        self.client = client
        self.refs = 0
        self.close_handle: asyncio.TimerHandle | None = None


class SharedClientPool:
    """
    The clients of one event loop, keyed by :class:`ClientKey`; see the module docstring.

    :param loop: The event loop the clients belong to.
    :param idle_ttl: Seconds a client without leases stays open for the next trigger.
    """

    idle_ttl: float = 60.0
    #: Seconds a resolved connection (its client key) serves later leases with the same hook
    #: parameters. A batch of triggers started together makes one connection lookup, not one each
    #: (each kept a hook and connection wrapper alive while queued for a thread: BENCHMARKS.md); a
    #: changed connection (rotated keys) reaches the triggers that start this long after the change.
    key_ttl: float = 10.0
    #: Seconds over which the triggers that waited for a client being built are released.
    herd_spread: float = 0.25

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_ttl: float | None = None) -> None:
        self._loop = loop
        if idle_ttl is not None:
            self.idle_ttl = idle_ttl
        #: What ``key_ttl`` is measured with: the loop's clock (a test may hand in its own).
        self.clock: Callable[[], float] = loop.time
        self._entries: dict[ClientKey, _Entry] = {}
        self._creating: dict[ClientKey, asyncio.Future[Any]] = {}
        self._singleflight: dict[Hashable, asyncio.Future[Any]] = {}
        self._resolved: dict[Hashable, tuple[ClientKey, float]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        #: Number of clients this pool has built (for tests and benchmarks).
        self.clients_created = 0

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The pool's threads: the API calls of thread-transport clients (lookups use :func:`run_sync`)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(THREAD_WORKERS, thread_name_prefix="cleanrooms-ml-aws")
        return self._executor

    async def run_blocking(self, key: Hashable, func: Callable[..., Any], *args: Any) -> Any:
        """
        Run ``func(*args)`` through :func:`run_sync`, once for all concurrent callers with the same
        ``key`` (they all get its result or its exception).
        """
        task = self._singleflight.get(key)
        if task is None:
            task = self._loop.create_task(run_sync(func, *args))
            self._singleflight[key] = task
            task.add_done_callback(partial(self._forget, self._singleflight, key))
        return await asyncio.shield(task)

    @classmethod
    def for_running_loop(cls) -> SharedClientPool:
        """Return the pool of the running event loop, creating it on first use."""
        return _POOLS.get()

    @property
    def keys(self) -> list[ClientKey]:
        """Keys of the clients currently open."""
        return list(self._entries)

    def leases(self, key: ClientKey) -> int:
        """Number of leases currently held on the client of ``key`` (0 if none is open)."""
        entry = self._entries.get(key)
        return entry.refs if entry else 0

    @contextlib.asynccontextmanager
    async def lease(
        self, hook: AwsGenericHook, transport: str = "thread"
    ) -> AsyncIterator[tuple[ClientKey, Any]]:
        """
        Lease the shared client for ``hook``'s connection; yields ``(key, client)``.

        ``client`` has the boto3 client's API methods as coroutines (``await client.get_x(**kw)``).
        """
        entry = await self.acquire(hook, transport)
        try:
            yield entry.key, entry.client
        finally:
            self.release(entry)

    async def acquire(self, hook: AwsGenericHook, transport: str = "thread") -> _Entry:
        """
        Take a lease on the shared client for ``hook``'s connection; :meth:`release` gives it back.

        The entry's ``key`` and ``client`` are those :meth:`lease` yields. The pool keeps no reference
        to ``hook`` once this returns (nor to its connection lookup), so a caller that drops it too
        holds nothing per wait but the entry, which all waits on the connection share.
        """
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        return await self._acquire(hook, transport)

    def release(self, entry: _Entry) -> None:
        """Give back a lease taken with :meth:`acquire` (once per ``acquire``)."""
        self._release(entry)

    async def _acquire(self, hook: AwsGenericHook, transport: str) -> _Entry:
        prekey = (
            "resolve",
            transport,
            type(hook),
            hook.aws_conn_id,
            getattr(hook, "_region_name", None),
            repr(getattr(hook, "_verify", None)),
            _canonical(_config_options(getattr(hook, "_config", None))),
        )
        resolved = self._resolved.get(prekey)
        if resolved is not None and self.clock() - resolved[1] < self.key_ttl:
            key = resolved[0]
        else:
            key = await self.run_blocking(prekey, resolve_client_key, hook, transport)
            self._resolved[prekey] = (key, self.clock())
        waited = False
        while True:
            entry = self._entries.get(key)
            if entry is not None:
                entry.refs += 1
                if entry.close_handle is not None:
                    entry.close_handle.cancel()
                    entry.close_handle = None
                if waited and self.herd_spread > 0:
                    # Every trigger that arrived while the client was being built wakes in the same
                    # loop iteration; spread their first calls instead of running them back to back.
                    try:
                        await asyncio.sleep(_RNG.uniform(0.0, self.herd_spread))
                    except BaseException:
                        self._release(entry)
                        raise
                return entry
            task = self._creating.get(key)
            if task is None:
                # Module-level lookup, so tests can substitute the construction.
                # Through run_sync: building the client may read the hook's connection from Airflow.
                task = self._loop.create_task(run_sync(create_client_blocking, hook, transport))
                self._creating[key] = task
                # Registered before any waiter's shield callback, so the entry exists when they resume.
                task.add_done_callback(partial(self._created, key))
            await asyncio.shield(task)
            waited = True
            # A task that was already done when we got here returns without suspending, before its
            # done callbacks ran: place the entry now (idempotent) so the next turn finds it.
            self._created(key, task)

    @staticmethod
    def _forget(mapping: dict[Any, asyncio.Future[Any]], key: Any, task: asyncio.Future[Any]) -> None:
        if mapping.get(key) is task:
            del mapping[key]
        if not task.cancelled():
            task.exception()  # retrieved: waiters that were cancelled must not leave it "unretrieved"

    def _created(self, key: ClientKey, task: asyncio.Future[Any]) -> None:
        if self._creating.get(key) is not task:
            return  # already handled (by its done callback or by a waiter that found it done)
        self._forget(self._creating, key, task)
        if task.cancelled() or task.exception() is not None:
            return
        self.clients_created += 1
        client = task.result()
        if key.transport == "thread" and not isinstance(client, ThreadedClient):
            client = ThreadedClient(client, self.executor)
        entry = self._entries[key] = _Entry(key, client)
        log.debug("Opened shared %s client for connection %r", key.service_name, key.aws_conn_id)
        # Closed after idle_ttl unless a waiter leases it first (it cancels this timer).
        entry.close_handle = self._loop.call_later(self.idle_ttl, self._expire, entry)

    def _release(self, entry: _Entry) -> None:
        entry.refs -= 1
        if entry.refs > 0:
            return
        if self._entries.get(entry.key) is entry:
            entry.close_handle = self._loop.call_later(self.idle_ttl, self._expire, entry)
        else:
            self._close_soon(entry)

    def _expire(self, entry: _Entry) -> None:
        entry.close_handle = None
        if entry.refs == 0 and self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            self._close_soon(entry)

    def discard(self, key: ClientKey) -> None:
        """Stop handing out the client of ``key``; it closes once its last lease ends."""
        entry = self._entries.pop(key, None)
        if entry is not None and entry.refs == 0:
            if entry.close_handle is not None:
                entry.close_handle.cancel()
            self._close_soon(entry)

    def _close_soon(self, entry: _Entry) -> None:
        task = self._loop.create_task(self._close_client(entry))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_client(entry: _Entry) -> None:
        try:
            if entry.key.transport == "thread":
                await entry.client.close()
            else:
                await entry.client.__aexit__(None, None, None)
        except Exception:
            log.warning("Closing the shared %s client failed", entry.key.service_name, exc_info=True)

    async def aclose(self) -> None:
        """Close every client now (leases or not) and wait for them to close."""
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            if entry.close_handle is not None:
                entry.close_handle.cancel()
            self._close_soon(entry)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown(wait=False, cancel_futures=True)


_POOLS: PerLoop[SharedClientPool] = PerLoop(SharedClientPool)


async def close_shared_clients() -> None:
    """Close the shared clients of the running loop (for tests, benchmarks and clean shutdowns)."""
    pool = _POOLS.pop()
    if pool is not None:
        await pool.aclose()

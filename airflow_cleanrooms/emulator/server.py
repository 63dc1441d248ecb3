"""
The emulator's HTTP server: :class:`EmulatorServer`, runnable in-process (a background thread) or
from the command line (``python -m airflow_cleanrooms.emulator``).

The protocol code (``responses.py``) is served by aiohttp's low-level server on one event loop in a
daemon thread (chosen over the standard library's ``ThreadingHTTPServer`` by measurement with
``benchmarks/emulator_load.py``; see the emulator README's "Performance").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_cleanrooms.emulator.control import EmulatorControl
from airflow_cleanrooms.emulator.control_api import ControlAPI
from airflow_cleanrooms.emulator.defaults import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_FAILURE_CODE,
    DEFAULT_FAILURE_MESSAGE,
)
from airflow_cleanrooms.emulator.faults import FaultInjector
from airflow_cleanrooms.emulator.limits import Limits
from airflow_cleanrooms.emulator.logs import ContainerLogs
from airflow_cleanrooms.emulator.models import CleanRoomsMLBackend, Store, Timings
from airflow_cleanrooms.emulator.quotas import JobQuotas
from airflow_cleanrooms.emulator.requestlog import RequestLog
from airflow_cleanrooms.emulator.responses import CleanRoomsMLResponses
from airflow_cleanrooms.emulator.sts import StsService
from airflow_cleanrooms.emulator.wire import HttpRequest

if TYPE_CHECKING:
    from types import TracebackType

    from aiohttp import web

log = logging.getLogger("airflow_cleanrooms.emulator")


class _AiohttpStack:
    """aiohttp's low-level server on its own event loop in a daemon thread."""

    def __init__(self, responses: CleanRoomsMLResponses, host: str, port: int):
        self.responses = responses
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._web_server: Any = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        from aiohttp import web

        body = await request.read()
        path, _, _ = request.raw_path.partition("?")
        http_request = HttpRequest(request.method, path, request.query_string, request.headers, body)
        reply = self.responses.handle(http_request)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    async def _start(self) -> None:
        from aiohttp import web

        self._web_server = web.Server(self._handle, access_log=None, handler_cancellation=True)
        self._server = await self.loop.create_server(
            self._web_server, self.host, self.port, reuse_address=True, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        await self._web_server.shutdown(timeout=0.25)
        await self._server.wait_closed()

    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

        self._thread = threading.Thread(target=run, name="cleanrooms-ml-emulator", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._stop(), self.loop)
        try:
            future.result(timeout=5)
        except Exception:  # best effort on shutdown
            log.debug("emulator shutdown was not clean", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self._thread = None


class EmulatorServer:
    """
    A Clean Rooms ML emulator listening on ``host:port`` (``port=0``: a free port).

    ``with EmulatorServer(port=0, state=":memory:", pending_seconds=0.1, running_seconds=0.3) as s:``
    then point boto3 at ``s.url``; ``s.control`` is an :class:`EmulatorControl` for it.

    :param host: interface to listen on.
    :param port: TCP port; 0 picks a free one (read it back from ``port``/``url``).
    :param state: SQLite file holding every resource, or ``":memory:"``.
    :param timings: phase durations (``Timings`` fields); keyword arguments of the same names too.
    :param faults: initial fault settings (``FaultSettings`` fields).
    :param fail_jobs: ``{name: (statusCode, message)}`` jobs/trained models to end in CREATE_FAILED.
    :param request_log_size: how many of the latest API calls the request log keeps.
    :param limits: the AWS limits enforced (``Limits`` fields); AWS's defaults unless given, and
        ``Limits.off()`` switches them all off.
    :param default_account: the account of callers whose access key is not 12 digits.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        state: str = ":memory:",
        *,
        timings: Timings | Mapping[str, Any] | None = None,
        faults: Mapping[str, Any] | None = None,
        fail_jobs: Mapping[str, tuple[str, str] | str | None] | None = None,
        request_log_size: int = 10_000,
        limits: Limits | Mapping[str, Any] | None = None,
        default_account: str = DEFAULT_ACCOUNT_ID,
        **timing_values: float | None,
    ):
        if isinstance(timings, Timings):
            resolved = timings
        else:
            resolved = Timings()
            resolved.update(dict(timings or {}))
        resolved.update(timing_values)
        self.host = host
        self.state = str(state)
        self.store = Store(self.state)
        self.backend = CleanRoomsMLBackend(self.store, resolved)
        self.faults = FaultInjector()
        if faults:
            self.faults.configure(faults)
        self.requests = RequestLog(request_log_size)
        if isinstance(limits, Limits):
            self.limits = limits
        else:
            self.limits = Limits()
            self.limits.update(dict(limits or {}))
        self.backend.quotas = JobQuotas(self.store, self.limits)
        self.responses = CleanRoomsMLResponses(
            self.backend, self.faults, self.requests, self.limits, default_account
        )
        self.responses.sts = StsService(
            self.responses.authenticator, self.limits, self.backend.now, self.requests
        )
        self.responses.logs = ContainerLogs(self.backend, self.responses.authenticator, self.requests)
        self.responses.control = ControlAPI(self.responses, self.state, on_reset=self.reset)
        self._initial_limits = self.limits.as_dict()
        self._initial_timings = resolved.as_dict()
        self._initial_faults = dict(faults or {})
        self._initial_failures: dict[str, tuple[str, str]] = {}
        for name, rule in (fail_jobs or {}).items():
            code, message = (rule, None) if isinstance(rule, str) or rule is None else rule
            self._initial_failures[name] = (code or DEFAULT_FAILURE_CODE, message or DEFAULT_FAILURE_MESSAGE)
        for name, (code, message) in self._initial_failures.items():
            self.backend.add_failure_rule(name, code, message)
        self._requested_port = port
        self._stack: _AiohttpStack | None = None

    def reset(self) -> None:
        """
        Forget resources, logged requests and limit statistics; back to the timings, faults, failures
        and limits of startup.
        """
        self.backend.reset()
        self.responses.logs.reset()
        self.limits.update(self._initial_limits)
        self.responses.limiter.reset()
        self.backend.timings.update(self._initial_timings)
        self.faults.configure(self._initial_faults, replace=True)
        for name, (code, message) in self._initial_failures.items():
            self.backend.add_failure_rule(name, code, message)
        self.requests.clear()

    @property
    def port(self) -> int:
        if self._stack is None:
            raise RuntimeError("the emulator is not running")
        return self._stack.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def control(self) -> EmulatorControl:
        return EmulatorControl(self.url)

    @property
    def running(self) -> bool:
        return self._stack is not None

    def start(self) -> EmulatorServer:
        if self._stack is not None:
            return self
        self._stack = _AiohttpStack(self.responses, self.host, self._requested_port)
        self._stack.start()
        log.debug("emulator serving %s (state: %s)", self.url, self.state)
        return self

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.stop()
            self._stack = None

    def close(self) -> None:
        """Stop serving and close the state database."""
        self.stop()
        self.store.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

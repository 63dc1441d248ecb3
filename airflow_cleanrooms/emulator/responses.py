"""
The wire protocol: an HTTP request in, an HTTP reply out, exactly as the REST-JSON model says.

Independent of any HTTP server: the server adapters (``server.py``) turn their requests into an
:class:`HttpRequest` and write back the :class:`HttpReply`. Requests are parsed from the URI labels,
the query string and the JSON body by the operation's input shape, validated with
:func:`~airflow_cleanrooms.service_model.find_input_issues`, handed to the backend (``models.py``),
and the result is serialized with botocore's own rest-json serializer against the output shape.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from botocore.parsers import RestJSONParser
from botocore.serialize import RestJSONSerializer

from airflow_cleanrooms.emulator.credentials import Authenticator
from airflow_cleanrooms.emulator.defaults import DEFAULT_ACCOUNT_ID
from airflow_cleanrooms.emulator.errors import (
    EmulatorError,
    InternalServiceException,
    ThrottlingException,
    ValidationException,
)
from airflow_cleanrooms.emulator.faults import DROP, ERROR, THROTTLE, FaultInjector
from airflow_cleanrooms.emulator.limits import Limits
from airflow_cleanrooms.emulator.ratelimit import RequestRateLimiter
from airflow_cleanrooms.emulator.resources import Caller
from airflow_cleanrooms.emulator.routes import router
from airflow_cleanrooms.emulator.wire import (
    HttpReply,
    HttpRequest,
    View,
    error_reply,
    new_request_id,
)
from airflow_cleanrooms.service_model import camel_to_snake, find_input_issues, operation_model

if TYPE_CHECKING:
    from botocore.model import Shape

    from airflow_cleanrooms.emulator.models import CleanRoomsMLBackend
    from airflow_cleanrooms.emulator.requestlog import RequestLog

log = logging.getLogger("airflow_cleanrooms.emulator")

CONTROL_PREFIX = "/_emulator/"


def _query_value(shape: Shape, values: list[str], name: str) -> Any:
    kind = shape.type_name
    if kind == "list":
        return [_query_value(shape.member, [v], name) for v in values]
    value = values[0]
    if kind in ("integer", "long"):
        try:
            return int(value)
        except ValueError:
            raise ValidationException(f"{name}: {value!r} is not an integer") from None
    if kind in ("float", "double"):
        try:
            return float(value)
        except ValueError:
            raise ValidationException(f"{name}: {value!r} is not a number") from None
    if kind == "boolean":
        return value.lower() == "true"
    return value


RENDERED_CACHE_SIZE = 20_000


@functools.cache
def _handler_name(operation: str) -> str:
    return camel_to_snake(operation)


def _fit(value: Any, shape: Shape) -> Any:
    """``value`` without the structure members ``shape`` does not have, at any depth."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members  # type: ignore[attr-defined]
        return {k: _fit(v, members[k]) for k, v in value.items() if k in members}
    if shape.type_name == "list" and isinstance(value, list):
        return [_fit(item, shape.member) for item in value]  # type: ignore[attr-defined]
    if shape.type_name == "map" and isinstance(value, dict):
        return {k: _fit(v, shape.value) for k, v in value.items()}  # type: ignore[attr-defined]
    return value


def _serializer() -> RestJSONSerializer:
    """
    botocore's REST-JSON serializer, with millisecond timestamps where botocore offers the option.

    botocore 1.37 (Airflow 3.0's constraints) has no ``timestamp_precision`` and writes whole
    seconds, as AWS answered clients of that release. (Kept here, not in ``airflow_cleanrooms.compat``:
    the emulator does not import Airflow.)
    """
    try:
        return RestJSONSerializer(timestamp_precision="millisecond")  # type: ignore[call-arg,unused-ignore]
    except TypeError:
        return RestJSONSerializer()


class CleanRoomsMLResponses:
    """Turns HTTP requests into backend calls and backend results into HTTP replies."""

    def __init__(
        self,
        backend: CleanRoomsMLBackend,
        faults: FaultInjector,
        requests: RequestLog,
        limits: Limits | None = None,
        default_account: str = DEFAULT_ACCOUNT_ID,
    ):
        self.backend = backend
        self.faults = faults
        self.requests = requests
        self.limits = limits if limits is not None else Limits()
        self.authenticator = Authenticator(self.limits, backend.now, default_account)
        self.limiter = RequestRateLimiter(self.limits, self.monotonic)
        self.sts: Any = None  # set by the server: handles STS (query protocol) calls on "/"
        self.logs: Any = None  # set by the server: CloudWatch Logs (X-Amz-Target Logs_20140328.*)
        self.router = router()
        self._serializer = _serializer()
        self._parser = RestJSONParser()
        self.control: Any = None  # set by the server: handles /_emulator/ paths
        # Rendered read responses by View key (a poll of an unchanged job costs no serialization).
        self._rendered: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._rendered_lock = threading.Lock()

    def monotonic(self) -> float:
        """The rate limiter's clock: monotonic, moved forward by the control endpoint's clock offset."""
        return time.monotonic() + self.backend.clock_offset

    def handle(self, request: HttpRequest) -> HttpReply:
        if request.raw_path.startswith(CONTROL_PREFIX) and self.control is not None:
            return self.control.handle(request)
        if self.sts is not None and self.sts.accepts(request):
            return self.sts.handle(request)  # type: ignore[no-any-return]
        if self.logs is not None and self.logs.accepts(request):
            return self.logs.handle(request)  # type: ignore[no-any-return]
        request_id = new_request_id()
        query = parse_qs(request.query_string, keep_blank_values=True) if request.query_string else {}
        found = self.router.match(request.method, request.raw_path, set(query))
        if found is None:
            code = "UnknownOperationException"
            message = f"No operation matches {request.method} {request.raw_path}"
            return error_reply(EmulatorError(code, message), request_id)
        route, labels = found
        operation = route.operation
        params: dict[str, Any] = {}
        fault: str | None = None
        limit: str | None = None  # which AWS limit refused the call, if one did
        latency = 0.0
        parse_error: EmulatorError | None = None
        try:
            params = self._parse(operation, labels, query, request.body)
        except EmulatorError as error:
            parse_error = error
        try:
            decision = self.faults.decide(operation)
            fault, latency = decision.action, decision.latency
            if fault == DROP:
                self.requests.record(operation, params, 0, None, DROP)
                log.info("%s dropped (injected fault)", operation)
                return HttpReply(0, drop=True, delay=decision.latency)
            caller = self.authenticator.identify(request.headers, query).caller
            if not self.limiter.admit(caller.account_id, caller.region, operation):
                limit = "rate"
                raise ThrottlingException("Rate exceeded")
            if fault == THROTTLE:
                raise ThrottlingException("Rate exceeded (emulated throttling)")
            if fault == ERROR:
                raise InternalServiceException()
            if parse_error is not None:
                raise parse_error
            reply = self._call(operation, params, caller, request_id, bool(request.body))
            reply.delay = latency
            self.requests.record(operation, params, reply.status, None, "latency" if latency else None)
            log.debug("%s -> %s", operation, reply.status)
            return reply
        except EmulatorError as error:
            flag = fault or ("latency" if latency else None)
            if error.code == "ServiceQuotaExceededException":
                limit = "quota"
            elif error.code == "ExpiredTokenException":
                limit = "token"
            self.requests.record(operation, params, error.status, error.code, flag, limit)
            log.info("%s -> %s %s", operation, error.status, error.code)
            reply = error_reply(error, request_id)
            reply.delay = latency
            return reply
        except Exception:
            log.exception("%s failed inside the emulator", operation)
            self.requests.record(operation, params, 500, "InternalServerException", None)
            return error_reply(EmulatorError("InternalServerException", "Emulator error", 500), request_id)

    def _parse(
        self, operation: str, labels: Mapping[str, str], query: Mapping[str, list[str]], body: bytes
    ) -> dict[str, Any]:
        shape = operation_model(operation).input_shape
        params: dict[str, Any] = {}
        if shape is None:
            return params
        if body.strip():
            try:
                decoded = json.loads(body)
            except ValueError:
                raise EmulatorError("SerializationException", "The request body is not valid JSON") from None
            if not isinstance(decoded, dict):
                raise EmulatorError("SerializationException", "The request body must be a JSON object")
            body_members = {
                name for name, member in shape.members.items() if "location" not in member.serialization
            }
            params.update({k: v for k, v in decoded.items() if k in body_members})
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            wire_name = member.serialization.get("name", name)
            if location == "uri" and wire_name in labels:
                params[name] = labels[wire_name]
            elif location == "querystring" and wire_name in query:
                params[name] = _query_value(member, query[wire_name], name)
        return params

    def _call(
        self,
        operation: str,
        params: dict[str, Any],
        caller: Caller,
        request_id: str,
        body_present: bool = True,
    ) -> HttpReply:
        issues = find_input_issues(operation, params)
        if issues:
            count = len(issues)
            details = "; ".join(str(issue) for issue in issues)
            raise ValidationException(
                f"{count} validation error{'s' if count > 1 else ''} detected: {details}"
            )
        model = operation_model(operation)
        # URI and query members are typed already; botocore's parser types the JSON body members.
        typed = self._parser._parse_shape(model.input_shape, params) if body_present else params
        handler = _handler_name(operation)
        method = getattr(self.backend, handler, None) if handler else None
        if method is None:
            raise EmulatorError("NotImplemented", f"The emulator does not implement {operation}")
        result = method(typed, caller)
        output = model.output_shape
        if isinstance(result, View):
            body = self._render_view(result, output)
        elif output is not None:
            body = self._serialize(result, output)
        else:
            body = b"{}"
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": request_id}
        return HttpReply(int(model.http.get("responseCode", 200)), body, headers)

    def _serialize(self, result: Any, output: Shape) -> bytes:
        """The result as the installed model's output shape (members an older model lacks are left out)."""
        try:
            return self._serializer._serialize_body_params(result, output)  # type: ignore[no-any-return]
        except KeyError:  # a member newer than this botocore's model (1.37 has no versionIdentifier)
            return self._serializer._serialize_body_params(_fit(result, output), output)  # type: ignore[no-any-return]

    def _render_view(self, view: View, output: Shape) -> bytes:
        with self._rendered_lock:
            body = self._rendered.get(view.key)
            if body is not None:
                self._rendered.move_to_end(view.key)
                return body
        body = self._serialize(view.build(), output)
        with self._rendered_lock:
            self._rendered[view.key] = body
            while len(self._rendered) > RENDERED_CACHE_SIZE:
                self._rendered.popitem(last=False)
        return body

    def call(self, operation: str, params: dict[str, Any], caller: Caller | None = None) -> dict[str, Any]:
        """
        Run an operation in-process (validated; not logged, no faults, no limits: the control endpoint
        seeds with it) and return its JSON result.
        """
        exempt = dataclasses.replace(caller or Caller(), quota_exempt=True)
        reply = self._call(operation, dict(params), exempt, new_request_id())
        return json.loads(reply.body)  # type: ignore[no-any-return]

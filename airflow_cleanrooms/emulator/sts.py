"""
AWS STS on the emulator's port: ``AssumeRole`` and ``GetCallerIdentity``, in STS's query protocol.

A request is a form-encoded ``POST /`` (or ``GET /?Action=...``) with ``Action`` and ``Version``; the
answer is XML. Both are driven by botocore's ``sts`` model: input members are typed and range-checked
from it, and responses are written from the operation's output shape and ``resultWrapper`` in the
model's XML namespace, so boto3's ``sts`` client (and the amazon provider's role assumption) parse
them unchanged.

``AssumeRole`` mints credentials for the role's account that expire after ``DurationSeconds``
(900..43200, as the model allows; 3600 when absent, as AWS does), or after
``Limits.credential_seconds`` when that is set (any lifetime, for tests). The expiration is on the
emulator's clock, so advancing the clock through the control endpoint expires them. Errors are
STS's: ``ValidationError`` (400), ``MissingAuthenticationToken`` (403), ``ExpiredToken`` (403, a
request signed with an expired session token) and ``InvalidAction`` (400).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import botocore.session

from airflow_cleanrooms.emulator.credentials import Authenticator, Identity, mint_session
from airflow_cleanrooms.emulator.errors import EmulatorError
from airflow_cleanrooms.emulator.limits import DEFAULT_CREDENTIAL_SECONDS
from airflow_cleanrooms.emulator.wire import HttpReply, HttpRequest, new_request_id

if TYPE_CHECKING:
    from botocore.model import ServiceModel, Shape

    from airflow_cleanrooms.emulator.limits import Limits
    from airflow_cleanrooms.emulator.requestlog import RequestLog

SUPPORTED = ("AssumeRole", "GetCallerIdentity")
_ROLE_ARN = re.compile(r"arn:(aws[-a-z]*):iam::([0-9]{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)")
# STS's codes for the refusals the cleanroomsml front end names differently.
_STS_CODES = {
    "ExpiredTokenException": ("ExpiredToken", 403),
    "AccessDeniedException": ("MissingAuthenticationToken", 403),
}


@functools.cache
def sts_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sts")


class StsError(EmulatorError):
    """An STS error (query protocol: ``Sender`` fault, code, message)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(code, message, status)


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _xml(name: str, value: Any, shape: Shape) -> str:
    """``value`` as the query protocol writes ``shape`` (members in model order)."""
    kind = shape.type_name
    if kind == "structure":
        inner = "".join(
            _xml(member.serialization.get("name", key), value[key], member)
            for key, member in shape.members.items()
            if value.get(key) is not None
        )
        return f"<{name}>{inner}</{name}>"
    if kind == "list":
        item = shape.member.serialization.get("name", "member")
        return f"<{name}>" + "".join(_xml(item, v, shape.member) for v in value) + f"</{name}>"
    if kind == "timestamp":
        text = _timestamp(value) if isinstance(value, (int, float)) else str(value)
    elif kind == "boolean":
        text = "true" if value else "false"
    else:
        text = str(value)
    return f"<{name}>{escape(text)}</{name}>"


def _typed(shape: Shape, values: dict[str, list[str]]) -> dict[str, Any]:
    """The top-level scalar members of ``shape`` found in the form, typed as the model says."""
    params: dict[str, Any] = {}
    for name, member in shape.members.items():
        if name not in values:
            continue
        raw = values[name][0]
        if member.type_name in ("integer", "long"):
            try:
                params[name] = int(raw)
            except ValueError:
                raise StsError("ValidationError", f"{name}: {raw!r} is not an integer") from None
        elif member.type_name in ("string",):
            params[name] = raw
    return params


def _validate(shape: Shape, params: dict[str, Any]) -> None:
    issues: list[str] = []
    for name in shape.required_members:
        if name not in params:
            issues.append(
                f"Value null at '{name[0].lower() + name[1:]}' failed to satisfy constraint: "
                "Member must not be null"
            )
    for name, value in params.items():
        meta = shape.members[name].metadata
        label = name[0].lower() + name[1:]
        if isinstance(value, int):
            if "min" in meta and value < meta["min"]:
                issues.append(
                    f"Value '{value}' at '{label}' failed to satisfy constraint: "
                    f"Member must have value greater than or equal to {meta['min']}"
                )
            if "max" in meta and value > meta["max"]:
                issues.append(
                    f"Value '{value}' at '{label}' failed to satisfy constraint: "
                    f"Member must have value less than or equal to {meta['max']}"
                )
        elif isinstance(value, str):
            if "min" in meta and len(value) < meta["min"]:
                issues.append(
                    f"Value at '{label}' failed to satisfy constraint: "
                    f"Member must have length greater than or equal to {meta['min']}"
                )
            if "max" in meta and len(value) > meta["max"]:
                issues.append(
                    f"Value at '{label}' failed to satisfy constraint: "
                    f"Member must have length less than or equal to {meta['max']}"
                )
    if issues:
        count = len(issues)
        raise StsError(
            "ValidationError",
            f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(issues),
        )


class StsService:
    """
    The STS half of the emulator.

    :param authenticator: identifies signers (and refuses expired session tokens).
    :param limits: the limits in force (``credential_seconds``).
    :param clock: the emulator's clock (epoch seconds).
    :param requests: the request log (STS calls are logged like any API call).
    """

    def __init__(
        self, authenticator: Authenticator, limits: Limits, clock: Callable[[], float], requests: RequestLog
    ):
        self.authenticator = authenticator
        self.limits = limits
        self.clock = clock
        self.requests = requests

    @staticmethod
    def accepts(request: HttpRequest) -> bool:
        """An STS call: the root path (no Clean Rooms ML route), ``Action`` in the form or query."""
        if request.raw_path != "/":
            return False
        return "Action=" in request.query_string or b"Action=" in request.body

    def handle(self, request: HttpRequest) -> HttpReply:
        request_id = new_request_id()
        form = parse_qs(request.query_string, keep_blank_values=True) if request.query_string else {}
        if request.body:
            form.update(parse_qs(request.body.decode(errors="replace"), keep_blank_values=True))
        action = (form.get("Action") or [""])[0]
        params: dict[str, Any] = {}
        try:
            if action not in SUPPORTED:
                raise StsError("InvalidAction", f"Could not find operation {action} for version 2011-06-15")
            shape = sts_model().operation_model(action).input_shape
            params = _typed(shape, form) if shape is not None else {}
            identity = self.authenticator.identify(request.headers, form)
            if shape is not None:
                _validate(shape, params)
            result = self.assume_role(params, identity) if action == "AssumeRole" else self.caller(identity)
            body = self._response(action, result, request_id)
            logged = {k: v for k, v in params.items() if k != "Policy"}
            self.requests.record(action, logged, 200)
            return HttpReply(200, body.encode(), {"Content-Type": "text/xml", "x-amzn-RequestId": request_id})
        except EmulatorError as error:
            code, status = _STS_CODES.get(error.code, (error.code, error.status))
            self.requests.record(action or "UnknownAction", params, status, code)
            return self._error(code, error.message, status, request_id)

    def assume_role(self, params: dict[str, Any], identity: Identity) -> dict[str, Any]:
        role_arn = params["RoleArn"]
        found = _ROLE_ARN.fullmatch(role_arn)
        if found is None:
            raise StsError("ValidationError", f"{role_arn} is invalid")
        lifetime = self.limits.credential_seconds
        if lifetime is None:
            lifetime = params.get("DurationSeconds") or DEFAULT_CREDENTIAL_SECONDS
        expires = self.clock() + float(lifetime)
        session, secret, token = mint_session(found.group(2), role_arn, params["RoleSessionName"], expires)
        return {
            "Credentials": {
                "AccessKeyId": session.access_key_id,
                "SecretAccessKey": secret,
                "SessionToken": token,
                "Expiration": expires,
            },
            "AssumedRoleUser": {
                "AssumedRoleId": f"{session.role_id}:{session.session_name}",
                "Arn": session.assumed_role_arn,
            },
        }

    def caller(self, identity: Identity) -> dict[str, Any]:
        account = identity.caller.account_id
        if identity.session is not None:
            session = identity.session
            return {
                "UserId": f"{session.role_id}:{session.session_name}",
                "Account": account,
                "Arn": session.assumed_role_arn,
            }
        user = identity.access_key_id or "emulator"
        return {
            "UserId": user,
            "Account": account,
            "Arn": f"arn:{identity.caller.partition}:iam::{account}:user/{user}",
        }

    @staticmethod
    def _response(action: str, result: dict[str, Any], request_id: str) -> str:
        model = sts_model()
        output = model.operation_model(action).output_shape
        namespace = model.metadata["xmlNamespace"]
        wrapper = output.serialization.get("resultWrapper", f"{action}Result")
        return (
            f'<{action}Response xmlns="{namespace}">'
            + _xml(wrapper, result, output)
            + f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
            + f"</{action}Response>"
        )

    @staticmethod
    def _error(code: str, message: str, status: int, request_id: str) -> HttpReply:
        namespace = sts_model().metadata["xmlNamespace"]
        body = (
            f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return HttpReply(status, body.encode(), {"Content-Type": "text/xml", "x-amzn-RequestId": request_id})

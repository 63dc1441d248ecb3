"""
Errors the emulator answers with, in the form botocore's rest-json parser reads.

The HTTP status of each modeled exception comes from the botocore ``cleanroomsml`` model (its
``error.httpStatusCode``); the error code travels in the ``x-amzn-errortype`` header and the text in
the JSON body's ``message``, so boto3 raises ``client.exceptions.<Code>``.
"""

from __future__ import annotations

import functools
from typing import Any

from airflow_cleanrooms.service_model import service_model

# Codes the model does not declare but the service front end answers with.
_UNMODELED_STATUS = {
    "UnknownOperationException": 404,
    "InternalServerException": 500,
    "NotImplemented": 501,
    "SerializationException": 400,
    # What AWS answers (rest-json services) to a request signed with an expired session token.
    "ExpiredTokenException": 403,
}


@functools.cache
def modeled_status(code: str) -> int:
    """HTTP status the model gives an exception code (``ValidationException`` -> 400)."""
    for shape in service_model().error_shapes:
        if shape.name == code:
            return int(shape.metadata["error"]["httpStatusCode"])
    return _UNMODELED_STATUS.get(code, 400)


class EmulatorError(Exception):
    """An AWS error response: its code (the exception name), message and HTTP status."""

    def __init__(
        self, code: str, message: str, status: int | None = None, members: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else modeled_status(code)
        # Further members of the error shape, sent next to ``message`` in the body.
        self.members = dict(members or {})


class NamedError(EmulatorError):
    """An error whose code is its class name (the exception shape's name in the model)."""

    default_message = ""

    def __init__(self, message: str | None = None):
        super().__init__(type(self).__name__, message if message is not None else self.default_message)


class ValidationException(NamedError):
    pass


class ResourceNotFoundException(NamedError):
    pass


class ConflictException(NamedError):
    pass


class AccessDeniedException(NamedError):
    pass


class ThrottlingException(NamedError):
    default_message = "Rate exceeded"


class ServiceQuotaExceededException(EmulatorError):
    """A start beyond a service quota: the model's shape carries ``quotaName`` and ``quotaValue``."""

    def __init__(self, message: str, quota_name: str, quota_value: float):
        shape = service_model().shape_for("ServiceQuotaExceededException")
        members = {"quotaName": quota_name, "quotaValue": float(quota_value)}
        # The model is the source of truth for the error's members: an older botocore's shape has only
        # ``message`` (which names the quota too).
        members = {name: value for name, value in members.items() if name in shape.members}
        super().__init__("ServiceQuotaExceededException", message, members=members)
        self.quota_name = quota_name
        self.quota_value = float(quota_value)


class ExpiredTokenException(NamedError):
    """A request signed with a session token past its expiration (not in the cleanroomsml model)."""

    default_message = "The security token included in the request is expired"


class InternalServiceException(NamedError):
    """The model's 5xx exception (modeled on CreateTrainedModel): boto3 raises it by this name."""

    default_message = "An internal error occurred (emulated fault)"

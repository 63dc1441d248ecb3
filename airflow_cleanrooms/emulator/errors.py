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


class ValidationException(EmulatorError):
    def __init__(self, message: str):
        super().__init__("ValidationException", message)


class ResourceNotFoundException(EmulatorError):
    def __init__(self, message: str):
        super().__init__("ResourceNotFoundException", message)


class ConflictException(EmulatorError):
    def __init__(self, message: str):
        super().__init__("ConflictException", message)


class AccessDeniedException(EmulatorError):
    def __init__(self, message: str):
        super().__init__("AccessDeniedException", message)


class ThrottlingException(EmulatorError):
    def __init__(self, message: str = "Rate exceeded"):
        super().__init__("ThrottlingException", message)


class ServiceQuotaExceededException(EmulatorError):
    """A start beyond a service quota: the model's shape carries ``quotaName`` and ``quotaValue``."""

    def __init__(self, message: str, quota_name: str, quota_value: float):
        shape = service_model().shape_for("ServiceQuotaExceededException")
        members = {"quotaName": quota_name, "quotaValue": float(quota_value)}
        unknown = set(members) - set(shape.members)
        if unknown:  # the model is the source of truth for the error's members
            raise RuntimeError(f"ServiceQuotaExceededException has no member(s) {sorted(unknown)}")
        super().__init__("ServiceQuotaExceededException", message, members=members)
        self.quota_name = quota_name
        self.quota_value = float(quota_value)


class ExpiredTokenException(EmulatorError):
    """A request signed with a session token past its expiration (not in the cleanroomsml model)."""

    def __init__(self, message: str = "The security token included in the request is expired"):
        super().__init__("ExpiredTokenException", message)


# The model names its 5xx exception ``InternalServiceException`` (modeled on CreateTrainedModel);
# using that name lets boto3 raise ``client.exceptions.InternalServiceException``.
INTERNAL_ERROR_CODE = "InternalServiceException"


class InternalServiceException(EmulatorError):
    def __init__(self, message: str = "An internal error occurred (emulated fault)"):
        super().__init__(INTERNAL_ERROR_CODE, message)

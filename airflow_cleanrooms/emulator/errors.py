"""
Errors the emulator answers with, in the form botocore's rest-json parser reads.

The HTTP status of each modeled exception comes from the botocore ``cleanroomsml`` model (its
``error.httpStatusCode``); the error code travels in the ``x-amzn-errortype`` header and the text in
the JSON body's ``message``, so boto3 raises ``client.exceptions.<Code>``.
"""

from __future__ import annotations

import functools

from airflow_cleanrooms.service_model import service_model

# Codes the model does not declare but the service front end answers with.
_UNMODELED_STATUS = {
    "UnknownOperationException": 404,
    "InternalServerException": 500,
    "NotImplemented": 501,
    "SerializationException": 400,
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

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else modeled_status(code)


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


# The model names its 5xx exception ``InternalServiceException`` (modeled on CreateTrainedModel);
# using that name lets boto3 raise ``client.exceptions.InternalServiceException``.
INTERNAL_ERROR_CODE = "InternalServiceException"


class InternalServiceException(EmulatorError):
    def __init__(self, message: str = "An internal error occurred (emulated fault)"):
        super().__init__(INTERNAL_ERROR_CODE, message)

"""Exceptions raised by the Clean Rooms ML hook, operators and sensors."""

from __future__ import annotations

from typing import Any

from airflow_cleanrooms.compat import AirflowException, AirflowFailException
from airflow_cleanrooms.service_model import RequestValidationError, ValidationIssue


class CleanRoomsMLRequestError(RequestValidationError, AirflowFailException):
    """
    An operator's rendered arguments do not form a valid request; raised before any API call.

    It is a :class:`ValueError` (through :class:`~airflow_cleanrooms.service_model.RequestValidationError`)
    and an :class:`~airflow.exceptions.AirflowFailException`: retrying cannot fix a bad request, so the
    task fails without using its retries.
    """

    def __init__(self, operation_name: str, issues: list[ValidationIssue]):
        RequestValidationError.__init__(self, operation_name, issues)


class CleanRoomsMLJobFailedError(AirflowException):
    """
    A Clean Rooms ML job or resource reached a status it cannot succeed from.

    :param kind: what failed, e.g. ``trained model inference job``.
    :param arn: the ARN of the job or resource.
    :param status: the status it reached, e.g. ``CREATE_FAILED`` (``None`` if unknown).
    :param status_details: the ``statusDetails`` of the last response (``statusCode``, ``message``).
    """

    def __init__(
        self,
        kind: str,
        arn: str | None,
        status: str | None,
        status_details: dict[str, Any] | None = None,
        message: str | None = None,
    ):
        self.kind = kind
        self.arn = arn
        self.status = status
        self.status_details = status_details or None
        super().__init__(message or self.describe())

    def describe(self) -> str:
        text = f"{self.kind.capitalize()} {self.arn} ended in status {self.status}"
        details = format_status_details(self.status_details)
        return f"{text}: {details}" if details else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.arn, self.status, self.status_details, str(self)))


class CleanRoomsMLWaitTimeoutError(AirflowException):
    """The job or resource did not reach a final status within ``waiter_max_attempts`` checks."""


def format_status_details(status_details: dict[str, Any] | None) -> str:
    """``{"statusCode": "X", "message": "Y"}`` -> ``"X: Y"`` (empty if there are no details)."""
    if not status_details:
        return ""
    code = status_details.get("statusCode")
    message = status_details.get("message")
    parts = [str(part) for part in (code, message) if part]
    return ": ".join(parts)


class CleanRoomsMLQuotaUnreachableError(AirflowFailException):
    """
    A start was refused by a job quota no wait can satisfy (its value is below 1).

    An :class:`~airflow.exceptions.AirflowFailException`: retries cannot help until the quota is raised.
    """


class CleanRoomsMLQuotaWaitTimeoutError(AirflowException):
    """A start was refused by a job quota for longer than the operator's ``quota_wait_timeout``."""

"""Hook for AWS Clean Rooms ML (boto3 client ``cleanroomsml``)."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError, CleanRoomsMLWaitTimeoutError
from airflow_cleanrooms.service_model import SERVICE_NAME, camel_to_snake, enum_values

WAITERS_FILE = Path(__file__).resolve().parents[1] / "waiters" / f"{SERVICE_NAME}.json"

SUCCESS_STATUS = "ACTIVE"

# Error codes that say "try again" rather than "this request is wrong" (botocore's own retry handler
# retries these first; a wait loop tolerates a bounded streak of them on top).
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServerException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "BadGateway",
        "GatewayTimeout",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
TRANSIENT_EXCEPTIONS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)


def is_transient_error(error: BaseException) -> bool:
    """Whether an API error is worth retrying (throttling, 5xx, dropped or slow connections)."""
    if isinstance(error, TRANSIENT_EXCEPTIONS):
        return True
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return code in TRANSIENT_ERROR_CODES or status >= 500 or status == 429
    return False


@dataclass(frozen=True)
class ResourceKind:
    """
    One kind of Clean Rooms ML resource that has a lifecycle the provider waits on.

    Status sets come from the model's status enum: ``ACTIVE`` is success, the ``CREATE_*`` statuses
    that are not failures are "still going", and every other status (failed, cancelled, deleted,
    inactive, and any status a newer model adds) is final and a failure.
    """

    label: str
    status_shape: str
    get_operation: str
    arn_member: str
    waiter_name: str
    cancel_operation: str | None = None
    extra_get_members: tuple[str, ...] = field(default=())

    @property
    def arn_member_snake(self) -> str:
        """``trainedModelInferenceJobArn`` -> ``trained_model_inference_job_arn`` (event and XCom key)."""
        return camel_to_snake(self.arn_member)

    @functools.cached_property
    def statuses(self) -> tuple[str, ...]:
        return tuple(enum_values(self.status_shape))

    @functools.cached_property
    def pending_statuses(self) -> frozenset[str]:
        return frozenset(s for s in self.statuses if s.startswith("CREATE_") and not s.endswith("_FAILED"))

    @functools.cached_property
    def success_statuses(self) -> frozenset[str]:
        return frozenset({SUCCESS_STATUS}) & frozenset(self.statuses)

    @functools.cached_property
    def failure_statuses(self) -> frozenset[str]:
        return frozenset(self.statuses) - self.pending_statuses - self.success_statuses

    def is_pending(self, status: str | None) -> bool:
        return status in self.pending_statuses

    def is_success(self, status: str | None) -> bool:
        return status in self.success_statuses

    def is_failure(self, status: str | None) -> bool:
        """Final and not a success: every known failure status, and any status the model doesn't list."""
        return status is not None and not self.is_pending(status) and not self.is_success(status)

    def request(self, membership_identifier: str, arn: str, **extra: Any) -> dict[str, Any]:
        """The Get/Cancel request for one resource (``extra`` holds e.g. ``versionIdentifier``)."""
        request = {"membershipIdentifier": membership_identifier, self.arn_member: arn}
        request.update({k: v for k, v in extra.items() if v is not None})
        return request


TRAINED_MODEL_INFERENCE_JOB = ResourceKind(
    label="trained model inference job",
    status_shape="TrainedModelInferenceJobStatus",
    get_operation="GetTrainedModelInferenceJob",
    cancel_operation="CancelTrainedModelInferenceJob",
    arn_member="trainedModelInferenceJobArn",
    waiter_name="trained_model_inference_job_complete",
)
TRAINED_MODEL = ResourceKind(
    label="trained model",
    status_shape="TrainedModelStatus",
    get_operation="GetTrainedModel",
    cancel_operation="CancelTrainedModel",
    arn_member="trainedModelArn",
    waiter_name="trained_model_active",
    extra_get_members=("versionIdentifier",),
)
ML_INPUT_CHANNEL = ResourceKind(
    label="ML input channel",
    status_shape="MLInputChannelStatus",
    get_operation="GetMLInputChannel",
    arn_member="mlInputChannelArn",
    waiter_name="ml_input_channel_active",
)
RESOURCE_KINDS = (TRAINED_MODEL_INFERENCE_JOB, TRAINED_MODEL, ML_INPUT_CHANNEL)


@dataclass(frozen=True)
class ResourceState:
    """The status of one resource as last read, with its ``statusDetails`` and the whole response."""

    status: str | None
    status_details: dict[str, Any] | None
    response: dict[str, Any]

    @property
    def create_time(self) -> datetime | None:
        value = self.response.get("createTime")
        return value if isinstance(value, datetime) else None

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since the resource was created (``None`` if the response has no ``createTime``)."""
        created = self.create_time
        if created is None:
            return None
        if created.tzinfo is None:
            created = created.replace(tzinfo=timezone.utc)
        return max(0.0, ((now or datetime.now(timezone.utc)) - created).total_seconds())


def format_duration(seconds: float | None) -> str:
    """``75.2`` -> ``"1m15s"``."""
    if seconds is None:
        return "?"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{seconds:.1f}s" if seconds < 10 else f"{secs}s"


def _snake_method(operation_name: str) -> str:
    from botocore import xform_name

    return xform_name(operation_name)


class CleanRoomsMLHook(AwsBaseHook):
    """
    Interact with AWS Clean Rooms ML.

    A thin wrapper around :external+boto3:py:class:`boto3.client("cleanroomsml") <CleanRoomsML.Client>`
    with the provider's custom waiters (botocore ships none for this service) and the helpers the
    operators, sensors and triggers share.

    Additional arguments (such as ``aws_conn_id``) may be specified and are passed down to the
    underlying :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = SERVICE_NAME
        super().__init__(*args, **kwargs)

    @functools.cached_property
    def waiter_path(self) -> Path | None:  # type: ignore[override]
        """The package's own waiter definitions (``airflow_cleanrooms/waiters/cleanroomsml.json``)."""
        return WAITERS_FILE if WAITERS_FILE.exists() else None

    # ---- starting things -------------------------------------------------------------------

    def start_trained_model_inference_job(self, request: dict[str, Any]) -> str:
        """Call ``StartTrainedModelInferenceJob`` with a (validated) request; return the job ARN."""
        response = self.conn.start_trained_model_inference_job(**request)
        return response["trainedModelInferenceJobArn"]

    def create_trained_model(self, request: dict[str, Any]) -> dict[str, Any]:
        """Call ``CreateTrainedModel``; return ``{"trainedModelArn": ..., "versionIdentifier": ...}``."""
        response = self.conn.create_trained_model(**request)
        return {
            "trainedModelArn": response["trainedModelArn"],
            "versionIdentifier": response.get("versionIdentifier"),
        }

    def create_ml_input_channel(self, request: dict[str, Any]) -> str:
        """Call ``CreateMLInputChannel``; return the channel ARN."""
        response = self.conn.create_ml_input_channel(**request)
        return response["mlInputChannelArn"]

    # ---- reading state ---------------------------------------------------------------------

    def describe(
        self, kind: ResourceKind, membership_identifier: str, arn: str, **extra: Any
    ) -> dict[str, Any]:
        """Call the resource's Get operation and return the response."""
        method = getattr(self.conn, _snake_method(kind.get_operation))
        return method(**kind.request(membership_identifier, arn, **extra))

    def get_state(
        self, kind: ResourceKind, membership_identifier: str, arn: str, **extra: Any
    ) -> ResourceState:
        """Read a resource's status and ``statusDetails``."""
        response = self.describe(kind, membership_identifier, arn, **extra)
        return ResourceState(
            status=response.get("status"), status_details=response.get("statusDetails"), response=response
        )

    def get_trained_model_inference_job(self, membership_identifier: str, job_arn: str) -> ResourceState:
        return self.get_state(TRAINED_MODEL_INFERENCE_JOB, membership_identifier, job_arn)

    def get_trained_model(
        self, membership_identifier: str, trained_model_arn: str, version_identifier: str | None = None
    ) -> ResourceState:
        return self.get_state(
            TRAINED_MODEL, membership_identifier, trained_model_arn, versionIdentifier=version_identifier
        )

    def get_ml_input_channel(self, membership_identifier: str, channel_arn: str) -> ResourceState:
        return self.get_state(ML_INPUT_CHANNEL, membership_identifier, channel_arn)

    # ---- cancelling ------------------------------------------------------------------------

    def cancel(self, kind: ResourceKind, membership_identifier: str, arn: str, **extra: Any) -> None:
        """Call the resource's Cancel operation (e.g. ``CancelTrainedModelInferenceJob``)."""
        if kind.cancel_operation is None:
            raise ValueError(f"A {kind.label} cannot be cancelled")
        method = getattr(self.conn, _snake_method(kind.cancel_operation))
        method(**kind.request(membership_identifier, arn, **extra))

    def cancel_trained_model_inference_job(self, membership_identifier: str, job_arn: str) -> None:
        self.cancel(TRAINED_MODEL_INFERENCE_JOB, membership_identifier, job_arn)

    def cancel_trained_model(
        self, membership_identifier: str, trained_model_arn: str, version_identifier: str | None = None
    ) -> None:
        self.cancel(
            TRAINED_MODEL, membership_identifier, trained_model_arn, versionIdentifier=version_identifier
        )

    # ---- waiting ---------------------------------------------------------------------------

    def wait_for(
        self,
        kind: ResourceKind,
        membership_identifier: str,
        arn: str,
        *,
        waiter_delay: float,
        waiter_max_attempts: int,
        max_error_streak: int = 5,
        **extra: Any,
    ) -> ResourceState:
        """
        Poll a resource until it is ``ACTIVE``; log each status change with the time spent.

        Transient API errors (throttling, 5xx, dropped connections) are retried by botocore first;
        on top of that a streak of up to ``max_error_streak`` failed reads is tolerated without using
        up attempts. Any other error is raised as is.

        :return: the final state (status ``ACTIVE``).
        :raises CleanRoomsMLJobFailedError: the resource reached a failure status.
        :raises CleanRoomsMLWaitTimeoutError: ``waiter_max_attempts`` reads without a final status.
        """
        started = time.monotonic()
        last_status: str | None = None
        attempts = 0
        error_streak = 0
        while True:
            try:
                state = self.get_state(kind, membership_identifier, arn, **extra)
            except Exception as error:
                if not is_transient_error(error) or error_streak >= max_error_streak:
                    raise
                error_streak += 1
                self.log.warning(
                    "Reading %s %s failed (%s); retrying (%d/%d)",
                    kind.label,
                    arn,
                    error,
                    error_streak,
                    max_error_streak,
                )
                time.sleep(waiter_delay)
                continue
            error_streak = 0
            attempts += 1
            if state.status != last_status:
                self.log.info(
                    "%s %s is %s%s after %s of waiting (age %s)",
                    kind.label.capitalize(),
                    arn,
                    state.status,
                    f" (was {last_status})" if last_status else "",
                    format_duration(time.monotonic() - started),
                    format_duration(state.age_seconds()),
                )
                last_status = state.status
            if kind.is_success(state.status):
                return state
            if kind.is_failure(state.status):
                raise CleanRoomsMLJobFailedError(kind.label, arn, state.status, state.status_details)
            if attempts >= waiter_max_attempts:
                raise CleanRoomsMLWaitTimeoutError(
                    f"{kind.label.capitalize()} {arn} is still {state.status} after {attempts} checks "
                    f"({format_duration(time.monotonic() - started)}); waiter_max_attempts reached"
                )
            time.sleep(waiter_delay)

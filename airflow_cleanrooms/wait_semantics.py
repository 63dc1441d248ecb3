"""
What a wait on a Clean Rooms ML resource means, in one place.

* **Kinds and statuses.** :class:`ResourceKind` names one kind of resource (an inference job, a
  trained model, an ML input channel): its Get, Cancel, Start and List operations, and which of its
  statuses mean "still going", "done" and "failed". Those sets are read from the provider's waiter
  model (``airflow_cleanrooms/waiters/cleanroomsml.json``), the one definition of "done" that sync
  waits, sensors, triggers and the durable start path all use; a test checks that it covers every
  status of the model's status enum.
* **Matching a response**, as ``botocore.waiter.Waiter.wait`` does: :func:`waiter_acceptors` and
  :func:`match_acceptors` (path matchers on one shared JMESPath interpreter, see below).
* **Transient errors**: :func:`is_transient` and :func:`is_throttling`, one code set built from the
  service model's error shapes (``httpStatusCode`` 429 and 5xx) and botocore's standard retry rules.
* **The event a finished wait produces** (:func:`wait_event`) and **the outcome a task draws from
  it** (:func:`raise_for_wait_event`), shared by the operators' and the sensors' ``execute_complete``.
* **The final state block** (:func:`log_final_state`): when any wait ends (sync or deferrable,
  operator or sensor), the task log gets the final status, ``statusDetails`` and the container logs'
  and metrics' publishing status (``logsStatus``/``metricsStatus`` and their details, where the
  installed botocore model has them), with what a ``PUBLISH_FAILED`` means for the user.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import botocore.session
import jmespath
import jmespath.visitor
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker
from botocore.waiter import AcceptorConfig, SingleWaiterConfig, WaiterModel, is_valid_waiter_error

from airflow_cleanrooms.exceptions import (
    CleanRoomsMLJobFailedError,
    CleanRoomsMLWaitTimeoutError,
    format_status_details,
)
from airflow_cleanrooms.service_model import (
    SERVICE_NAME,
    camel_to_snake,
    enum_values,
    operation_model,
    service_model,
    shape_limits,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

WAITERS_FILE = Path(__file__).resolve().parent / "waiters" / f"{SERVICE_NAME}.json"

# ---- transient errors ----------------------------------------------------------------------------


def _model_error_codes(accept: Callable[[int], bool]) -> frozenset[str]:
    """Codes of the model's error shapes whose ``httpStatusCode`` satisfies ``accept``."""
    return frozenset(
        shape.name
        for shape in service_model().error_shapes
        if accept(int(shape.metadata.get("error", {}).get("httpStatusCode") or 0))
    )


#: Refused for rate: nothing was done, so sending the same request again is safe.
THROTTLING_ERROR_CODES: frozenset[str] = frozenset(
    ThrottledRetryableChecker._THROTTLED_ERROR_CODES
) | _model_error_codes(lambda status: status == 429)
#: Worth another try: throttling, and the service's and botocore's transient errors.
TRANSIENT_ERROR_CODES: frozenset[str] = (
    THROTTLING_ERROR_CODES
    | frozenset(TransientRetryableChecker._TRANSIENT_ERROR_CODES)
    | _model_error_codes(lambda status: status >= 500)
)
TRANSIENT_STATUS_CODES: frozenset[int] = frozenset(TransientRetryableChecker._TRANSIENT_STATUS_CODES) | {429}
#: Raised (not returned as an error response); a later call may not see them again.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    BotocoreConnectionError,  # EndpointConnectionError, ConnectTimeoutError, SSLError, proxy errors
    HTTPClientError,  # ConnectionClosedError, ReadTimeoutError
    IncompleteReadError,
    NoCredentialsError,
    CredentialRetrievalError,
    asyncio.TimeoutError,
    OSError,
)


def error_response(error: BaseException | Mapping[str, Any]) -> Mapping[str, Any]:
    """The botocore error response of a ``ClientError`` (or the response itself); ``{}`` otherwise."""
    if isinstance(error, ClientError):
        return error.response
    return error if isinstance(error, Mapping) else {}


def error_code(error: BaseException | Mapping[str, Any]) -> str:
    return str(error_response(error).get("Error", {}).get("Code") or "")


def http_status(error: BaseException | Mapping[str, Any]) -> int:
    return int(error_response(error).get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_throttling(error: BaseException | Mapping[str, Any]) -> bool:
    """Refused for rate (an error or an error response): nothing was done."""
    return error_code(error) in THROTTLING_ERROR_CODES or http_status(error) == 429


def is_transient(error: BaseException | Mapping[str, Any]) -> bool:
    """Worth another try (an error or an error response): throttling, 5xx, dropped or slow connections."""
    if isinstance(error, TRANSIENT_EXCEPTIONS):
        return True
    return error_code(error) in TRANSIENT_ERROR_CODES or http_status(error) in TRANSIENT_STATUS_CODES


# ---- waiter acceptors: the one definition of "done" ----------------------------------------------

# One JMESPath interpreter for every search. ``ParsedResult.search`` builds a new ``TreeInterpreter``
# per call, and each is an object cycle that only the garbage collector frees: with a thousand waits
# in one triggerer they set the pace of its collections (BENCHMARKS.md, "Scale").
_INTERPRETER = jmespath.visitor.TreeInterpreter()


@functools.lru_cache(maxsize=256)
def _compiled(query: str) -> Any:
    return jmespath.compile(query).parsed


def search(query: str, data: Any) -> Any:
    """``jmespath.search`` on the shared interpreter."""
    return _INTERPRETER.visit(_compiled(query), data)


class PollVerdict(NamedTuple):
    """
    What one poll's outcome means for a wait (:func:`judge_poll`).

    ``state``: ``success`` or ``failure`` (an acceptor ended the wait), ``retry`` (an answer, still
    going: a retry acceptor or none), ``transient`` (no answer worth judging: throttling, 5xx, a
    dropped connection; try again without using an attempt), or ``error`` (an error answer no
    acceptor names: the wait cannot go on). ``throttled``: a transient outcome that was a refusal
    for rate (the service is up and busy).
    """

    state: str
    #: The acceptor's explanation, or the error's ``Code: Message``.
    explanation: str = ""
    throttled: bool = False

    @property
    def answered(self) -> bool:
        """Whether the poll got an answer (it uses one of the wait's attempts)."""
        return self.state in ("success", "failure", "retry")


class Acceptor(NamedTuple):
    """One waiter acceptor: its state (``success``, ``failure``, ``retry``) and its matcher."""

    state: str
    explanation: str
    matches: Callable[[Mapping[str, Any]], Any]
    expected: Any = None
    #: What a poll it matches means, made once (a thousand waits' polls allocate no verdict).
    verdict: PollVerdict = PollVerdict("retry")


def _path_matcher(acceptor: AcceptorConfig) -> Callable[[Mapping[str, Any]], Any]:
    """botocore's path, pathAll and pathAny ``acceptor.matcher_func``, on the shared interpreter."""
    query, expected, kind = acceptor.argument, acceptor.expected, acceptor.matcher

    def matches(response: Mapping[str, Any]) -> bool | None:
        if is_valid_waiter_error(response):
            return None
        result = search(query, response)
        if kind == "path":
            return bool(result == expected)
        if not isinstance(result, list) or not result:
            return False  # pathAll / pathAny need a non-empty list
        if kind == "pathAll":
            return all(element == expected for element in result)
        return any(element == expected for element in result)

    return matches


#: Members of a job's Get response that say whether its container logs and metrics were published.
PUBLISHING_MEMBERS = ("logsStatus", "logsStatusDetails", "metricsStatus", "metricsStatusDetails")

_WaiterKey = tuple[str, str, str, str]
_WAITER_CONFIGS: dict[_WaiterKey, SingleWaiterConfig] = {}
_WAITER_CONFIGS_LOCK = threading.Lock()


def waiter_config_key(
    hook: AwsGenericHook, waiter_name: str, config_overrides: dict[str, Any] | None = None
) -> _WaiterKey:
    """What :func:`load_waiter_config` caches a waiter config under."""
    return (
        f"{type(hook).__module__}.{type(hook).__qualname__}",
        hook.client_type or "",
        waiter_name,
        json.dumps(config_overrides, sort_keys=True, default=repr),
    )


def cached_waiter_config(key: _WaiterKey) -> SingleWaiterConfig | None:
    return _WAITER_CONFIGS.get(key)


def load_waiter_config(
    hook: AwsGenericHook, waiter_name: str, config_overrides: dict[str, Any] | None = None
) -> SingleWaiterConfig:
    """
    Return the botocore waiter config of ``waiter_name`` for ``hook`` (blocking; cached).

    The hook's custom waiter JSON wins (``hook.waiter_path``), as in ``AwsGenericHook.get_waiter``;
    otherwise the service's official waiter model is used. ``config_overrides`` updates the waiter's
    entry as ``get_waiter(config_overrides=...)`` does.
    """
    service = hook.client_type or ""
    cache_key = waiter_config_key(hook, waiter_name, config_overrides)
    cached = _WAITER_CONFIGS.get(cache_key)
    if cached is not None:
        return cached
    model: dict[str, Any]
    if hook.waiter_path and waiter_name in hook._list_custom_waiters():
        model = copy.deepcopy(_waiter_model(str(hook.waiter_path)))  # overrides update a copy
    else:
        loader = botocore.session.get_session().get_component("data_loader")
        model = loader.load_service_model(service, "waiters-2")
    if waiter_name not in model.get("waiters", {}):
        raise ValueError(f"Waiter {waiter_name!r} is defined neither by {type(hook).__name__} nor {service}")
    if config_overrides:
        model["waiters"][waiter_name].update(config_overrides)
    config = WaiterModel(model).get_waiter(waiter_name)
    with _WAITER_CONFIGS_LOCK:
        _WAITER_CONFIGS[cache_key] = config
    return config


_ACCEPTORS: dict[int, tuple[SingleWaiterConfig, tuple[Acceptor, ...]]] = {}


def waiter_acceptors(waiter: SingleWaiterConfig) -> tuple[Acceptor, ...]:
    """
    The waiter's acceptors, built once (botocore rebuilds their matchers on every access).

    Status and error matchers are botocore's own; path matchers evaluate their JMESPath on the
    shared interpreter, with botocore's semantics.
    """
    cached = _ACCEPTORS.get(id(waiter))
    if cached is None or cached[0] is not waiter:
        acceptors = tuple(
            Acceptor(
                a.state,
                a.explanation,
                _path_matcher(a) if a.matcher in ("path", "pathAll", "pathAny") else a.matcher_func,
                a.expected,
                PollVerdict(a.state, a.explanation),
            )
            for a in waiter.acceptors
        )
        cached = _ACCEPTORS[id(waiter)] = (waiter, acceptors)
    return cached[1]


def match_acceptors(acceptors: tuple[Acceptor, ...], response: Mapping[str, Any]) -> Acceptor | None:
    """The first acceptor that matches ``response`` (botocore's order), or ``None``."""
    return next((a for a in acceptors if a.matches(response)), None)


_STILL_GOING = PollVerdict("retry")


def judge_poll(acceptors: tuple[Acceptor, ...], outcome: Mapping[str, Any] | BaseException) -> PollVerdict:
    """
    Judge one poll's outcome (a response, or the error its call raised) as ``botocore.waiter.Waiter``
    would, with the provider's one rule for transient errors: the one judge of sync waits, sensors
    and triggers. An error that is neither a botocore error response nor transient is raised.
    """
    response: Mapping[str, Any]
    if isinstance(outcome, ClientError):
        response = outcome.response
    elif isinstance(outcome, BaseException):
        if is_transient(outcome):
            return PollVerdict("transient", f"{type(outcome).__name__}: {outcome}", is_throttling(outcome))
        raise outcome
    else:
        response = outcome
    matched = match_acceptors(acceptors, response)
    if matched is not None:
        return matched.verdict
    if "Error" in response:
        info = response["Error"]
        description = f"{info.get('Code', 'Unknown')}: {info.get('Message', '')}"
        if is_transient(response):
            return PollVerdict("transient", description, is_throttling(response))
        return PollVerdict("error", description)
    return _STILL_GOING


def count_poll(
    verdict: PollVerdict, attempts: int, streak: int, *, max_attempts: int, max_transient: int
) -> tuple[int, int, str | None]:
    """
    Count one judged poll against a wait's bounds: ``(attempts, transient streak, why it ends)``.

    An answered poll uses an attempt and ends a transient streak; a transient outcome lengthens the
    streak, except a throttled one: a busy service is no reason to give up on a job that is running
    (many waits sharing an account's request rate are throttled in turn), so throttling never ends a
    wait (the task's ``execution_timeout`` bounds it). The wait ends ``"attempts"`` when
    ``max_attempts`` answers left it still going, and ``"transient"`` after more than
    ``max_transient`` other transient outcomes in a row.
    """
    if verdict.state == "transient":
        if verdict.throttled:
            return attempts, streak, None
        streak += 1
        return attempts, streak, "transient" if streak > max_transient else None
    if not verdict.answered:
        return attempts, streak, None
    attempts += 1
    return attempts, 0, "attempts" if verdict.state == "retry" and attempts >= max_attempts else None


@functools.cache
def _waiter_model(path: str) -> dict[str, Any]:
    """A waiter JSON file, read once per process (the packaged one serves every hook and kind)."""
    with open(path) as waiter_file:
        model: dict[str, Any] = json.load(waiter_file)
    return model


def _packaged_waiters() -> dict[str, Any]:
    waiters: dict[str, Any] = _waiter_model(str(WAITERS_FILE))["waiters"]
    return waiters


# ---- kinds and statuses --------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceKind:
    """
    One kind of Clean Rooms ML resource that has a lifecycle the provider waits on.

    Which statuses are "still going" (``retry``), "done" (``success``) and "failed" (``failure``)
    is read from the status acceptors of its waiter in the packaged waiter model; a status no
    acceptor names (one a newer model adds) keeps a wait going, as in botocore's waiters, until the
    wait's attempts run out.

    :param label: what to call it in messages, e.g. ``trained model inference job``.
    :param status_shape: the model's status enum (to check that the waiter covers it).
    :param get_operation: the Get operation a wait polls.
    :param arn_member: the member holding its ARN (Get, Cancel, Start responses, List summaries).
    :param waiter_name: its waiter in ``waiters/cleanroomsml.json``.
    :param cancel_operation: the Cancel operation, if it can be cancelled.
    :param start_operation: the call that starts one (durable start path).
    :param list_operation: the membership's listing of them (durable lookup).
    :param version_member: for trained models, the member holding the version.
    :param match_members: request members a listed summary must share to be the same job when its
        name differs (durable lookup).
    """

    label: str
    status_shape: str
    get_operation: str
    arn_member: str
    waiter_name: str
    cancel_operation: str | None = None
    start_operation: str | None = None
    list_operation: str | None = None
    version_member: str | None = None
    match_members: tuple[str, ...] = field(default=())

    @property
    def arn_resource_type(self) -> str:
        """``trained model inference job`` -> ``trained-model-inference-job``, as its ARNs spell it."""
        return self.label.lower().replace(" ", "-")

    @property
    def arn_member_snake(self) -> str:
        """``trainedModelInferenceJobArn`` -> ``trained_model_inference_job_arn`` (event and XCom key)."""
        return camel_to_snake(self.arn_member)

    @functools.cached_property
    def statuses(self) -> tuple[str, ...]:
        """Every status of the model's enum."""
        return tuple(enum_values(self.status_shape))

    @functools.cached_property
    def _status_acceptors(self) -> dict[str, frozenset[str]]:
        by_state: dict[str, set[str]] = {"success": set(), "failure": set(), "retry": set()}
        for acceptor in _packaged_waiters()[self.waiter_name]["acceptors"]:
            if acceptor["matcher"] == "path" and acceptor.get("argument") == "status":
                by_state[acceptor["state"]].add(acceptor["expected"])
        return {state: frozenset(values) for state, values in by_state.items()}

    @property
    def pending_statuses(self) -> frozenset[str]:
        return self._status_acceptors["retry"]

    @property
    def success_statuses(self) -> frozenset[str]:
        return self._status_acceptors["success"]

    @functools.cached_property
    def done_status(self) -> str:
        """The one status the waiter accepts as done (``ACTIVE``)."""
        (status,) = self.success_statuses
        return status

    @property
    def failure_statuses(self) -> frozenset[str]:
        return self._status_acceptors["failure"]

    def is_pending(self, status: str | None) -> bool:
        return status in self.pending_statuses

    def is_success(self, status: str | None) -> bool:
        return status in self.success_statuses

    def is_failure(self, status: str | None) -> bool:
        return status in self.failure_statuses

    def request(self, membership_identifier: str, arn: str, **extra: Any) -> dict[str, Any]:
        """The Get/Cancel request for one resource (``extra`` holds e.g. ``versionIdentifier``)."""
        request = {"membershipIdentifier": membership_identifier, self.arn_member: arn}
        request.update({k: v for k, v in extra.items() if v is not None})
        return request

    def cancel_command(self, membership_identifier: str, arn: str, **extra: Any) -> str:
        """The AWS CLI command that cancels one resource (for logs that ask a person to do it)."""
        assert self.cancel_operation is not None
        request = self.request(membership_identifier, arn, **extra)
        words = ["aws", "cleanroomsml", camel_to_snake(self.cancel_operation).replace("_", "-")]
        for key, value in request.items():
            words += [f"--{camel_to_snake(key).replace('_', '-')}", str(value)]
        return " ".join(words)

    @property
    def list_result_key(self) -> str:
        """The listed items' member (``trainedModelInferenceJobs``), read from the model."""
        assert self.list_operation is not None
        output = operation_model(self.list_operation).output_shape
        assert output is not None
        return next(name for name, shape in output.members.items() if shape.type_name == "list")

    @functools.cached_property
    def publishing_members(self) -> tuple[str, ...]:
        """
        ``logsStatus``, ``logsStatusDetails``, ``metricsStatus``, ``metricsStatusDetails``: those the
        installed model's Get output has (an older botocore may lack them), in that order.
        """
        output = operation_model(self.get_operation).output_shape
        members = output.members if output is not None else {}
        return tuple(name for name in PUBLISHING_MEMBERS if name in members)

    @property
    def list_page_size(self) -> int:
        assert self.list_operation is not None
        shape = operation_model(self.list_operation).input_shape
        assert shape is not None
        return int(shape_limits(shape.members["maxResults"])[1] or 100)


TRAINED_MODEL_INFERENCE_JOB = ResourceKind(
    label="trained model inference job",
    status_shape="TrainedModelInferenceJobStatus",
    get_operation="GetTrainedModelInferenceJob",
    cancel_operation="CancelTrainedModelInferenceJob",
    arn_member="trainedModelInferenceJobArn",
    waiter_name="trained_model_inference_job_complete",
    start_operation="StartTrainedModelInferenceJob",
    list_operation="ListTrainedModelInferenceJobs",
    match_members=("trainedModelArn", "trainedModelVersionIdentifier"),
)
TRAINED_MODEL = ResourceKind(
    label="trained model",
    status_shape="TrainedModelStatus",
    get_operation="GetTrainedModel",
    cancel_operation="CancelTrainedModel",
    arn_member="trainedModelArn",
    waiter_name="trained_model_active",
    start_operation="CreateTrainedModel",
    list_operation="ListTrainedModels",
    version_member="versionIdentifier",
    match_members=("configuredModelAlgorithmAssociationArn",),
)
ML_INPUT_CHANNEL = ResourceKind(
    label="ML input channel",
    status_shape="MLInputChannelStatus",
    get_operation="GetMLInputChannel",
    arn_member="mlInputChannelArn",
    waiter_name="ml_input_channel_active",
    start_operation="CreateMLInputChannel",
)
RESOURCE_KINDS = (TRAINED_MODEL_INFERENCE_JOB, TRAINED_MODEL, ML_INPUT_CHANNEL)


@dataclass(frozen=True)
class ResourceState:
    """The status of one resource as last read, with its ``statusDetails`` and the whole response."""

    status: str | None
    status_details: dict[str, Any] | None
    response: dict[str, Any]

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> ResourceState:
        return cls(response.get("status"), response.get("statusDetails"), response)

    def final_fields(self, kind: ResourceKind) -> dict[str, Any]:
        """What :func:`log_final_state` shows: status, its details and the publishing fields."""
        return {
            "job_status": self.status,
            "status_details": self.status_details,
            **publishing_fields(kind, self.response),
        }

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


# ---- the event of a finished wait, and the task's outcome ------------------------------------------


def publishing_fields(kind: ResourceKind, response: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    The logs/metrics publishing members of a Get response, by snake_case name (``logs_status``, ...).

    Only members the installed model has (:attr:`ResourceKind.publishing_members`) and the response
    carries; ``{}`` for kinds without them (ML input channels).
    """
    if not response:
        return {}
    return {
        camel_to_snake(name): response[name]
        for name in kind.publishing_members
        if response.get(name) is not None
    }


def wait_event(
    return_key: str,
    return_value: Any,
    *,
    message: str | None = None,
    status: str | None = None,
    status_details: dict[str, Any] | None = None,
    final: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """
    The payload of a trigger's event: success when ``message`` is ``None``, else an error.

    ``{"status": "success", <return_key>: <return_value>}`` or ``{"status": "error", "message": ...,
    <return_key>: ..., "job_status": <last status or None>, "status_details": <dict or None>}``.
    ``final`` (:func:`publishing_fields` of the last response, when the wait ended on one) adds
    ``logs_status``, ``logs_status_details``, ``metrics_status``, ``metrics_status_details``.
    """
    if message is None:
        event: dict[str, Any] = {"status": "success", return_key: return_value}
        if final is not None:
            event["job_status"] = status
        event.update(final or {})
        return event
    return {
        "status": "error",
        "message": message,
        return_key: return_value,
        "job_status": status,
        "status_details": status_details,
        **(final or {}),
    }


_PUBLISH_FAILED = "PUBLISH_FAILED"
_PUBLISHING_WHY = {
    "logs": (
        "no container logs will be found in CloudWatch Logs for this job. Clean Rooms ML publishes what "
        "the model container writes to stdout/stderr only when the configured model algorithm "
        "association's privacy configuration allows it for this member (privacyConfiguration.policies."
        "{policy}.containerLogs: allowedAccountIds, filterPattern) and the member's ML configuration "
        "role may write to CloudWatch Logs"
    ),
    "metrics": (
        "no container metrics will be found in CloudWatch Metrics for this job (the association's "
        "privacy configuration, containerMetrics, and the ML configuration role decide)"
    ),
}


def format_final_state(kind: ResourceKind, arn: str, fields: Mapping[str, Any]) -> str:
    """
    One readable block: the final status with its details, and logs/metrics publishing with theirs.

    ``fields`` holds ``job_status``, ``status_details`` and :func:`publishing_fields` (a trigger's
    event, or :meth:`ResourceState.final_fields`). A member the response did not carry is shown as
    ``not reported``; a member the installed botocore model lacks is left out.
    """
    policy = "trainedModelInferenceJobs" if kind is TRAINED_MODEL_INFERENCE_JOB else "trainedModels"
    lines = [f"{kind.label.capitalize()} {arn} ended:"]
    lines.append(f"  status:           {fields.get('job_status') or 'unknown'}")
    details = format_status_details(fields.get("status_details"))
    if details:
        lines.append(f"  status details:   {details}")
    for what in ("logs", "metrics"):
        if f"{what}Status" not in kind.publishing_members:
            continue
        status = fields.get(f"{what}_status")
        lines.append(f"  {what + ' status:':<17} {status or 'not reported'}")
        status_details = fields.get(f"{what}_status_details")
        if status_details:
            lines.append(f"  {what + ' details:':<17} {status_details}")
        if status == _PUBLISH_FAILED:
            lines.append(f"  {'':<17} => {_PUBLISHING_WHY[what].format(policy=policy)}")
    return "\n".join(lines)


def log_final_state(kind: ResourceKind, arn: str, fields: Mapping[str, Any], log: Any) -> None:
    """Log :func:`format_final_state` (warning level when the job failed or publishing did)."""
    failed = kind.is_failure(fields.get("job_status")) or _PUBLISH_FAILED in (
        fields.get("logs_status"),
        fields.get("metrics_status"),
    )
    (log.warning if failed else log.info)("%s", format_final_state(kind, arn, fields))


def raise_for_wait_event(
    kind: ResourceKind,
    arn: str,
    event: Mapping[str, Any],
    read_state: Callable[[], ResourceState],
    log: Any,
) -> None:
    """
    What a task does with its trigger's event: return on success, raise otherwise.

    Accepts the plain ``AwsBaseWaiterTrigger`` error event too (``message`` only): the status is then
    read once with ``read_state``.

    :raises CleanRoomsMLJobFailedError: the resource reached a failure status.
    :raises CleanRoomsMLWaitTimeoutError: the wait ended while the resource was still going, or its
        status is unknown (the operator cancels what it started before re-raising).
    """
    fields: dict[str, Any] = dict(event)
    if fields.get("job_status") is None:
        # A plain AwsBaseWaiterTrigger event, or a wait that ended before any answer: read the state
        # once, for the outcome and the final state block.
        try:
            fields.update(read_state().final_fields(kind))
        except Exception as error:
            log.warning("Could not read the final status of %s: %s", arn, error)
            if event.get("status") == "success":
                fields["job_status"] = kind.done_status
    log_final_state(kind, arn, fields, log)
    if event.get("status") == "success":
        return
    status = fields.get("job_status")
    details = fields.get("status_details")
    if kind.is_success(status):
        return  # the wait stopped on an error, but the resource is ACTIVE after all
    if kind.is_failure(status):
        raise CleanRoomsMLJobFailedError(kind.label, arn, status, details)
    raise CleanRoomsMLWaitTimeoutError(
        f"{kind.label.capitalize()} {arn} is {status or 'in an unknown status'}: "
        f"{event.get('message') or 'the wait ended with an error'}"
    )

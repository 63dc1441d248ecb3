"""
Durable execution for the operators that start a Clean Rooms ML job: never start a job twice.

An inference job (or a trained model) costs money and a collaboration's privacy budget, so a task
instance starts at most one per attempt chain and always finds again the one it started:

* **Airflow 3.3+, synchronous waits**: the Task SDK's ``ResumableJobMixin`` persists the job ARN
  in ``task_state_store`` right after the start call. A retry reads it back: a job still running is
  waited on again, an ``ACTIVE`` one makes the task succeed without a new job, and a failed or
  cancelled one is replaced by a fresh start.
* **The crash window.** The mixin documents a gap it cannot close: a worker that dies between the
  start call and the store write leaves nothing behind. Every job this mixin starts therefore
  carries an *identity tag* (key :data:`IDENTITY_TAG_KEY`, value a hash of dag_id, task_id, run_id
  and map_index), and before a retry starts anything it looks for a job with its tag through
  ``List*`` (the membership's jobs, paginated and bounded) and ``ListTagsForResource``.
* **Deferrable mode and Airflow < 3.3** have no store-backed polling loop, so the same store check
  (where a store exists) and the same tag lookup run before the start call there.
* **Name collisions.** A job name that is already taken by a running job of *another* task fails
  the task before any start call, naming the ``name`` argument: two tasks silently sharing one
  job name is how one task ends up waiting on (or cancelling) another's job.

``durable=False`` turns the store, the tag and the lookup off: every try starts a new job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, cast

from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.retries.standard import ExponentialBackoff, RetryContext

from airflow_cleanrooms.exceptions import CleanRoomsMLRequestError
from airflow_cleanrooms.service_model import (
    RESERVED_TAG_KEY_PREFIX,
    TAG_MAP_SHAPE,
    ValidationIssue,
    operation_model,
    service_model,
    shape_limits,
)

try:  # Airflow 3.3+: the Task SDK's mixin; below 3.3 the compat stand-in (submits on every try).
    from airflow.providers.common.compat.sdk import ResumableJobMixin
except ImportError:  # pragma: no cover - a common-compat provider older than the resumable-job shim
    from airflow.sdk import ResumableJobMixin  # type: ignore[no-redef]

try:
    from airflow.providers.amazon.version_compat import AIRFLOW_V_3_3_PLUS
except ImportError:  # pragma: no cover - amazon provider older than 9.3x
    from airflow import __version__ as _airflow_version
    from packaging.version import Version

    AIRFLOW_V_3_3_PLUS = Version(Version(_airflow_version).base_version) >= Version("3.3.0")

try:
    from airflow.sdk.bases.operator import BaseOperatorMeta

    _apply_defaults = BaseOperatorMeta._apply_defaults
except ImportError:  # pragma: no cover - Airflow without the Task SDK

    def _apply_defaults(func: Any) -> Any:
        return func


if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook, ResourceKind

#: Tag key carrying the task instance identity. Not ``aws:``-prefixed (reserved), within the
#: model's TagKey length; checked against the model below at import time.
IDENTITY_TAG_KEY = "airflow:task-instance"
NOT_FOUND_STATUS = "NOT_FOUND"
_ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})


def _tag_limits() -> tuple[int, int]:
    tag_map = service_model().shape_for(TAG_MAP_SHAPE)
    key_max = shape_limits(tag_map.key)[1]
    value_max = shape_limits(tag_map.value)[1]
    return int(key_max or 128), int(value_max or 256)


def _check_identity_tag_key() -> None:
    key_max, _ = _tag_limits()
    if IDENTITY_TAG_KEY.lower().startswith(RESERVED_TAG_KEY_PREFIX) or len(IDENTITY_TAG_KEY) > key_max:
        raise RuntimeError(f"identity tag key {IDENTITY_TAG_KEY!r} breaks the model's TagKey rules")


_check_identity_tag_key()


def task_instance_identity(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """
    The identity tag value of a task instance: a SHA-256 hex digest of its key.

    dag_id, task_id and run_id may each be up to 250 characters, more than a tag value holds, so the
    key is hashed; 64 hex characters fit the model's TagValue limit and any tag character rule.
    """
    key = json.dumps([dag_id, task_id, run_id, -1 if map_index is None else int(map_index)])
    digest = hashlib.sha256(key.encode()).hexdigest()
    return digest[: _tag_limits()[1]]


def context_identity(context: Context) -> str | None:
    """The task instance's identity tag value; ``None`` outside a task instance (no dag_id/run_id)."""
    ti = context.get("ti")
    dag_id, task_id, run_id = (getattr(ti, name, None) for name in ("dag_id", "task_id", "run_id"))
    if not (isinstance(dag_id, str) and isinstance(task_id, str) and isinstance(run_id, str)):
        return None
    return task_instance_identity(dag_id, task_id, run_id, getattr(ti, "map_index", -1))


@dataclass(frozen=True)
class DurableJobKind:
    """
    How to start and find one kind of Clean Rooms ML job.

    :param resource: the hook's :class:`~airflow_cleanrooms.hooks.cleanrooms_ml.ResourceKind`
        (statuses, Get operation, ARN member).
    :param start_operation: the API call that starts it, e.g. ``StartTrainedModelInferenceJob``.
    :param list_operation: the membership listing, e.g. ``ListTrainedModelInferenceJobs``.
    :param version_member: for trained models, the response member holding the version.
    :param match_members: request members a summary must share to be one of this task's jobs
        when its name differs (e.g. the trained model it runs).
    """

    resource: ResourceKind
    start_operation: str
    list_operation: str
    version_member: str | None = None
    match_members: tuple[str, ...] = ()

    @property
    def list_result_key(self) -> str:
        """The listed items' member (``trainedModelInferenceJobs``), read from the model."""
        output = operation_model(self.list_operation).output_shape
        assert output is not None
        return next(name for name, shape in output.members.items() if shape.type_name == "list")

    @property
    def list_page_size(self) -> int:
        shape = operation_model(self.list_operation).input_shape
        assert shape is not None
        maximum = shape_limits(shape.members["maxResults"])[1]
        return int(maximum or 100)


@dataclass(frozen=True)
class FoundJob:
    """A job seen in the service: its ARN, version (trained models), status and creation time."""

    arn: str
    status: str | None
    version: str | None = None
    name: str | None = None
    create_time: datetime | None = None
    summary: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def ref(self) -> dict[str, Any]:
        return {"arn": self.arn, "version": self.version}


def _as_ref(external_id: Any) -> dict[str, Any]:
    """Stored external ids are ``{"arn": ..., "version": ...}``; a bare ARN string is accepted too."""
    if isinstance(external_id, Mapping):
        return {"arn": str(external_id["arn"]), "version": external_id.get("version")}
    return {"arn": str(external_id), "version": None}


def _error_code(error: BaseException) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) if isinstance(error, ClientError) else ""


def _http_status(error: BaseException) -> int:
    if not isinstance(error, ClientError):
        return 0
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _is_throttling(error: BaseException) -> bool:
    """Refused for rate: nothing was done, so sending it again is safe."""
    return (
        _http_status(error) == 429
        or "throttl" in _error_code(error).lower()
        or _error_code(error) in ("TooManyRequestsException", "RequestLimitExceeded")
    )


def _is_transient(error: BaseException) -> bool:
    """Worth another look: a 5xx, a conflict a lost first attempt may explain, or a network error."""
    if isinstance(error, ClientError):
        return _http_status(error) >= 500 or _error_code(error) == "ConflictException"
    return isinstance(error, (BotocoreConnectionError, HTTPClientError))


def _backoff(retry: int) -> float:
    """botocore's standard-mode backoff (jittered exponential, capped) for the ``retry``-th retry."""
    return float(ExponentialBackoff().delay_amount(RetryContext(attempt_number=retry)))


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class CleanRoomsMLDurableJobMixin(ResumableJobMixin):
    """
    Start a Clean Rooms ML job at most once per task instance attempt chain, and find it again.

    Mix into an operator that has ``membership_identifier``, ``wait_for_completion``,
    ``deferrable``, ``waiter_delay``, ``waiter_max_attempts`` and a ``hook``
    (:class:`~airflow_cleanrooms.hooks.cleanrooms_ml.CleanRoomsMLHook`), and implement:

    * :meth:`build_durable_request` - the validated request (raises before any API call);
    * :meth:`defer_on_job` - defer to the operator's trigger for a started job;

    optionally override :meth:`track_job` (record the ARN for on_kill, links, XCom) and
    :meth:`get_job_result`. Then call :meth:`execute_durable` from ``execute``.

    :param durable: find and reuse the job this task instance already started (task state store
        on Airflow 3.3+, plus an identity tag lookup that also covers deferrable mode, older
        Airflow and a crash right after the start call). ``False`` starts a new job on every try.
    """

    durable_job_kind: ClassVar[DurableJobKind]
    external_id_key = "cleanrooms_ml_job"
    #: Bounds of the lookup: pages of the membership listing, and ListTagsForResource calls.
    durable_scan_max_pages: ClassVar[int] = 10
    durable_max_tag_lookups: ClassVar[int] = 25
    #: Attempts of the start call itself (see :meth:`_start_at_most_once`).
    durable_start_attempts: ClassVar[int] = 8
    #: Jobs with another name are considered only if created after the run was queued, minus this.
    durable_clock_slack: ClassVar[timedelta] = timedelta(minutes=10)

    if TYPE_CHECKING:
        membership_identifier: str
        wait_for_completion: bool
        deferrable: bool
        waiter_delay: int
        waiter_max_attempts: int

    @_apply_defaults  # type: ignore[type-var,misc,unused-ignore]
    def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
        if AIRFLOW_V_3_3_PLUS:
            super().__init__(durable=durable, **kwargs)
        else:
            # The compat stand-in forces durable off (it has no store); the tag lookup still works.
            super().__init__(**kwargs)
        self.durable = durable
        self._durable_request: dict[str, Any] | None = None
        self._durable_job: dict[str, Any] | None = None
        self._durable_found_status: str | None = None

    @property
    def _cleanrooms_hook(self) -> CleanRoomsMLHook:
        """The operator's hook (``AwsBaseOperator.hook``), typed."""
        return cast("CleanRoomsMLHook", getattr(self, "hook"))  # noqa: B009 - hook is final upstream

    # ---- to implement in the operator ------------------------------------------------------

    def build_durable_request(self, context: Context) -> dict[str, Any]:
        """Return the validated request (camelCase members); raise before any API call if invalid."""
        raise NotImplementedError

    def defer_on_job(self, job: dict[str, Any], context: Context) -> None:
        """Defer to the trigger that waits for ``job`` (``{"arn", "version"}``)."""
        raise NotImplementedError

    def track_job(self, job: dict[str, Any], context: Context) -> None:
        """Called whenever the task starts or reconnects to ``job`` (e.g. to record it for ``on_kill``)."""

    def _note_job(self, job: dict[str, Any], context: Context) -> None:
        if self._durable_job != job:
            self._durable_job = job
            self.track_job(job, context)

    # ---- entry point -----------------------------------------------------------------------

    def execute_durable(self, context: Context) -> Any:
        """Validate, then start or reconnect; wait (sync or deferred) as the operator is configured."""
        self._durable_request = self.build_durable_request(context)
        if self.deferrable and self.wait_for_completion:
            job, status = self._resume_from_store(context)
            if job is not None and self.resource_kind.is_success(status):
                return self.get_job_result(job, context)
            if job is None:
                job = self._start_or_find(context)
                self._store(context, job)
                # A job found by its identity tag may be ACTIVE already (status from the listing).
                if self.resource_kind.is_success(self._durable_found_status):
                    return self.get_job_result(job, context)
            self.defer_on_job(job, context)
            return None  # pragma: no cover - defer() raises
        if context.get("task_state_store") is None:
            # No store (Airflow < 3.3, or a bare context): the tag lookup in submit_job is the memory.
            job = self.submit_job(context)
            self.poll_until_complete(job, context)
            return self.get_job_result(job, context)
        result = self.execute_resumable(context)
        if result is None and self._durable_job is not None:
            # The mixin returns what poll_until_complete returned when it reconnects (None).
            result = self.get_job_result(self._durable_job, context)
        return result

    # ---- ResumableJobMixin -----------------------------------------------------------------

    @property
    def resource_kind(self) -> ResourceKind:
        return self.durable_job_kind.resource

    def submit_job(self, context: Context) -> Any:
        return self._start_or_find(context)

    def get_job_status(self, external_id: Any, context: Context) -> str:
        job = _as_ref(external_id)
        self._note_job(job, context)
        try:
            state = self._cleanrooms_hook.get_state(
                self.resource_kind,
                self.membership_identifier,
                job["arn"],
                **self._version_kwargs(job),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return NOT_FOUND_STATUS
            raise
        return state.status or NOT_FOUND_STATUS

    def is_job_active(self, status: str) -> bool:
        return self.resource_kind.is_pending(status)

    def is_job_succeeded(self, status: str) -> bool:
        return self.resource_kind.is_success(status)

    def poll_until_complete(self, external_id: Any, context: Context) -> None:
        job = _as_ref(external_id)
        self._note_job(job, context)
        if not self.wait_for_completion:
            return
        self._cleanrooms_hook.wait_for(
            self.resource_kind,
            self.membership_identifier,
            job["arn"],
            waiter_delay=self.waiter_delay,
            waiter_max_attempts=self.waiter_max_attempts,
            **self._version_kwargs(job),
        )

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        job = _as_ref(external_id)
        self._note_job(job, context)
        return job["arn"]

    # ---- start, or find the job this task instance started ---------------------------------

    def _version_kwargs(self, job: Mapping[str, Any]) -> dict[str, Any]:
        if self.durable_job_kind.version_member and job.get("version"):
            return {self.durable_job_kind.version_member: job["version"]}
        return {}

    def _validated_request(self, context: Context) -> dict[str, Any]:
        if self._durable_request is None:
            self._durable_request = self.build_durable_request(context)
        return self._durable_request

    def _resume_from_store(self, context: Context) -> tuple[dict[str, Any] | None, str | None]:
        """Deferrable mode's version of the mixin's resume decision (the store is read, not polled)."""
        if not (self.durable and AIRFLOW_V_3_3_PLUS):
            return None, None
        store = context.get("task_state_store")
        stored = store.get(self.external_id_key) if store is not None else None
        if not stored:
            return None, None
        job = _as_ref(stored)
        status = self.get_job_status(job, context)
        if self.is_job_active(status) or self.is_job_succeeded(status):
            self.log.info("Reconnecting to job %s (%s) from the task state store", job["arn"], status)
            return job, status
        self.log.warning("Stored job %s is %s; starting a fresh one", job["arn"], status)
        return None, None

    def _store(self, context: Context, job: dict[str, Any]) -> None:
        if not (self.durable and AIRFLOW_V_3_3_PLUS):
            return
        store = context.get("task_state_store")
        if store is not None:
            store.set(self.external_id_key, job)

    def _start_or_find(self, context: Context) -> dict[str, Any]:
        request = dict(self._validated_request(context))
        identity = context_identity(context)
        if identity is None:
            # Called outside a task instance (e.g. a unit test's bare context): nothing to find.
            self.log.debug("No task instance identity in the context; starting without the durable lookup")
            job = self._start(context, request)
            self._note_job(job, context)
            return job
        own = self._check_existing(context, request, identity)
        if own is not None:
            self.log.info(
                "Found job %s (%s) started by an earlier try of this task instance; not starting another",
                own.arn,
                own.status,
            )
            job = own.ref()
            self._durable_found_status = own.status
            self._note_job(job, context)
            return job
        if self.durable:
            request["tags"] = self._with_identity_tag(request.get("tags"), identity)
        # Clear what a status check of an older job may have recorded, so on_kill has nothing
        # stale to cancel if the start call fails.
        self._durable_job = None
        self._durable_found_status = None
        if not self.durable:
            job = self._start(context, request)
        else:
            found, job = self._start_at_most_once(context, request, identity)
            if found is not None:
                self._durable_found_status = found.status
                self._note_job(job, context)
                return job
        self.log.info("Started %s %s", self.resource_kind.label, job["arn"])
        self._note_job(job, context)
        return job

    def _start_at_most_once(
        self, context: Context, request: dict[str, Any], identity: str
    ) -> tuple[FoundJob | None, dict[str, Any]]:
        """
        Make the start call, retrying only where that cannot start a second job.

        botocore's own retries are not safe for a start call: the API takes no idempotency token,
        so when an attempt was processed but its answer was lost (read timeout, dropped
        connection, a 5xx after the fact), botocore's next attempt starts a second job. Here each
        attempt is a single call; a throttled attempt (refused, nothing created) is retried after
        botocore's backoff; after any other transient failure the job is looked up by its identity
        tag first and only started again if it is not there.

        :return: ``(found, job)``: ``found`` is set when the job turned out to exist already.
        """
        last: BaseException | None = None
        for attempt in range(1, self.durable_start_attempts + 1):
            if attempt > 1:
                time.sleep(_backoff(attempt - 1))
            try:
                with self._single_attempt_client():
                    return None, self._start(context, request)
            except (ClientError, BotoCoreError) as error:
                last = error
                if _is_throttling(error):
                    self.log.warning("Start call throttled (attempt %s): %s", attempt, error)
                    continue
                if not _is_transient(error):
                    raise
                found = self._find_after_failed_start(context, request, identity, error)
                if found is not None:
                    self.log.warning(
                        "The start call failed (%s), but it had started %s %s; continuing with it",
                        error,
                        self.resource_kind.label,
                        found.arn,
                    )
                    return found, found.ref()
                self.log.warning("Start call failed (attempt %s) and started nothing: %s", attempt, error)
        assert last is not None
        raise last

    @contextlib.contextmanager
    def _single_attempt_client(self) -> Iterator[None]:
        """Make the hook's client make exactly one attempt per call inside this block."""
        hook = self._cleanrooms_hook
        previous = hook.__dict__.get("conn")
        config = hook.config.merge(Config(retries={"total_max_attempts": 1}))
        hook.__dict__["conn"] = hook.get_client_type(region_name=hook.region_name, config=config)
        try:
            yield
        finally:
            if previous is None:
                hook.__dict__.pop("conn", None)
            else:
                hook.__dict__["conn"] = previous

    def _find_after_failed_start(
        self, context: Context, request: Mapping[str, Any], identity: str, error: BaseException
    ) -> FoundJob | None:
        if not self.durable:
            return None
        if isinstance(error, ClientError):
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = error.response.get("Error", {}).get("Code")
            if code != "ConflictException" and status < 500:
                return None  # refused outright: nothing was created
        try:
            return self._check_existing(context, request, identity)
        except (ClientError, BotoCoreError) as lookup_error:
            self.log.warning("Could not look for the job after the failed start call: %s", lookup_error)
            return None

    def _with_identity_tag(self, tags: Any, identity: str) -> dict[str, str]:
        merged = dict(tags or {})
        tag_map_max = shape_limits(service_model().shape_for(TAG_MAP_SHAPE))[1]
        if IDENTITY_TAG_KEY not in merged and tag_map_max is not None and len(merged) >= tag_map_max:
            self.log.warning(
                "tags already has %s entries, the most allowed; not adding the %r identity tag, so a "
                "crash right after the start call cannot be recovered from",
                len(merged),
                IDENTITY_TAG_KEY,
            )
            return merged
        merged[IDENTITY_TAG_KEY] = identity
        return merged

    def _start(self, context: Context, request: dict[str, Any]) -> dict[str, Any]:
        kind = self.durable_job_kind
        method = getattr(self._cleanrooms_hook.conn, xform_name(kind.start_operation))
        response = method(**request)
        version = response.get(kind.version_member) if kind.version_member else None
        return {"arn": response[kind.resource.arn_member], "version": version}

    def _check_existing(self, context: Context, request: Mapping[str, Any], identity: str) -> FoundJob | None:
        """
        Look through the membership's jobs: fail on a name collision, or return this task's own job.

        A running job with the same name is this task's own job if it carries this task instance's
        identity tag, and a collision otherwise. On a retry (try_number > 1, durable) a pending or
        ``ACTIVE`` job with another name but the identity tag is also this task's own (a name
        rendered differently on this try). Failed jobs are never reused.
        """
        ti = context["ti"]
        retry = self.durable and int(getattr(ti, "try_number", 1) or 1) > 1
        name = request.get("name")
        kind = self.resource_kind
        lookups = 0
        own: list[FoundJob] = []
        not_before = self._not_before(context)
        try:
            for job in self._list_jobs():
                same_name = job.name == name
                if same_name and kind.is_pending(job.status):
                    tags = self._tags(job.arn)
                    lookups += 1
                    if tags.get(IDENTITY_TAG_KEY) == identity and self.durable:
                        own.append(job)
                        continue
                    self._collision(request, job, tags.get(IDENTITY_TAG_KEY))
                if not retry or lookups >= self.durable_max_tag_lookups:
                    continue
                if not (kind.is_pending(job.status) or kind.is_success(job.status)):
                    continue
                if not same_name and not self._same_job_shape(job, request):
                    continue
                if not same_name and not_before and job.create_time and job.create_time < not_before:
                    continue
                lookups += 1
                if self._tags(job.arn).get(IDENTITY_TAG_KEY) == identity:
                    own.append(job)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code not in _ACCESS_DENIED_CODES:
                raise
            self.log.warning(
                "Cannot look for an earlier job of this task instance (%s): %s. Grant %s and "
                "ListTagsForResource so a retry after a crash finds its job instead of starting another.",
                code,
                error,
                self.durable_job_kind.list_operation,
            )
            return None
        if not own:
            return None
        # Prefer a job still running, then a finished one; the newest of each.
        own.sort(
            key=lambda j: (
                kind.is_pending(j.status),
                j.create_time or datetime.min.replace(tzinfo=timezone.utc),
            ),
            reverse=True,
        )
        return own[0]

    def _same_job_shape(self, job: FoundJob, request: Mapping[str, Any]) -> bool:
        summary = job.summary
        for member in self.durable_job_kind.match_members:
            if member in request and member in summary and summary[member] != request[member]:
                return False
        return True

    def _not_before(self, context: Context) -> datetime | None:
        dag_run = context.get("dag_run")
        queued = _utc(getattr(dag_run, "queued_at", None)) if dag_run is not None else None
        return queued - self.durable_clock_slack if queued else None

    def _collision(self, request: Mapping[str, Any], job: FoundJob, other_identity: str | None) -> None:
        owner = "another task instance" if other_identity else "a caller outside this task instance"
        issue = ValidationIssue(
            "name",
            f"{request.get('name')!r} is the name of {self.resource_kind.label} {job.arn}, which is "
            f"{job.status} and was started by {owner}; use a name unique to this task run "
            "(e.g. include {{ run_id }} or {{ ti.map_index }})",
        )
        raise CleanRoomsMLRequestError(self.durable_job_kind.start_operation, [issue])

    def _list_jobs(self) -> Iterator[FoundJob]:
        kind = self.durable_job_kind
        method = getattr(self._cleanrooms_hook.conn, xform_name(kind.list_operation))
        result_key = kind.list_result_key
        token: str | None = None
        for _ in range(self.durable_scan_max_pages):
            request: dict[str, Any] = {
                "membershipIdentifier": self.membership_identifier,
                "maxResults": kind.list_page_size,
            }
            if token:
                request["nextToken"] = token
            response = method(**request)
            for summary in response.get(result_key, []):
                yield FoundJob(
                    arn=summary[kind.resource.arn_member],
                    status=summary.get("status"),
                    version=summary.get(kind.version_member) if kind.version_member else None,
                    name=summary.get("name"),
                    create_time=_utc(summary.get("createTime")),
                    summary=summary,
                )
            token = response.get("nextToken")
            if not token:
                return
        self.log.warning(
            "Stopped looking through %s after %s pages", kind.list_operation, self.durable_scan_max_pages
        )

    def _tags(self, arn: str) -> dict[str, str]:
        try:
            return dict(self._cleanrooms_hook.conn.list_tags_for_resource(resourceArn=arn).get("tags") or {})
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return {}
            raise


def _kinds() -> tuple[DurableJobKind, DurableJobKind]:
    from airflow_cleanrooms.hooks.cleanrooms_ml import TRAINED_MODEL, TRAINED_MODEL_INFERENCE_JOB

    inference = DurableJobKind(
        resource=TRAINED_MODEL_INFERENCE_JOB,
        start_operation="StartTrainedModelInferenceJob",
        list_operation="ListTrainedModelInferenceJobs",
        match_members=("trainedModelArn", "trainedModelVersionIdentifier"),
    )
    model = DurableJobKind(
        resource=TRAINED_MODEL,
        start_operation="CreateTrainedModel",
        list_operation="ListTrainedModels",
        version_member="versionIdentifier",
        match_members=("configuredModelAlgorithmAssociationArn",),
    )
    return inference, model


#: What the inference-job operator and the trained-model operator start and list.
INFERENCE_JOB_KIND, TRAINED_MODEL_KIND = _kinds()


class CleanRoomsMLDurableOperatorMixin(CleanRoomsMLDurableJobMixin):
    """
    Durable execution on the seam of the provider's job-starting operators.

    :class:`~airflow_cleanrooms.operators.cleanrooms_ml.CleanRoomsMLBaseOperator` runs
    ``build_request()`` (validate, no call) -> ``start_job(context, request)``
    (the one start call; logs, XCom, console link) -> ``wait_for_job(context, arn)`` (poll or defer,
    cancel on timeout). This mixin keeps those three and puts the durable decision around them:
    list it first among the bases, e.g.
    ``class Op(CleanRoomsMLDurableOperatorMixin, CleanRoomsMLBaseOperator)`` with a ``durable_job_kind``.
    """

    if TYPE_CHECKING:
        kind: ClassVar[ResourceKind]
        _job_arn: str | None

        def build_request(self) -> dict[str, Any]: ...
        def start_job(self, context: Context, request: dict[str, Any]) -> str: ...
        def wait_for_job(self, context: Context, arn: str) -> Any: ...
        def job_result(self, context: Context, arn: str) -> Any: ...

    #: XCom key of a trained model's version (pushed again when a retry reconnects).
    version_xcom_key: ClassVar[str] = "trained_model_version_identifier"

    def execute(self, context: Context) -> Any:
        return self.execute_durable(context)

    def build_durable_request(self, context: Context) -> dict[str, Any]:
        return self.build_request()

    def _start(self, context: Context, request: dict[str, Any]) -> dict[str, Any]:
        arn = self.start_job(context, request)
        version = getattr(self, "_version_identifier", None) if self.durable_job_kind.version_member else None
        return {"arn": arn, "version": version}

    def track_job(self, job: dict[str, Any], context: Context) -> None:
        """Point cancel-on-kill, the trigger, XCom and the console link at ``job`` (also on reconnect)."""
        self._job_arn = job["arn"]
        if self.durable_job_kind.version_member:
            self._version_identifier = job.get("version")
        ti = context["ti"]
        ti.xcom_push(key=self.kind.arn_member_snake, value=job["arn"])
        if self.durable_job_kind.version_member and job.get("version"):
            ti.xcom_push(key=self.version_xcom_key, value=job["version"])
        link = getattr(self, "link", None)
        if link is not None:
            try:
                link.persist(
                    context=context,
                    operator=self,
                    region_name=self._cleanrooms_hook.conn_region_name,
                    aws_partition=self._cleanrooms_hook.conn_partition,
                    arn=job["arn"],
                    membership_id=self.membership_identifier,
                )
            except Exception as error:  # a console link is never worth failing the task for
                self.log.debug("Could not persist the console link: %s", error)

    def poll_until_complete(self, external_id: Any, context: Context) -> None:
        job = _as_ref(external_id)
        self._note_job(job, context)
        if self.wait_for_completion:
            self.wait_for_job(context, job["arn"])

    def defer_on_job(self, job: dict[str, Any], context: Context) -> None:
        self.wait_for_job(context, job["arn"])

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        job = _as_ref(external_id)
        self._note_job(job, context)
        return self.job_result(context, job["arn"])

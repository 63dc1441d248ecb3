"""
How an operator makes its one start call: at most once per task instance, and within the job quotas.

Durable execution (:class:`CleanRoomsMLDurableMixin`)
-----------------------------------------------------

An inference job (or a trained model) costs money and a collaboration's privacy budget, so a task
instance starts at most one per attempt chain and always finds again the one it started:

* **Airflow 3.3+, synchronous waits**: the Task SDK's ``ResumableJobMixin`` persists the job in
  ``task_state_store`` right after the start call. A retry reads it back: a job still running is
  waited on again, an ``ACTIVE`` one makes the task succeed without a new job, and a failed or
  cancelled one is replaced by a fresh start.
* **The crash window.** The mixin documents a gap it cannot close: a worker that dies between the
  start call and the store write leaves nothing behind. Every job started here therefore carries an
  *identity tag* (key :data:`IDENTITY_TAG_KEY`, value a hash of dag_id, task_id, run_id and
  map_index), and before anything is started the hook looks for a job with that tag
  (:meth:`~airflow_cleanrooms.hooks.cleanrooms_ml.CleanRoomsMLHook.find_tagged_job`).
* **Deferrable mode and Airflow < 3.3** have no store-backed polling loop, so the same store check
  (where a store exists) and the same tag lookup run before the start call there.
* **Name collisions.** A job name already taken by a running job of *another* task fails the task
  before any start call, naming the ``name`` argument.
* **The start call itself** makes single attempts (the API takes no idempotency token): see
  :meth:`~airflow_cleanrooms.hooks.cleanrooms_ml.CleanRoomsMLHook.start_at_most_once`.

``durable=False`` turns the store, the tag and the lookup off: every try starts a new job.

Quota-aware starts (:class:`CleanRoomsMLQuotaWaitMixin`)
---------------------------------------------------------

AWS Clean Rooms ML admits a limited number of pending or in-progress jobs per membership and per
account ("AWS Clean Rooms ML quotas": 5 and 10 custom model inference jobs, 5 and 10 training jobs);
a start beyond that is answered ``ServiceQuotaExceededException`` (402, ``quotaName``,
``quotaValue``) and nothing is started. A DAG that maps the operator over a dozen segments meets it
at once. :class:`CleanRoomsMLQuotaWaitMixin` wraps the operator's one start call:

* **refused** -> the task logs the quota and how many of the membership's jobs hold its slots
  (counted from the listing), waits, and calls the start again, until it is admitted;
* **deferrable** -> the wait runs in the triggerer
  (:class:`~airflow_cleanrooms.triggers.cleanrooms_ml.CleanRoomsMLJobQuotaSlotTrigger`), which frees
  the worker slot; the task resumes in :meth:`~CleanRoomsMLQuotaWaitMixin.execute_after_quota_wait`
  at its start call, as the sync wait does (the request is built again, without an API call; the
  durable lookup ran before the first start call and a refused start created nothing), which may be
  refused again and defer again;
* **sync** -> the wait runs in the worker (``time.sleep``);
* checks are ``quota_poll_interval`` apart, shortened at random by up to half, so that tasks refused
  together come back at different times;
* **bounded** -> after ``quota_wait_timeout`` of refusals (counted from the first refusal, across
  deferrals) the task fails with :class:`~airflow_cleanrooms.exceptions.CleanRoomsMLQuotaWaitTimeoutError`
  naming the quota;
* **unreachable** -> a refusal whose ``quotaValue`` is below 1 fails the task at once
  (:class:`~airflow_cleanrooms.exceptions.CleanRoomsMLQuotaUnreachableError`, no retries).

Durable execution is unchanged: a refused start created nothing, and the start after a wait is the
same tagged start (``CleanRoomsMLHook.start_at_most_once``), so a retried or killed waiting task finds
the job it started, if any, and never starts a second.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar, cast

from botocore.exceptions import ClientError

from airflow_cleanrooms.aio.rate_limiter import DEFAULT_MAX_REQUESTS_PER_SECOND
from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_3_PLUS, ResumableJobMixin, say_fallbacks
from airflow_cleanrooms.exceptions import CleanRoomsMLQuotaUnreachableError, CleanRoomsMLQuotaWaitTimeoutError
from airflow_cleanrooms.hooks.cleanrooms_ml import FoundJob, JobRef
from airflow_cleanrooms.service_model import (
    RESERVED_TAG_KEY_PREFIX,
    SERVICE_NAME,
    TAG_MAP_SHAPE,
    service_model,
    shape_limits,
)
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLJobQuotaSlotTrigger
from airflow_cleanrooms.wait_semantics import error_code, error_response, format_duration

try:
    from airflow.sdk.bases.operator import BaseOperatorMeta

    _apply_defaults = BaseOperatorMeta._apply_defaults
except ImportError:  # pragma: no cover - Airflow without the Task SDK

    def _apply_defaults(func: Any) -> Any:
        return func


if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook
    from airflow_cleanrooms.wait_semantics import ResourceKind

#: Tag key carrying the task instance identity. Not ``aws:``-prefixed (reserved), within the
#: model's TagKey length; checked against the model below at import time.
IDENTITY_TAG_KEY = "airflow:task-instance"
NOT_FOUND_STATUS = "NOT_FOUND"


def _tag_limits() -> tuple[int, int, int | None]:
    """(longest tag key, longest tag value, most tags) from the model's ``TagMap``."""
    tag_map = service_model().shape_for(TAG_MAP_SHAPE)
    most = shape_limits(tag_map)[1]
    return (
        int(shape_limits(tag_map.key)[1] or 128),
        int(shape_limits(tag_map.value)[1] or 256),
        int(most) if most is not None else None,
    )


if IDENTITY_TAG_KEY.lower().startswith(RESERVED_TAG_KEY_PREFIX) or len(IDENTITY_TAG_KEY) > _tag_limits()[0]:
    raise RuntimeError(f"identity tag key {IDENTITY_TAG_KEY!r} breaks the model's TagKey rules")


def task_instance_identity(dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """
    The identity tag value of a task instance: a SHA-256 hex digest of its key.

    dag_id, task_id and run_id may each be up to 250 characters, more than a tag value holds, so the
    key is hashed; 64 hex characters fit the model's TagValue limit and any tag character rule.
    """
    key = json.dumps([dag_id, task_id, run_id, -1 if map_index is None else int(map_index)])
    return hashlib.sha256(key.encode()).hexdigest()[: _tag_limits()[1]]


def context_identity(context: Context) -> str | None:
    """The task instance's identity tag value; ``None`` outside a task instance (no dag_id/run_id)."""
    ti = context.get("ti")
    dag_id, task_id, run_id = (getattr(ti, name, None) for name in ("dag_id", "task_id", "run_id"))
    if not (isinstance(dag_id, str) and isinstance(task_id, str) and isinstance(run_id, str)):
        return None
    return task_instance_identity(dag_id, task_id, run_id, getattr(ti, "map_index", -1))


class CleanRoomsMLDurableMixin(ResumableJobMixin):
    """
    Start a Clean Rooms ML job at most once per task instance attempt chain, and find it again.

    Put it first among the bases of a
    :class:`~airflow_cleanrooms.operators.cleanrooms_ml.CleanRoomsMLBaseOperator` subclass whose
    ``kind`` has start and list operations. It replaces ``execute`` and wraps the operator's own
    steps: ``build_request()`` (validate), ``start_job(context, ...)`` (the start call, with the
    identity tag), ``record_job()`` (XCom, link, on_kill), ``wait_for_job()`` (poll or defer) and
    ``job_result()``.

    :param durable: find and reuse the job this task instance already started (task state store
        on Airflow 3.3+, plus an identity tag lookup that also covers deferrable mode, older
        Airflow and a crash right after the start call). ``False`` starts a new job on every try.
    """

    external_id_key = "cleanrooms_ml_job"
    #: Bounds of the lookup: pages of the membership listing, and ListTagsForResource calls.
    durable_scan_max_pages: ClassVar[int] = 10
    durable_max_tag_lookups: ClassVar[int] = 25
    #: Attempts of the start call itself (see ``CleanRoomsMLHook.start_at_most_once``).
    durable_start_attempts: ClassVar[int] = 8
    #: Jobs with another name are considered only if created after the run was queued, minus this.
    durable_clock_slack: ClassVar[timedelta] = timedelta(minutes=10)

    if TYPE_CHECKING:
        kind: ClassVar[ResourceKind]
        request: dict[str, Any]
        deferrable: bool
        wait_for_completion: bool

        def build_request(self) -> dict[str, Any]: ...
        def start_job(
            self, context: Context, request: dict[str, Any], find_started: Any = None
        ) -> JobRef: ...
        def record_job(self, context: Context, job: JobRef) -> None: ...
        def wait_for_job(self, context: Context, job: JobRef) -> Any: ...
        def job_result(self, context: Context, job: JobRef) -> Any: ...
        def get_job_state(self, job: JobRef) -> Any: ...

    @_apply_defaults  # type: ignore[type-var,misc,unused-ignore]
    def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
        if AIRFLOW_V_3_3_PLUS:
            super().__init__(durable=durable, **kwargs)
        else:
            # The compat stand-in forces durable off (it has no store); the tag lookup still works.
            super().__init__(**kwargs)
        self.durable = durable

    def execute(self, context: Context) -> Any:
        """Validate, then start or reconnect; wait (sync or deferred) as the operator is configured."""
        self.build_request()
        say_fallbacks(self.log, durable=self.durable)
        store = self._task_state_store(context)
        if store is not None and not self.deferrable:
            return self.execute_resumable(context)
        job, status = self._resume_from_store(store, context) if store is not None else (None, None)
        if job is None:
            job, status = self._find_or_start(context)
            self._remember(store, job)
        return self._then_wait(context, job, status)

    if not AIRFLOW_V_3_0_PLUS:
        # Airflow 2.11 calls ``execute`` with a safeguard keyword that its operator metaclass unwraps only
        # from an ``execute`` defined in the operator class itself; this one is the mixin's.
        from airflow.models.baseoperator import ExecutorSafeguard

        execute = ExecutorSafeguard().decorator(execute)  # type: ignore[method-assign,unused-ignore]

    def execute_at_start_call(self, context: Context) -> Any:
        """
        Resume at the start call: after a deferred quota wait, the task makes its start call again.

        The request is built again (no API call); the lookup for a job an earlier try started is not
        made again: it ran before this try's first start call, and a refused start starts nothing, so
        the task's durable state is what it was then. The start call itself is the same tagged, at
        most once start.
        """
        self.build_request()
        job, status = self._find_or_start(context, look_first=False)
        self._remember(self._task_state_store(context), job)
        return self._then_wait(context, job, status)

    def _task_state_store(self, context: Context) -> Any:
        return context.get("task_state_store") if self.durable and AIRFLOW_V_3_3_PLUS else None

    def _remember(self, store: Any, job: JobRef) -> None:
        """Keep the job in the task state store (Airflow 3.3+), for a retry to reconnect to."""
        if store is not None:
            store.set(self.external_id_key, job.to_dict())

    def _then_wait(self, context: Context, job: JobRef, status: str | None) -> Any:
        if self.kind.is_success(status):
            return self.job_result(context, job)  # found ACTIVE: nothing to wait for
        return self.wait_for_job(context, job)

    @property
    def _hook(self) -> CleanRoomsMLHook:
        """The operator's hook (``AwsBaseOperator.hook``, final upstream, so not redeclared here)."""
        return cast("CleanRoomsMLHook", getattr(self, "hook"))  # noqa: B009

    # ---- ResumableJobMixin -----------------------------------------------------------------

    def submit_job(self, context: Context) -> Any:
        job, _ = self._find_or_start(context)
        return job.to_dict()

    def get_job_status(self, external_id: Any, context: Context) -> str:
        try:
            state = self.get_job_state(JobRef.from_stored(external_id))
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return NOT_FOUND_STATUS
            raise
        return state.status or NOT_FOUND_STATUS

    def is_job_active(self, status: str) -> bool:
        return self.kind.is_pending(status)

    def is_job_succeeded(self, status: str) -> bool:
        return self.kind.is_success(status)

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        # The mixin returns this value when it reconnects to a running job: the task's result.
        job = JobRef.from_stored(external_id)
        self.record_job(context, job)
        return self.wait_for_job(context, job)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        job = JobRef.from_stored(external_id)
        self.record_job(context, job)
        return self.job_result(context, job)

    # ---- start, or find the job this task instance started ---------------------------------

    def _resume_from_store(self, store: Any, context: Context) -> tuple[JobRef | None, str | None]:
        """Deferrable mode's version of the mixin's resume decision (the store is read, not polled)."""
        stored = store.get(self.external_id_key)
        if not stored:
            return None, None
        job = JobRef.from_stored(stored)
        status = self.get_job_status(stored, context)
        if self.is_job_active(status) or self.is_job_succeeded(status):
            self.log.info("Reconnecting to job %s (%s) from the task state store", job.arn, status)
            self.record_job(context, job)
            return job, status
        self.log.warning("Stored job %s is %s; starting a fresh one", job.arn, status)
        return None, None

    def _find_or_start(self, context: Context, *, look_first: bool = True) -> tuple[JobRef, str | None]:
        """
        The job this task instance already started (and its listed status), or a new one.

        :param look_first: look for the task instance's job before the start call (``False``: only
            after an ambiguous failure of the start call, as always).
        """
        request = dict(self.request)
        identity = context_identity(context)
        if identity is None:
            # Called outside a task instance (no dag_id/run_id in the context): nothing to find.
            self.log.debug("No task instance identity in the context; starting without the durable lookup")
            return self.start_job(context, request), None

        def find() -> FoundJob | None:
            return self._hook.find_tagged_job(
                self.kind,
                request,
                (IDENTITY_TAG_KEY, identity),
                search_other_names=int(getattr(context["ti"], "try_number", 1) or 1) > 1,
                claim=self.durable,
                not_before=self._not_before(context),
                max_pages=self.durable_scan_max_pages,
                max_tag_lookups=self.durable_max_tag_lookups,
            )

        own = find() if look_first else None
        if own is not None:
            self.log.info(
                "Found job %s (%s) started by an earlier try of this task instance; not starting another",
                own.ref.arn,
                own.status,
            )
            self.record_job(context, own.ref)
            return own.ref, own.status
        if not self.durable:
            return self.start_job(context, request), None
        request["tags"] = self._with_identity_tag(request.get("tags"), identity)
        job = self.start_job(context, request, find_started=find)
        return job, None

    def _with_identity_tag(self, tags: Any, identity: str) -> dict[str, str]:
        merged = dict(tags or {})
        most = _tag_limits()[2]
        if IDENTITY_TAG_KEY not in merged and most is not None and len(merged) >= most:
            self.log.warning(
                "tags already has %s entries, the most allowed; not adding the %r identity tag, so a "
                "crash right after the start call cannot be recovered from",
                len(merged),
                IDENTITY_TAG_KEY,
            )
            return merged
        merged[IDENTITY_TAG_KEY] = identity
        return merged

    def _not_before(self, context: Context) -> datetime | None:
        dag_run = context.get("dag_run")
        queued = getattr(dag_run, "queued_at", None) if dag_run is not None else None
        if not isinstance(queued, datetime):
            return None
        queued = queued if queued.tzinfo else queued.replace(tzinfo=timezone.utc)
        return queued - self.durable_clock_slack


# ---- quota-aware starts --------------------------------------------------------------------------

#: The model's error for a start refused by a service quota (HTTP 402, members quotaName, quotaValue).
QUOTA_EXCEEDED_CODE = "ServiceQuotaExceededException"
if QUOTA_EXCEEDED_CODE not in {shape.name for shape in service_model().error_shapes}:  # pragma: no cover
    raise RuntimeError(f"the {SERVICE_NAME} model has no {QUOTA_EXCEEDED_CODE}")


@dataclass(frozen=True)
class QuotaRefusal:
    """
    A start refused by a job quota: AWS's name for the quota and its value (``None`` if not given).

    A job holds a slot of the "pending/in progress" quotas while it is ``CREATE_PENDING`` or
    ``CREATE_IN_PROGRESS``: the statuses its waiter keeps waiting on
    (:meth:`~airflow_cleanrooms.wait_semantics.ResourceKind.is_pending`).
    """

    quota_name: str
    quota_value: float | None
    message: str

    @property
    def reachable(self) -> bool:
        """Whether a slot can ever be free: a quota below 1 admits no job however long one waits."""
        return self.quota_value is None or self.quota_value >= 1

    def describe(self) -> str:
        value = "unknown" if self.quota_value is None else f"{self.quota_value:g}"
        return f"{self.quota_name!r} (quota value {value})"


def quota_refusal(error: BaseException | Mapping[str, Any]) -> QuotaRefusal | None:
    """The quota a start was refused by (``ServiceQuotaExceededException``), or ``None``."""
    if error_code(error) != QUOTA_EXCEEDED_CODE:
        return None
    response = error_response(error)
    body = response.get("Error", {})
    name = response.get("quotaName") or body.get("quotaName") or "a Clean Rooms ML service quota"
    raw_value = response.get("quotaValue", body.get("quotaValue"))
    try:
        value = float(raw_value) if raw_value is not None else None
    except (TypeError, ValueError):
        value = None
    return QuotaRefusal(str(name), value, str(body.get("Message") or response.get("message") or ""))


#: Default bound of a quota wait.
DEFAULT_QUOTA_WAIT_TIMEOUT = timedelta(hours=6)
_RNG = random.Random()


def _seconds(value: Any, name: str) -> float:
    """A duration argument (seconds as a number or a rendered string, or a ``timedelta``) in seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds or a timedelta, not {value!r}") from None
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return seconds


class CleanRoomsMLQuotaWaitMixin:
    """
    Wait for a free slot when a start is refused by a job quota (see the module docstring).

    Put it among the bases of a
    :class:`~airflow_cleanrooms.operators.cleanrooms_ml.CleanRoomsMLBaseOperator` subclass whose
    ``kind`` is listed per membership; its ``start_job`` calls :meth:`start_when_quota_allows`.

    :param quota_wait_timeout: How long a start refused by a job quota
        (``ServiceQuotaExceededException``) keeps waiting for a free slot before the task fails, as
        seconds or a ``timedelta``; ``0`` fails at the first refusal. (default: 6 hours; templated)
    :param quota_poll_interval: Seconds between checks for a free slot while waiting (each check
        comes at a random point in the second half of the interval). (default: 60)
    """

    #: Pages of the membership listing read to count the jobs that hold the slots (for the log).
    quota_count_max_pages: ClassVar[int] = 10

    if TYPE_CHECKING:
        kind: ClassVar[ResourceKind]
        request: dict[str, Any]
        deferrable: bool
        execution_timeout: timedelta | None
        log: Any
        aws_conn_id: str | None
        region_name: str | None
        verify: bool | str | None
        botocore_config: dict[str, Any] | None

        def execute_at_start_call(self, context: Context) -> Any: ...

    @_apply_defaults  # type: ignore[type-var,misc,unused-ignore]
    def __init__(
        self,
        *,
        quota_wait_timeout: float | timedelta | str = DEFAULT_QUOTA_WAIT_TIMEOUT,
        quota_poll_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.quota_wait_timeout = quota_wait_timeout
        self.quota_poll_interval = quota_poll_interval
        #: When the first refusal of this wait happened (epoch seconds), carried across deferrals.
        self._quota_wait_started: float | None = None
        #: Jobs holding the slots as the quota trigger last counted them (a resumed task's first log).
        self._pending_counted: int | None = None

    @property
    def _quota_hook(self) -> CleanRoomsMLHook:
        """The operator's hook (``AwsBaseOperator.hook``, final upstream, so not redeclared here)."""
        return cast("CleanRoomsMLHook", getattr(self, "hook"))  # noqa: B009

    def start_when_quota_allows(self, context: Context, start: Callable[[], JobRef]) -> JobRef:
        """Call ``start`` until no job quota refuses it (wait, or defer, in between), within the bound."""
        while True:
            try:
                return start()
            except ClientError as error:
                refusal = quota_refusal(error)
                if refusal is None:
                    raise
            delay = self._wait_decision(refusal)
            self._log_waiting(refusal, delay)
            if self.deferrable:
                self._defer_for_quota(refusal)
            time.sleep(delay)

    def _wait_decision(self, refusal: QuotaRefusal) -> float:
        """Seconds to wait before the next start, or raise when waiting cannot help or took too long."""
        if not refusal.reachable:
            raise CleanRoomsMLQuotaUnreachableError(
                f"{self.kind.start_operation} was refused by the service quota {refusal.describe()}: no "
                f"{self.kind.label} can start under a quota below 1, however long the task waits. "
                f"Ask for the quota to be raised (Service Quotas console). {refusal.message}".rstrip()
            )
        now = time.time()
        if self._quota_wait_started is None:
            self._quota_wait_started = now
        bound = _seconds(self.quota_wait_timeout, "quota_wait_timeout")
        waited = now - self._quota_wait_started
        if waited >= bound:
            raise CleanRoomsMLQuotaWaitTimeoutError(
                f"{self.kind.start_operation} was still refused by the service quota {refusal.describe()} "
                f"after waiting {format_duration(waited)} for a free slot (quota_wait_timeout="
                f"{format_duration(bound)}); no {self.kind.label} was started. Raise the quota, start "
                "fewer jobs at once, or raise quota_wait_timeout."
            )
        interval = _seconds(self.quota_poll_interval, "quota_poll_interval")
        return min(_RNG.uniform(interval / 2, interval), bound - waited)

    def _log_waiting(self, refusal: QuotaRefusal, delay: float) -> None:
        membership = str(self.request.get("membershipIdentifier") or "")
        holding: str
        if self._pending_counted is not None:  # the quota trigger's count, from the event it fired
            holding, self._pending_counted = str(self._pending_counted), None
        else:
            try:
                holding = str(
                    self._quota_hook.count_pending_jobs(
                        self.kind, membership, max_pages=self.quota_count_max_pages
                    )
                )
            except Exception as error:  # the count is for the log only
                holding = f"an unknown number of (could not list them: {error})"
        self.log.warning(
            "%s refused by the service quota %s: %s %ss are pending or in progress in membership %s. "
            "Waiting for a free slot%s (waited %s of quota_wait_timeout %s).",
            self.kind.start_operation,
            refusal.describe(),
            holding,
            self.kind.label,
            membership,
            " in the triggerer" if self.deferrable else f", next start in {format_duration(delay)}",
            format_duration(time.time() - (self._quota_wait_started or time.time())),
            format_duration(_seconds(self.quota_wait_timeout, "quota_wait_timeout")),
        )

    def _defer_for_quota(self, refusal: QuotaRefusal) -> None:
        started = self._quota_wait_started or time.time()
        bound = _seconds(self.quota_wait_timeout, "quota_wait_timeout")
        interval = _seconds(self.quota_poll_interval, "quota_poll_interval")
        trigger = CleanRoomsMLJobQuotaSlotTrigger(
            resource=self.kind.arn_member_snake,
            membership_identifier=str(self.request.get("membershipIdentifier") or ""),
            quota_name=refusal.quota_name,
            quota_value=refusal.quota_value,
            deadline=started + bound,
            poll_interval=interval,
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            botocore_config=self.botocore_config,
            max_requests_per_second=getattr(self, "max_requests_per_second", DEFAULT_MAX_REQUESTS_PER_SECOND),
        )
        # The trigger fires by the deadline itself; Airflow's deferral timeout is only a backstop.
        timeout = timedelta(seconds=max(0.0, started + bound - time.time()) + interval + 60)
        if self.execution_timeout is not None:
            timeout = min(timeout, self.execution_timeout)
        getattr(self, "defer")(  # noqa: B009 - BaseOperator.defer, not redeclared on the mixin
            trigger=trigger,
            method_name="execute_after_quota_wait",
            kwargs={"quota_wait_started": started},
            timeout=timeout,
        )

    def execute_after_quota_wait(
        self, context: Context, event: dict[str, Any] | None = None, quota_wait_started: float | None = None
    ) -> Any:
        """Resume after the quota trigger fired, at the start call (it may be refused and wait again)."""
        self._quota_wait_started = quota_wait_started
        # The trigger counted the jobs holding the slots a moment ago: a refusal now logs that count
        # instead of listing the membership again (up to quota_count_max_pages pages).
        self._pending_counted = event.get("pending_jobs") if event else None
        if event and event.get("pending_jobs") is not None:
            self.log.info(
                "%s of %r pending or in progress in the membership now; starting again",
                event["pending_jobs"],
                event.get("quota_name"),
            )
        return self.execute_at_start_call(context)

"""
Quota-aware starts: a start refused by a job quota waits for a free slot instead of failing the task.

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

import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, cast

from botocore.exceptions import ClientError

from airflow_cleanrooms.aio.rate_limiter import DEFAULT_MAX_REQUESTS_PER_SECOND
from airflow_cleanrooms.exceptions import CleanRoomsMLQuotaUnreachableError, CleanRoomsMLQuotaWaitTimeoutError
from airflow_cleanrooms.operators.durable import _apply_defaults
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLJobQuotaSlotTrigger
from airflow_cleanrooms.wait_semantics import QuotaRefusal, format_duration, quota_refusal

if TYPE_CHECKING:
    from airflow.sdk.definitions.context import Context

    from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook, JobRef
    from airflow_cleanrooms.wait_semantics import ResourceKind

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
        try:
            holding: str = str(
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
        if event and event.get("pending_jobs") is not None:
            self.log.info(
                "%s of %r pending or in progress in the membership now; starting again",
                event["pending_jobs"],
                event.get("quota_name"),
            )
        return self.execute_at_start_call(context)

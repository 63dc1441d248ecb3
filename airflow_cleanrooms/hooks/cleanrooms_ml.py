"""Hook for AWS Clean Rooms ML (boto3 client ``cleanroomsml``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import ExponentialBackoff, RetryContext

from airflow_cleanrooms.exceptions import (
    CleanRoomsMLJobFailedError,
    CleanRoomsMLRequestError,
    CleanRoomsMLWaitTimeoutError,
)
from airflow_cleanrooms.service_model import SERVICE_NAME, ValidationIssue
from airflow_cleanrooms.wait_semantics import (
    WAITERS_FILE,
    ResourceKind,
    ResourceState,
    count_poll,
    error_code,
    format_duration,
    is_throttling,
    is_transient,
    judge_poll,
    load_waiter_config,
    log_final_state,
    waiter_acceptors,
)

if TYPE_CHECKING:
    from mypy_boto3_cleanroomsml import CleanRoomsMLClient  # the "typing" extra

#: Retries of the hook's clients when the connection's botocore config sets none: botocore's adaptive
#: mode retries throttling (and 5xx, dropped connections) with backoff and, once throttled, paces
#: the client's requests with its own client-side rate limiter. Start calls never use it
#: (:attr:`CleanRoomsMLHook.single_attempt_conn`); the triggers' pooled clients keep their own
#: retries and share the triggerer's rate limiter (``airflow_cleanrooms.aio.rate_limiter``).
SYNC_RETRIES: dict[str, Any] = {"mode": "adaptive", "total_max_attempts": 10}

_ACCESS_DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})


def start_backoff(retry: int) -> float:
    """botocore's standard-mode backoff (jittered exponential, capped) before a start call's ``retry``."""
    return float(ExponentialBackoff().delay_amount(RetryContext(attempt_number=retry)))


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class JobRef:
    """A started job: its ARN and, for trained models, its version. Stored as ``{"arn", "version"}``."""

    arn: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"arn": self.arn, "version": self.version}

    @classmethod
    def from_stored(cls, value: Any) -> JobRef:
        """Stored refs are ``{"arn": ..., "version": ...}``; a bare ARN string is accepted too."""
        if isinstance(value, Mapping):
            return cls(str(value["arn"]), value.get("version"))
        return cls(str(value))


@dataclass(frozen=True)
class FoundJob:
    """A job seen in a membership's listing: its ref, status, name and creation time."""

    ref: JobRef
    status: str | None
    name: str | None = None
    create_time: datetime | None = None
    summary: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


class CleanRoomsMLHook(AwsBaseHook):
    """
    Interact with AWS Clean Rooms ML.

    A thin wrapper around :external+boto3:py:class:`boto3.client("cleanroomsml") <CleanRoomsML.Client>`
    with the provider's custom waiters (botocore ships none for this service) and the helpers the
    operators, sensors and triggers share: start a job at most once, find a task's job again, read,
    cancel and wait.

    Additional arguments (such as ``aws_conn_id``) may be specified and are passed down to the
    underlying :class:`~airflow.providers.amazon.aws.hooks.base_aws.AwsBaseHook`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = SERVICE_NAME
        super().__init__(*args, **kwargs)

    if TYPE_CHECKING:

        @property
        def conn(self) -> CleanRoomsMLClient:  # type: ignore[override]
            """The ``cleanroomsml`` client, typed with ``mypy-boto3-cleanroomsml`` (the ``typing`` extra)."""
            ...

    @functools.cached_property
    def waiter_path(self) -> Path | None:  # type: ignore[override]
        """The package's own waiter definitions (``airflow_cleanrooms/waiters/cleanroomsml.json``)."""
        return WAITERS_FILE if WAITERS_FILE.exists() else None

    def _get_config(self, config: Config | None = None) -> Config:
        """The botocore config of the hook's clients: :data:`SYNC_RETRIES` unless retries are set."""
        config = super()._get_config(config)
        if "retries" not in getattr(config, "_user_provided_options", {}):
            config = config.merge(Config(retries=dict(SYNC_RETRIES)))
        return config

    @functools.cached_property
    def single_attempt_conn(self) -> Any:
        """A client whose calls make exactly one attempt (botocore retries nothing): for start calls."""
        config = self.config.merge(Config(retries={"total_max_attempts": 1}))
        return self.get_client_type(region_name=self.region_name, config=config)

    # ---- starting things -------------------------------------------------------------------

    def start(self, kind: ResourceKind, request: dict[str, Any], *, client: Any = None) -> JobRef:
        """Call the kind's start operation (``StartTrainedModelInferenceJob``, ...) with a valid request."""
        assert kind.start_operation is not None, f"a {kind.label} is not started by this provider"
        response = getattr(client or self.conn, xform_name(kind.start_operation))(**request)
        version = response.get(kind.version_member) if kind.version_member else None
        return JobRef(response[kind.arn_member], version)

    def start_at_most_once(
        self,
        kind: ResourceKind,
        request: dict[str, Any],
        *,
        find_started: Callable[[], FoundJob | None],
        attempts: int = 8,
    ) -> tuple[JobRef, FoundJob | None]:
        """
        Make the start call, retrying only where that cannot start a second job.

        botocore's own retries are not safe for a start call: the API takes no idempotency token,
        so when an attempt was processed but its answer was lost (read timeout, dropped
        connection, a 5xx after the fact), botocore's next attempt starts a second job. Here each
        attempt is a single call; a throttled attempt (refused, nothing created) is retried after
        botocore's backoff; after any other transient failure (or a conflict a lost first attempt
        may explain) ``find_started`` looks for the job first, and it is started again only if it
        is not there.

        :return: ``(job, found)``: ``found`` is set when the job turned out to exist already.
        """
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                time.sleep(start_backoff(attempt - 1))
            try:
                return self.start(kind, request, client=self.single_attempt_conn), None
            except (ClientError, BotoCoreError) as error:
                last = error
                if is_throttling(error):
                    self.log.warning("Start call throttled (attempt %s): %s", attempt, error)
                    continue
                if not (is_transient(error) or error_code(error) == "ConflictException"):
                    raise
                try:
                    found = find_started()
                except (ClientError, BotoCoreError) as lookup_error:
                    self.log.warning(
                        "Could not look for the job after the failed start call: %s", lookup_error
                    )
                    found = None
                if found is not None:
                    self.log.warning(
                        "The start call failed (%s), but it had started %s %s; continuing with it",
                        error,
                        kind.label,
                        found.ref.arn,
                    )
                    return found.ref, found
                self.log.warning("Start call failed (attempt %s) and started nothing: %s", attempt, error)
        assert last is not None
        raise last

    # ---- finding a task's job again --------------------------------------------------------

    def list_jobs(
        self, kind: ResourceKind, membership_identifier: str, *, max_pages: int
    ) -> Iterator[FoundJob]:
        """The membership's jobs of ``kind`` as the service lists them, at most ``max_pages`` pages."""
        assert kind.list_operation is not None
        method = getattr(self.conn, xform_name(kind.list_operation))
        token: str | None = None
        for _ in range(max_pages):
            request: dict[str, Any] = {
                "membershipIdentifier": membership_identifier,
                "maxResults": kind.list_page_size,
            }
            if token:
                request["nextToken"] = token
            response = method(**request)
            for summary in response.get(kind.list_result_key, []):
                yield FoundJob(
                    ref=JobRef(
                        summary[kind.arn_member],
                        summary.get(kind.version_member) if kind.version_member else None,
                    ),
                    status=summary.get("status"),
                    name=summary.get("name"),
                    create_time=_utc(summary.get("createTime")),
                    summary=summary,
                )
            token = response.get("nextToken")
            if not token:
                return
        self.log.warning("Stopped looking through %s after %s pages", kind.list_operation, max_pages)

    def count_pending_jobs(
        self, kind: ResourceKind, membership_identifier: str, *, max_pages: int = 10
    ) -> int:
        """
        How many of the membership's jobs of ``kind`` hold a slot of its job quotas (pending or in progress).

        Counted from the listing (at most ``max_pages`` pages), so the count is a lower bound when
        the membership lists more jobs than that.
        """
        return sum(
            1
            for job in self.list_jobs(kind, membership_identifier, max_pages=max_pages)
            if kind.is_pending(job.status)
        )

    def tags(self, arn: str) -> dict[str, str]:
        """A resource's tags (``{}`` if it is gone)."""
        try:
            return dict(self.conn.list_tags_for_resource(resourceArn=arn).get("tags") or {})
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return {}
            raise

    def default_output_location(self, membership_identifier: str) -> str | None:
        """
        The S3 URI a membership's ML configuration sends results to (``GetMLConfiguration``).

        ``None`` when the membership has no ML configuration or this caller may not read it: lineage
        then names the job itself as the output.
        """
        try:
            config = self.conn.get_ml_configuration(membershipIdentifier=membership_identifier)
        except ClientError as error:
            if error_code(error) in ("ResourceNotFoundException", "AccessDeniedException"):
                self.log.info(
                    "No ML configuration readable for membership %s: %s", membership_identifier, error
                )
                return None
            raise
        destination: Mapping[str, Any] = (config.get("defaultOutputLocation") or {}).get("destination") or {}
        uri = (destination.get("s3Destination") or {}).get("s3Uri")
        return str(uri) if uri else None

    def find_tagged_job(
        self,
        kind: ResourceKind,
        request: Mapping[str, Any],
        tag: tuple[str, str],
        *,
        search_other_names: bool,
        claim: bool = True,
        not_before: datetime | None = None,
        max_pages: int = 10,
        max_tag_lookups: int = 25,
    ) -> FoundJob | None:
        """
        Find the job ``request`` started that carries ``tag``; fail on a name held by someone else's job.

        A running job with the request's name is the caller's own if it carries ``tag``, and a
        name collision otherwise (:class:`~airflow_cleanrooms.exceptions.CleanRoomsMLRequestError`
        naming ``name``, before anything is started). With ``search_other_names`` (a retry: the name
        may have rendered differently), a pending or ``ACTIVE`` job with another name but the same
        ``kind.match_members`` and ``tag`` is the caller's own too, if created after ``not_before``.
        Failed jobs are never returned. With ``claim=False`` no job is the caller's own (every running
        job with the request's name is a collision). A caller not allowed to list or read tags gets
        ``None`` and a warning. Prefers a running job, then the newest.
        """
        key, value = tag
        name = request.get("name")
        lookups = 0
        own: list[FoundJob] = []
        try:
            for job in self.list_jobs(kind, str(request["membershipIdentifier"]), max_pages=max_pages):
                same_name = job.name == name
                if same_name and kind.is_pending(job.status):
                    tags = self.tags(job.ref.arn)
                    lookups += 1
                    if claim and tags.get(key) == value:
                        own.append(job)
                        continue
                    _name_collision(kind, request, job, other_caller_tagged=key in tags)
                if not (claim and search_other_names) or lookups >= max_tag_lookups:
                    continue
                if not (kind.is_pending(job.status) or kind.is_success(job.status)):
                    continue
                if not same_name and not _same_shape(kind, job, request):
                    continue
                if not same_name and not_before and job.create_time and job.create_time < not_before:
                    continue
                lookups += 1
                if self.tags(job.ref.arn).get(key) == value:
                    own.append(job)
        except ClientError as error:
            if error_code(error) not in _ACCESS_DENIED_CODES:
                raise
            self.log.warning(
                "Cannot look for an earlier job of this task instance (%s): %s. Grant %s and "
                "ListTagsForResource so a retry after a crash finds its job instead of starting another.",
                error_code(error),
                error,
                kind.list_operation,
            )
            return None
        if not own:
            return None
        oldest = datetime.min.replace(tzinfo=timezone.utc)
        return max(own, key=lambda j: (kind.is_pending(j.status), j.create_time or oldest))

    # ---- reading state ---------------------------------------------------------------------

    def describe(
        self, kind: ResourceKind, membership_identifier: str, arn: str, **extra: Any
    ) -> dict[str, Any]:
        """Call the resource's Get operation and return the response."""
        method = getattr(self.conn, xform_name(kind.get_operation))
        return method(**kind.request(membership_identifier, arn, **extra))

    def get_state(
        self, kind: ResourceKind, membership_identifier: str, arn: str, **extra: Any
    ) -> ResourceState:
        """Read a resource's status and ``statusDetails``."""
        return ResourceState.from_response(self.describe(kind, membership_identifier, arn, **extra))

    # ---- cancelling ------------------------------------------------------------------------

    def cancel(self, kind: ResourceKind, membership_identifier: str, arn: str, **extra: Any) -> None:
        """Call the resource's Cancel operation (e.g. ``CancelTrainedModelInferenceJob``)."""
        if kind.cancel_operation is None:
            raise ValueError(f"A {kind.label} cannot be cancelled")
        method = getattr(self.conn, xform_name(kind.cancel_operation))
        method(**kind.request(membership_identifier, arn, **extra))

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
        on_poll: Callable[[ResourceState, bool], None] | None = None,
        **extra: Any,
    ) -> ResourceState:
        """
        Poll a resource until its waiter accepts it; log each status change with the time spent.

        Each response is matched against the same waiter acceptors the triggers use
        (:mod:`airflow_cleanrooms.wait_semantics`). Transient API errors (throttling, 5xx, dropped
        connections) are retried by botocore first (adaptive mode, :data:`SYNC_RETRIES`: throttling
        also slows the client down); on top of that a streak of up to
        ``max_error_streak`` failed reads is tolerated without using up attempts, and a throttled
        read never ends the wait (many workers' waits share the account's rate). Any other error
        is raised as is. ``on_poll(state, ended)`` is called after each read (container log
        streaming), ``ended`` on the last one, before the final state block is logged.

        :return: the final state (status ``ACTIVE``).
        :raises CleanRoomsMLJobFailedError: the resource reached a failure status.
        :raises CleanRoomsMLWaitTimeoutError: ``waiter_max_attempts`` reads without a final status.
        """
        acceptors = waiter_acceptors(load_waiter_config(self, kind.waiter_name))
        started = time.monotonic()
        last_status: str | None = None
        attempts = streak = 0
        bounds = {"max_attempts": waiter_max_attempts, "max_transient": max_error_streak}
        while True:
            try:
                state = self.get_state(kind, membership_identifier, arn, **extra)
            except Exception as error:
                # judge_poll raises what is neither an error response nor transient
                verdict = judge_poll(acceptors, error)
                attempts, streak, ends = count_poll(verdict, attempts, streak, **bounds)
                if verdict.state != "transient" or ends is not None:
                    raise
                if verdict.throttled:
                    self.log.info("Reading %s %s was throttled (%s); retrying", kind.label, arn, error)
                else:
                    self.log.warning(
                        "Reading %s %s failed (%s); retrying (%d/%d)",
                        kind.label,
                        arn,
                        error,
                        streak,
                        max_error_streak,
                    )
                time.sleep(waiter_delay)
                continue
            verdict = judge_poll(acceptors, state.response)
            attempts, streak, ends = count_poll(verdict, attempts, streak, **bounds)
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
            ended = verdict.state in ("success", "failure")
            if on_poll is not None:
                on_poll(state, ended)
            if ended:
                log_final_state(kind, arn, state.final_fields(kind), self.log)
            if verdict.state == "success":
                return state
            if verdict.state == "failure":
                raise CleanRoomsMLJobFailedError(kind.label, arn, state.status, state.status_details)
            if ends is not None:
                raise CleanRoomsMLWaitTimeoutError(
                    f"{kind.label.capitalize()} {arn} is still {state.status} after {attempts} checks "
                    f"({format_duration(time.monotonic() - started)}); waiter_max_attempts reached"
                )
            time.sleep(waiter_delay)


def _same_shape(kind: ResourceKind, job: FoundJob, request: Mapping[str, Any]) -> bool:
    """Whether a listed job shares the request's ``kind.match_members`` (where both have them)."""
    summary = job.summary
    return all(
        not (member in request and member in summary) or summary[member] == request[member]
        for member in kind.match_members
    )


def _name_collision(
    kind: ResourceKind, request: Mapping[str, Any], job: FoundJob, *, other_caller_tagged: bool
) -> None:
    owner = "another task instance" if other_caller_tagged else "a caller outside this task instance"
    issue = ValidationIssue(
        "name",
        f"{request.get('name')!r} is the name of {kind.label} {job.ref.arn}, which is {job.status} and "
        f"was started by {owner}; use a name unique to this task run "
        "(e.g. include {{ run_id }} or {{ ti.map_index }})",
    )
    raise CleanRoomsMLRequestError(str(kind.start_operation), [issue])

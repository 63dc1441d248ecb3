"""
Container logs of Clean Rooms ML jobs: where they are, and streaming them into the task log.

Clean Rooms ML sends what a job's model container writes to stdout/stderr (when the configured model
algorithm association's privacy configuration allows it) to CloudWatch Logs, in
``/aws/cleanroomsml/TrainedModelInferenceJobs`` or ``/aws/cleanroomsml/TrainedModels``
(:data:`LOG_GROUPS`). AWS does not document how the streams are named, so a job's streams are found
by a prefix, by default the job's id (the last segment of its ARN, :func:`default_stream_prefix`),
which a task can override (``log_stream_prefix``); the task log says which streams were followed, or
clearly that none were found.

With ``print_log=True`` (the amazon provider's SageMaker training/transform operators' name for the
same thing) new events of those streams go to the task log while the job runs, in order and without
repeats:

* **sync** (operator polling, sensor in poke mode): :class:`ContainerLogStreamer` on the ``logs``
  client of the amazon provider's :class:`~airflow.providers.amazon.aws.hooks.logs.AwsLogsHook`
  (the task's connection), once per status poll and once more when the wait ends;
* **deferrable**: :class:`TriggerLogStreamer`, in the trigger: a ``logs`` client leased from the
  loop's shared client pool (no client per wait), its calls made through the loop's poll scheduler
  (bounded calls at once, calls on the pool's threads: nothing blocks the event loop), at the trigger's
  ``waiter_delay``, and once more when the wait ends. Airflow 3 shows trigger logs in the task log.

Both share :class:`LogFollower`, the one cursor: which streams, which tokens, what is new, and the
paging rule of a read (:meth:`LogFollower.read`, without I/O; :func:`read_logs` and
:func:`read_logs_async` make its calls). Every line goes
through the task's (or trigger's) logger, so values the secrets masker knows are shown as ``***``.
Streaming never fails the wait: a Logs error is logged once and streaming stops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

from airflow_cleanrooms.aio.client_pool import SharedClientPool
from airflow_cleanrooms.aio.poll_scheduler import Finished, PollScheduler
from airflow_cleanrooms.compat import mask_secret, redact_message
from airflow_cleanrooms.wait_semantics import (
    TRAINED_MODEL,
    TRAINED_MODEL_INFERENCE_JOB,
    ResourceKind,
    ResourceState,
    error_code,
    is_throttling,
)

if TYPE_CHECKING:
    from datetime import datetime

#: The log group each kind's container writes to.
LOG_GROUPS: dict[ResourceKind, str] = {
    TRAINED_MODEL_INFERENCE_JOB: "/aws/cleanroomsml/TrainedModelInferenceJobs",
    TRAINED_MODEL: "/aws/cleanroomsml/TrainedModels",
}
#: Events read from one stream in one poll at most (``GetLogEvents`` pages of up to 10,000 events).
MAX_PAGES_PER_POLL = 10
#: Once streams are known, look for new ones (``DescribeLogStreams``: 5 requests/s per account on
#: AWS) every this many polls, and at the end.
REDISCOVER_EVERY = 5


def log_group(kind: ResourceKind) -> str | None:
    """The CloudWatch log group of a kind's container logs (``None``: it has no container)."""
    return LOG_GROUPS.get(kind)


def default_stream_prefix(arn: str) -> str:
    """The job's id, the last segment of its ARN: the prefix its streams are found by by default."""
    return arn.rsplit("/", 1)[-1]


def _millis(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value is not None else 0


@dataclasses.dataclass
class Fetched:
    """One read of the streams, not yet applied: new streams; per stream its events and next token."""

    new_streams: list[str]
    events: dict[str, tuple[list[dict[str, Any]], str | None]]
    error: str | None = None


class LogFollower:
    """
    Following one job's streams, without I/O: requests to make, and what their answers add.

    :param group: the log group.
    :param prefix: the stream name prefix.
    :param start_time_ms: events before this (the job's creation) are not the job's.
    """

    def __init__(self, group: str, prefix: str, start_time_ms: int = 0) -> None:
        self.group = group
        self.prefix = prefix
        self.start_time_ms = start_time_ms
        self.tokens: dict[str, AwsLogsHook.ContinuationToken] = {}
        self.polls = 0
        self.lines = 0
        self.stopped = False

    @property
    def streams(self) -> list[str]:
        return list(self.tokens)

    def should_describe(self, final: bool) -> bool:
        return final or not self.tokens or self.polls % REDISCOVER_EVERY == 0

    def describe_request(self) -> dict[str, Any]:
        return {"logGroupName": self.group, "logStreamNamePrefix": self.prefix}

    def new_streams(self, response: Mapping[str, Any]) -> list[str]:
        """Streams of a ``DescribeLogStreams`` answer, not followed yet, with events since the job began."""
        found = []
        for stream in response.get("logStreams") or []:
            name = stream.get("logStreamName")
            if not name or name in self.tokens:
                continue
            last = stream.get("lastEventTimestamp")
            if last is not None and last < self.start_time_ms:
                continue  # an earlier job's stream (e.g. an earlier version of a trained model)
            found.append(name)
        return sorted(found)

    def events_request(self, stream: str, token: str | None) -> dict[str, Any]:
        """As ``AwsLogsHook.get_log_events`` asks: from the start time, or on from the token."""
        request: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream, "startFromHead": True}
        if token is None:
            request["startTime"] = self.start_time_ms
        else:
            request["nextToken"] = token
        return request

    def token(self, stream: str) -> str | None:
        holder = self.tokens.get(stream)
        return holder.value if holder is not None else None

    def follow(self, streams: Iterable[str]) -> list[str]:
        added = [s for s in streams if s not in self.tokens]
        for stream in added:
            self.tokens[stream] = AwsLogsHook.ContinuationToken()
        return added

    def read(self, final: bool = False) -> Generator[tuple[str, dict[str, Any]], Any, Fetched]:
        """
        One read of the job's streams, without I/O: the one paging rule of both streamers.

        A generator that yields ``(operation, request)`` calls of the ``logs`` client and is sent
        each answer (or thrown the error the call raised), and returns what the read found:
        ``DescribeLogStreams`` when due (a missing log group is no streams yet), then ``GetLogEvents``
        per stream from its token, page after page until a page is empty or the token stops moving,
        at most :data:`MAX_PAGES_PER_POLL` pages. It changes nothing here (a poll scheduler may drop
        an outcome): :meth:`apply` takes the result into account. :func:`read_logs` and
        :func:`read_logs_async` drive it.
        """
        new: list[str] = []
        if self.should_describe(final):
            try:
                response = yield "describe_log_streams", self.describe_request()
            except Exception as error:
                if not _not_found(error):
                    raise
                response = {}
            new = self.new_streams(response)
        events: dict[str, tuple[list[dict[str, Any]], str | None]] = {}
        for stream in [*self.streams, *new]:
            token = self.token(stream)
            collected: list[dict[str, Any]] = []
            for _ in range(MAX_PAGES_PER_POLL):
                page = yield "get_log_events", self.events_request(stream, token)
                batch = page.get("events") or []
                collected += batch
                next_token = page.get("nextForwardToken")
                done = next_token == token or not batch
                token = next_token
                if done:
                    break
            events[stream] = (collected, token)
        return Fetched(new, events)

    def apply(self, fetched: Fetched) -> list[tuple[str, dict[str, Any]]]:
        """Take a read into account; return its events in time order (stream order on a tie)."""
        self.follow(fetched.new_streams)
        merged: list[tuple[int, int, str, dict[str, Any]]] = []
        order = {name: i for i, name in enumerate(self.tokens)}
        for stream, (events, token) in fetched.events.items():
            holder = self.tokens.setdefault(stream, AwsLogsHook.ContinuationToken())
            holder.value = token
            for index, event in enumerate(events):
                merged.append(
                    (
                        int(event.get("timestamp") or 0),
                        order.get(stream, 0) * 1_000_000 + index,
                        stream,
                        event,
                    )
                )
        merged.sort(key=lambda item: (item[0], item[1]))
        self.lines += len(merged)
        return [(stream, event) for _, _, stream, event in merged]


class _Reporter:
    """What streaming says in the task log (the task's or the trigger's logger)."""

    def __init__(self, follower: LogFollower, log: Any, label: str) -> None:
        self.follower = follower
        self.log = log
        self.label = label
        self.single = True

    def started(self) -> None:
        self.log.info(
            "Streaming the %s's container logs: log group %s, streams starting with %r",
            self.label,
            self.follower.group,
            self.follower.prefix,
        )

    def new_streams(self, streams: list[str]) -> None:
        if streams:
            self.log.info("Following log stream%s: %s", "s" if len(streams) > 1 else "", ", ".join(streams))
        self.single = len(self.follower.tokens) <= 1

    def events(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for stream, event in events:
            # Through the task's (trigger's) logger, so the log pipeline's masker applies; and redacted
            # here too, for pipelines that do not mask (dag.test) or a triggerer that did not
            # register the task's secrets.
            message = redact_message(str(event.get("message", "")).rstrip("\n"))
            if self.single:
                self.log.info("[container] %s", message)
            else:
                self.log.info("[container %s] %s", stream, message)

    def error(self, error: BaseException | str) -> None:
        self.follower.stopped = True
        self.log.warning(
            "Could not read the container logs from %s (%s); streaming stopped, the wait goes on",
            self.follower.group,
            error,
        )

    def finished(self) -> None:
        follower = self.follower
        if not follower.tokens:
            self.log.warning(
                "No container log streams found in %s starting with %r: the job published no logs "
                "there (see logsStatus above/below), or its streams are named otherwise "
                "(set log_stream_prefix).",
                follower.group,
                follower.prefix,
            )
        else:
            self.log.info(
                "Container logs: %d line%s from %d stream%s (%s)",
                follower.lines,
                "" if follower.lines == 1 else "s",
                len(follower.tokens),
                "" if len(follower.tokens) == 1 else "s",
                ", ".join(follower.tokens),
            )


def _not_found(error: BaseException) -> bool:
    return error_code(error) == "ResourceNotFoundException"


class ContainerLogStreamer:
    """
    Sync streaming with the amazon provider's ``AwsLogsHook`` (see the module docstring).

    Call :meth:`poll` after each status read and :meth:`finish` when the wait ends.

    :param hook: an ``AwsLogsHook`` on the task's AWS connection.
    :param kind: what is waited on (its log group).
    :param arn: the job's ARN.
    :param log: the task's logger.
    :param stream_prefix: streams to follow (default: the job's id).
    :param create_time: the job's creation time (earlier events are not the job's).
    """

    def __init__(
        self,
        hook: AwsLogsHook,
        kind: ResourceKind,
        arn: str,
        log: Any,
        stream_prefix: str | None = None,
        create_time: datetime | None = None,
    ) -> None:
        group = log_group(kind)
        assert group is not None, f"a {kind.label} has no container logs"
        self.hook = hook
        self.follower = LogFollower(group, stream_prefix or default_stream_prefix(arn), _millis(create_time))
        self.reporter = _Reporter(self.follower, log, kind.label)
        self._started = False

    def set_create_time(self, create_time: datetime | None) -> None:
        if create_time is not None and not self.follower.tokens:
            self.follower.start_time_ms = _millis(create_time)

    def on_poll(self, state: ResourceState, ended: bool) -> None:
        """``CleanRoomsMLHook.wait_for``'s ``on_poll``: stream after each read; at the end, finish."""
        if not self._started:
            self.set_create_time(state.create_time)
        if ended:
            self.finish()
        else:
            self.poll()

    def poll(self, final: bool = False) -> None:
        """Log what the job's streams got since the last poll."""
        follower = self.follower
        if follower.stopped:
            return
        if not self._started:
            self._started = True
            self.reporter.started()
        try:
            fetched = read_logs(self.hook.conn, follower.read(final))
            follower.polls += 1
            self.reporter.new_streams(follower.follow(fetched.new_streams))
            self.reporter.events(follower.apply(fetched))
        except Exception as error:
            self.reporter.error(error)

    def finish(self) -> None:
        """The wait ended: read what is left, and say what was followed."""
        if self.follower.stopped:
            return
        self.poll(final=True)
        if not self.follower.stopped:
            self.reporter.finished()


def read_logs(client: Any, reading: Generator[tuple[str, dict[str, Any]], Any, Fetched]) -> Fetched:
    """Drive :meth:`LogFollower.read` with a (boto3) ``logs`` client."""
    try:
        operation, request = next(reading)
        while True:
            try:
                answer = getattr(client, operation)(**request)
            except Exception as error:
                operation, request = reading.throw(error)
            else:
                operation, request = reading.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def read_logs_async(
    client: Any, reading: Generator[tuple[str, dict[str, Any]], Any, Fetched]
) -> Fetched:
    """Drive :meth:`LogFollower.read` with an async ``logs`` client (the shared pool's)."""
    try:
        operation, request = next(reading)
        while True:
            try:
                answer = await getattr(client, operation)(**request)
            except Exception as error:
                operation, request = reading.throw(error)
            else:
                operation, request = reading.send(answer)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class TriggerLogStreamer:
    """
    Deferrable streaming, in the trigger (see the module docstring).

    ``await streamer.stream(wait)`` runs the trigger's status wait ``wait`` (a coroutine) and, beside
    it, reads the job's streams every ``interval`` seconds through the loop's poll scheduler, on a
    ``logs`` client leased from the loop's shared client pool; when ``wait`` is done, a last read,
    then its result is returned. Lines are logged by the trigger's logger, in the trigger's context.
    """

    def __init__(
        self,
        kind: ResourceKind,
        arn: str,
        log: Any,
        hook_parameters: Mapping[str, Any],
        interval: float,
        stream_prefix: str | None = None,
        start_time_ms: int = 0,
        mask_values: Iterable[str] = (),
        max_requests_per_second: float | None = None,
    ) -> None:
        group = log_group(kind)
        assert group is not None, f"a {kind.label} has no container logs"
        self.follower = LogFollower(group, stream_prefix or default_stream_prefix(arn), start_time_ms)
        self.reporter = _Reporter(self.follower, log, kind.label)
        self.hook_parameters = dict(hook_parameters)
        self.interval = float(interval)
        self.mask_values = list(mask_values)
        self.max_requests_per_second = max_requests_per_second

    def _register_masks(self) -> None:
        """The task's secrets, known to this (triggerer) process's masker from now on."""
        if not self.mask_values:
            return
        for value in self.mask_values:
            mask_secret(value)

    def _hook(self) -> AwsLogsHook:
        return AwsLogsHook(**self.hook_parameters)

    def _step(self, outcome: Any) -> Any:
        if isinstance(outcome, BaseException):
            self.reporter.error(outcome)
            return Finished(None)
        self.follower.polls += 1
        self.reporter.new_streams(self.follower.follow(outcome.new_streams))
        self.reporter.events(self.follower.apply(outcome))
        return self.interval

    async def stream(self, wait: Any) -> Any:
        pool = SharedClientPool.for_running_loop()
        scheduler = PollScheduler.for_running_loop()
        self._register_masks()
        try:
            entry = await pool.acquire(self._hook())
        except Exception as error:
            self.reporter.error(error)
            return await wait
        try:
            self.reporter.started()
            follower = self.follower
            client = entry.client

            async def read(**_: Any) -> Fetched:
                return await read_logs_async(client, follower.read())

            # The reads take turns on the loop's request-rate limiter of the logs client's account
            # (one token per read), as the status polls do on theirs.
            rate = self.max_requests_per_second
            with scheduler.limited(entry.key, client, "GetLogEvents", rate, is_throttling) as limiter:
                polling = scheduler.poll(
                    read, {}, self._step, first_delay=min(self.interval, 1.0), limiter=limiter
                )
                try:
                    result = await wait
                finally:
                    streaming = not polling.done()
                    polling.cancel()
            if streaming:
                # The wait ended while streaming went on: the last lines (the job's end) come now.
                async def last(**_: Any) -> Fetched:
                    return await read_logs_async(client, follower.read(final=True))

                self._step(await scheduler.poll(last, {}, Finished))
                if not follower.stopped:
                    self.reporter.finished()
            return result
        finally:
            pool.release(entry)


def stream_sync_wait(
    *,
    enabled: bool,
    kind: ResourceKind,
    arn: str,
    log: Any,
    aws: Mapping[str, Any],
    stream_prefix: str | None = None,
) -> ContainerLogStreamer | None:
    """A :class:`ContainerLogStreamer` for a sync wait when ``enabled`` and the kind has container logs."""
    if not enabled or log_group(kind) is None:
        return None
    return ContainerLogStreamer(AwsLogsHook(**aws), kind, arn, log, stream_prefix)


__all__ = [
    "LOG_GROUPS",
    "ContainerLogStreamer",
    "LogFollower",
    "TriggerLogStreamer",
    "default_stream_prefix",
    "log_group",
    "stream_sync_wait",
]

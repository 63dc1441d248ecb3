"""Triggers that wait, in the triggerer, for Clean Rooms ML jobs and resources to become ``ACTIVE``."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.triggers.base import TriggerEvent
from botocore import xform_name

from airflow_cleanrooms.aio.client_pool import SharedClientPool
from airflow_cleanrooms.aio.poll_scheduler import Finished, PollScheduler
from airflow_cleanrooms.aio.rate_limiter import DEFAULT_MAX_REQUESTS_PER_SECOND
from airflow_cleanrooms.compat import TRIGGERER_CALLS_ON_KILL, conf, trigger_hook_parameters
from airflow_cleanrooms.container_logs import TriggerLogStreamer, log_group
from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook
from airflow_cleanrooms.triggers.base import (
    _RNG,
    TASK_DEFERRED,
    CleanRoomsMLBaseWaiterTrigger,
    deferred_task_state,
)
from airflow_cleanrooms.wait_semantics import (
    ML_INPUT_CHANNEL,
    RESOURCE_KINDS,
    TRAINED_MODEL,
    TRAINED_MODEL_INFERENCE_JOB,
    ResourceKind,
    is_throttling,
    is_transient,
    publishing_fields,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


#: Seconds before the first retry of a throttled cancel call (doubling, jittered, at most 4 s).
CANCEL_FIRST_RETRY_SECONDS = 0.5


class _CleanRoomsMLTrigger(CleanRoomsMLBaseWaiterTrigger):
    """
    What every trigger of the provider shares: the Clean Rooms ML hook, and one keyword block: the
    request rate beside ``AwsBaseWaiterTrigger``'s AWS keywords (``aws_conn_id``, ``region_name``,
    ``verify``, ``botocore_config``); the waiter's keywords pass through ``**waiter``.

    :param max_requests_per_second: The most requests per second that the triggerer's waits on one
        account, Region and operation make together (they slow down further when AWS throttles).
        (default: 5, AWS's published quota; ``None``: unlimited)
    :param aws_conn_id: The Airflow connection for AWS. (default: ``aws_default``)
    :param region_name: AWS Region; the connection's when not given.
    :param verify: Whether to verify SSL certificates, or a CA bundle path.
    :param botocore_config: A ``botocore.config.Config`` as a dict.
    """

    aws_hook_class = CleanRoomsMLHook

    def __init__(
        self,
        *,
        serialized_fields: dict[str, Any],
        max_requests_per_second: float | None = DEFAULT_MAX_REQUESTS_PER_SECOND,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        **waiter: Any,
    ) -> None:
        # The AWS keywords are named here with their defaults: amazon 9.8.0's AwsBaseWaiterTrigger
        # has no default for aws_conn_id.
        self.max_requests_per_second = max_requests_per_second
        super().__init__(
            serialized_fields={**serialized_fields, "max_requests_per_second": max_requests_per_second},
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
            **waiter,
        )


class _CleanRoomsMLResourceTrigger(_CleanRoomsMLTrigger):
    """
    Wait for one resource of a kind (``kind``) to become ``ACTIVE``: the public triggers below only
    name their kind, as the amazon provider's ``SageMakerTrigger`` serves several job types by key.

    The resource is given by the keyword named after its kind's ARN member
    (``trained_model_inference_job_arn``, ``trained_model_arn``, ``ml_input_channel_arn``: the key of
    the success event and of the operator's XCom too), and a trained model's version by
    ``version_identifier``.

    - Error events carry the final ``job_status`` and ``status_details`` when the waiter stopped on a
      failure status (taken from the waiter's last response).
    - With ``cancel_on_kill``, a user or a timeout killing the deferred task (mark failed / clear /
      mark success: Airflow 3.3+ calls :meth:`on_kill` then, and on 2.11 to 3.2 :meth:`run` calls it
      when the triggerer cancels the wait) cancels the resource; a hand-over to another triggerer, or
      a triggerer's shutdown, never does. Operators that started the resource set it; sensors, which
      only watch, never do.
    - With ``print_log``, the job's container logs are streamed into the trigger's log (the task log
      on Airflow 3) while it waits: :class:`~airflow_cleanrooms.container_logs.TriggerLogStreamer`
      (shared client pool, poll scheduler), streams found by ``log_stream_prefix`` (default: the
      job's id).

    :param membership_identifier: The membership ID of the membership that contains the resource.
    :param version_identifier: The version of the trained model to wait for (trained models only).
    :param waiter_delay: Seconds between checks. (default: 60)
    :param waiter_max_attempts: Checks before the wait gives up. (default: 720)
    :param cancel_on_kill: Cancel the resource if the deferred task is killed; set by the operator
        that started it. (default: ``False``)
    :param print_log: Stream the job's container logs into the trigger's log. (default: ``False``)
    :param log_stream_prefix: Follow the streams whose names start with this (default: the job's id).
    :param log_mask_values: The task's secrets, masked in streamed lines.
    :param arn_and_aws: the resource's ARN under its kind's key, ``max_requests_per_second`` and the
        AWS keywords (see :class:`_CleanRoomsMLTrigger`).
    """

    kind: ClassVar[ResourceKind]

    def __init__(
        self,
        *,
        membership_identifier: str,
        version_identifier: str | None = None,
        cancel_on_kill: bool = False,
        print_log: bool = False,
        log_stream_prefix: str | None = None,
        log_mask_values: list[str] | None = None,
        waiter_delay: int = 60,
        waiter_max_attempts: int = 720,
        **arn_and_aws: Any,
    ) -> None:
        kind = self.kind
        arn_key = kind.arn_member_snake
        if arn_key not in arn_and_aws:
            raise TypeError(f"{type(self).__name__} needs {arn_key}")
        if version_identifier is not None and kind.version_member is None:
            raise TypeError(f"a {kind.label} has no version: version_identifier is not allowed")
        arn = str(arn_and_aws.pop(arn_key))
        self.membership_identifier = membership_identifier
        self.arn = arn
        self.cancel_on_kill = cancel_on_kill
        self.print_log = print_log
        self.log_stream_prefix = log_stream_prefix
        self.log_mask_values = list(log_mask_values or [])
        self.waiter_args_extra = {"versionIdentifier": version_identifier} if version_identifier else {}
        identity: dict[str, Any] = {"membership_identifier": membership_identifier, arn_key: arn}
        if version_identifier:
            identity["version_identifier"] = version_identifier
        streaming: dict[str, Any] = {}
        if print_log:
            # log_mask_values: the task's secrets, masked in streamed lines (trigger kwargs are
            # stored encrypted by Airflow).
            streaming = {
                "print_log": True,
                "log_stream_prefix": log_stream_prefix,
                "log_mask_values": self.log_mask_values,
            }
        super().__init__(
            serialized_fields={**identity, "cancel_on_kill": cancel_on_kill, **streaming},
            waiter_name=kind.waiter_name,
            waiter_args=kind.request(membership_identifier, arn, **self.waiter_args_extra),
            failure_message=f"{kind.label.capitalize()} {arn} failed",
            status_message=f"{kind.label.capitalize()} {arn} status is",
            status_queries=["status", "statusDetails"],
            return_key=arn_key,
            return_value=arn,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            **arn_and_aws,
        )

    async def _wait(self, client: Any, waiter: Any, client_key: Any = None) -> Any:
        """The status wait, with the container logs streamed beside it when ``print_log`` is set."""
        if not self.print_log or log_group(self.kind) is None:
            return await super()._wait(client, waiter, client_key)
        streamer = TriggerLogStreamer(
            self.kind,
            self.arn,
            self.log,
            trigger_hook_parameters(self),
            interval=max(float(self.waiter_delay), 1.0),
            stream_prefix=self.log_stream_prefix,
            mask_values=self.log_mask_values,
            max_requests_per_second=self.triggerer_request_rate,
        )
        return await streamer.stream(super()._wait(client, waiter, client_key))

    def _final_fields(self, response: dict[str, Any]) -> dict[str, Any] | None:
        """The logs/metrics publishing members of the last response (for the task's final state block)."""
        return publishing_fields(self.kind, response)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """
        The wait (:meth:`CleanRoomsMLBaseWaiterTrigger.run`). Below Airflow 3.3, whose triggerer
        calls no ``on_kill``, a cancelled wait runs :meth:`on_kill` itself before it ends.
        """
        try:
            async for event in super().run():
                yield event
        except asyncio.CancelledError:
            if not TRIGGERER_CALLS_ON_KILL:
                await self.on_kill()
            raise

    async def on_kill(self) -> None:
        """
        Cancel the resource when the deferred task was killed (only with ``cancel_on_kill``), never
        when the trigger was only handed to another triggerer or its triggerer stopped.

        Airflow 3.3 calls ``on_kill`` when a user or a timeout ends the deferred task, and also when a
        triggerer that stopped heart-beating for ``triggerer_health_check_threshold`` (a long pause,
        a stalled container) recovers and drops the triggers another triggerer took over meanwhile
        (apache/airflow#73454). Airflow 2.11 to 3.2 cancel the wait in each of those cases, and also
        when they shut down; :meth:`run` calls ``on_kill`` then. The task instance tells them
        apart: a killed task is no longer deferred; a handed-over one still is (the other triggerer,
        or the next one to start, waits on the resource).
        When its state cannot be read, the resource is not cancelled and the log says how to cancel
        it by hand: cancelling a job another triggerer still waits on fails the task and loses the
        work done, while a job left running costs its remaining time.
        """
        if not self.cancel_on_kill or self.kind.cancel_operation is None:
            return
        # Shielded: Airflow 3.3's triggerer may cancel on_kill itself again about a second later
        # (seen in the reliability suite: the cancel call never completed and the job ran on).
        await asyncio.shield(self._cancel_if_killed())

    async def _cancel_if_killed(self) -> None:
        kind = self.kind
        what = f"{kind.label} {self.arn}"
        try:
            state = await deferred_task_state(self)
        except Exception as error:
            self.log.warning(
                "Could not read the task's state (%s), so it is unknown whether the task was killed or "
                "this trigger was handed to another triggerer: %s is NOT cancelled. If the task was "
                "killed, cancel it with %s",
                error,
                what,
                kind.cancel_command(self.membership_identifier, self.arn, **self.waiter_args_extra),
            )
            return
        if state == TASK_DEFERRED:
            self.log.info(
                "Trigger handed over: the task is still deferred and another triggerer waits on %s; "
                "not cancelling it",
                what,
            )
            return
        self.log.info("Task killed while deferred (its state is now %s): cancelling %s", state, what)
        request = kind.request(self.membership_identifier, self.arn, **self.waiter_args_extra)
        # Many tasks killed at once (a run marked failed) exceed the Cancel operation's request rate:
        # throttled and other transient failures are retried, with jittered backoff, until shortly
        # before Airflow's [triggerer] on_kill_timeout.
        deadline = time.monotonic() + max(1.0, conf.getfloat("triggerer", "on_kill_timeout", fallback=30) - 5)
        delay = CANCEL_FIRST_RETRY_SECONDS
        async with await self.hook().get_async_conn() as client:
            call = getattr(client, xform_name(str(kind.cancel_operation)))
            while True:
                try:
                    await call(**request)
                    break
                except Exception as error:
                    pause = delay * (0.5 + _RNG.random())
                    if not is_transient(error) or time.monotonic() + pause > deadline:
                        self.log.warning(
                            "Could not cancel %s (%s). Cancel it with %s",
                            what,
                            error,
                            kind.cancel_command(
                                self.membership_identifier, self.arn, **self.waiter_args_extra
                            ),
                        )
                        return
                    await asyncio.sleep(pause)
                    delay = min(delay * 2, 4.0)
        self.log.info("Cancel requested for %s", what)


class CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(_CleanRoomsMLResourceTrigger):
    """
    Wait for a trained model inference job to become ``ACTIVE``.

    Emits ``{"status": "success", "trained_model_inference_job_arn": ...}``, or
    ``{"status": "error", "message": ..., "trained_model_inference_job_arn": ..., "job_status": ...,
    "status_details": ...}``.

    :param membership_identifier: The membership ID of the membership that contains the job.
    :param trained_model_inference_job_arn: The ARN of the trained model inference job.
    :param kwargs: the waiter, streaming and AWS arguments of :class:`_CleanRoomsMLResourceTrigger`.
    """

    kind = TRAINED_MODEL_INFERENCE_JOB


class CleanRoomsMLTrainedModelCompleteTrigger(_CleanRoomsMLResourceTrigger):
    """
    Wait for a trained model (or one version of it) to become ``ACTIVE``.

    Emits ``{"status": "success", "trained_model_arn": ...}`` or an error event carrying
    ``job_status`` and ``status_details``.

    :param membership_identifier: The membership ID of the membership that contains the trained model.
    :param trained_model_arn: The ARN of the trained model.
    :param version_identifier: The version of the trained model to wait for (optional).
    :param kwargs: the waiter, streaming and AWS arguments of :class:`_CleanRoomsMLResourceTrigger`.
    """

    kind = TRAINED_MODEL


class CleanRoomsMLInputChannelActiveTrigger(_CleanRoomsMLResourceTrigger):
    """
    Wait for an ML input channel to become ``ACTIVE``.

    Emits ``{"status": "success", "ml_input_channel_arn": ...}`` or an error event.

    :param membership_identifier: The membership ID of the membership that contains the channel.
    :param ml_input_channel_arn: The ARN of the ML input channel.
    :param kwargs: the waiter and AWS arguments of :class:`_CleanRoomsMLResourceTrigger`.
    """

    kind = ML_INPUT_CHANNEL


class CleanRoomsMLJobQuotaSlotTrigger(_CleanRoomsMLTrigger):
    """
    Wait, in the triggerer, until a start refused by a job quota may succeed; the task then starts again.

    Used by the inference-job and trained-model operators after ``ServiceQuotaExceededException``.
    Every ``poll_interval`` seconds (shortened at random by up to ``jitter``, so that tasks refused
    together do not come back together; the first check too, see :meth:`check_delay`) it lists the
    membership's jobs of the kind (``ListTrainedModelInferenceJobs`` / ``ListTrainedModels``, one page)
    and fires when fewer than ``quota_value`` of them are pending or in progress. The listing shows
    one membership: when the refusal came from the account's quota the membership count is already
    below it, so the trigger fires after one interval and the start call, the only authority on the
    quota, decides again. A listing that fails fires too (the start decides). At ``deadline`` (epoch
    seconds) it fires whatever the count; the operator then fails with the quota's name if the start
    is still refused.

    Emits ``{"status": "success", "pending_jobs": <count or None>, "quota_name": ..., "quota_value": ...}``.

    :param resource: the kind of job (``trained_model_inference_job_arn`` or ``trained_model_arn``).
    :param membership_identifier: The membership whose jobs hold the slots.
    :param quota_name: AWS's name of the quota that refused the start (for the logs).
    :param quota_value: The quota's value from the refusal (``None``: unknown; fires after an interval).
    :param deadline: When to stop waiting (seconds since the epoch).
    :param poll_interval: Seconds between checks.
    :param aws: ``max_requests_per_second`` (the listing takes turns on the triggerer's shared rate
        limiter, as the other waits do) and the AWS keywords (see :class:`_CleanRoomsMLTrigger`).
    """

    #: Fraction of ``poll_interval`` by which a check may come earlier, at random.
    jitter: float = 0.5

    def __init__(
        self,
        *,
        resource: str,
        membership_identifier: str,
        quota_name: str,
        quota_value: float | None,
        deadline: float,
        poll_interval: float = 60,
        waiter_delay: int | None = None,
        waiter_max_attempts: int = 1,
        **aws: Any,
    ) -> None:
        kind = self.resource_kind(resource)
        assert kind.list_operation is not None
        self.kind = kind
        self.membership_identifier = membership_identifier
        self.quota_name = quota_name
        self.quota_value = quota_value
        self.deadline = float(deadline)
        self.check_interval = float(poll_interval if waiter_delay is None else waiter_delay)
        super().__init__(
            serialized_fields={
                "resource": resource,
                "membership_identifier": membership_identifier,
                "quota_name": quota_name,
                "quota_value": quota_value,
                "deadline": self.deadline,
                "poll_interval": self.check_interval,
            },
            waiter_name=kind.waiter_name,
            waiter_args={"membershipIdentifier": membership_identifier, "maxResults": kind.list_page_size},
            failure_message=f"Waiting for a free slot of {quota_name!r} failed",
            status_message=f"{kind.label.capitalize()}s pending or in progress in {membership_identifier}",
            status_queries=[],
            return_key="membership_identifier",
            return_value=membership_identifier,
            waiter_delay=int(self.check_interval),
            waiter_max_attempts=waiter_max_attempts,
            **aws,
        )

    @staticmethod
    def resource_kind(resource: str) -> ResourceKind:
        for kind in RESOURCE_KINDS:
            if kind.arn_member_snake == resource and kind.list_operation is not None:
                return kind
        raise ValueError(f"No job kind with a listing is called {resource!r}")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        classpath, fields = super().serialize()
        fields.pop("waiter_delay", None)  # poll_interval, kept as a float
        return classpath, fields

    def check_delay(self) -> float:
        """
        Seconds before the next check: random in ``[(1 - jitter) * interval, interval]``, before the deadline.

        The first check too: a trigger that fires within seconds of its deferral can resume the task
        before the executor has reported the deferring workload finished, and Airflow's scheduler
        then fails the running task ("finished with state success, but the task instance's state
        attribute is running"; seen in tests/reliability/test_job_quotas.py on a loaded machine).
        """
        delay = _RNG.uniform((1.0 - self.jitter) * self.check_interval, self.check_interval)
        return max(0.0, min(delay, self.deadline - time.time()))

    def _event(self, pending: int | None) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": "success",
                "pending_jobs": pending,
                "quota_name": self.quota_name,
                "quota_value": self.quota_value,
            }
        )

    def _check(self, outcome: Any) -> float | Finished[TriggerEvent]:
        if isinstance(outcome, BaseException):
            if is_transient(outcome) and time.time() < self.deadline:
                return self.check_delay()  # throttled or a passing fault: check again later
            self.log.warning("Could not list %ss (%s); trying the start again", self.kind.label, outcome)
            return Finished(self._event(None))
        pending = sum(
            1 for job in outcome.get(self.kind.list_result_key, []) if self.kind.is_pending(job.get("status"))
        )
        if self.quota_value is None or pending < self.quota_value or time.time() >= self.deadline:
            return Finished(self._event(pending))
        return self.check_delay()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self.log.info(
            "Waiting for a slot of %r (%s): %ss pending or in progress in membership %s are checked "
            "every %.0f s",
            self.quota_name,
            self.quota_value,
            self.kind.label,
            self.membership_identifier,
            self.check_interval,
        )
        try:
            pool = SharedClientPool.for_running_loop()
            entry = await pool.acquire(self.hook(), self.client_transport)
            scheduler = PollScheduler.for_running_loop()
            operation = str(self.kind.list_operation)
            rate = self.triggerer_request_rate
            try:
                with scheduler.limited(entry.key, entry.client, operation, rate, is_throttling) as limiter:
                    event: TriggerEvent = await scheduler.poll(
                        getattr(entry.client, xform_name(operation)),
                        self.waiter_args,
                        self._check,
                        first_delay=self.check_delay(),
                        limiter=limiter,
                    )
            finally:
                pool.release(entry)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as error:
            self.log.warning("Could not check the quota (%s); trying the start again", error)
            await self._sleep(self.check_delay())
            event = self._event(None)
        yield event

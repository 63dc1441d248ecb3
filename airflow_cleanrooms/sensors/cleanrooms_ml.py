"""Sensors that wait for Clean Rooms ML jobs and trained models to become ``ACTIVE``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.sensors.base_aws import AwsBaseSensor
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from airflow_cleanrooms.aio.rate_limiter import DEFAULT_MAX_REQUESTS_PER_SECOND
from airflow_cleanrooms.compat import conf
from airflow_cleanrooms.container_logs import ContainerLogStreamer, stream_sync_wait
from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError
from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook
from airflow_cleanrooms.links.cleanrooms_ml import CleanRoomsMLContainerLogsLink, persist_logs_link
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLTrainedModelCompleteTrigger,
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
    _CleanRoomsMLResourceTrigger,
)
from airflow_cleanrooms.wait_semantics import (
    TRAINED_MODEL,
    TRAINED_MODEL_INFERENCE_JOB,
    ResourceKind,
    ResourceState,
    format_duration,
    judge_poll,
    load_waiter_config,
    log_final_state,
    raise_for_wait_event,
    waiter_acceptors,
)

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg


class CleanRoomsMLBaseSensor(AwsBaseSensor[CleanRoomsMLHook]):
    """
    Poke a Clean Rooms ML resource until it is ``ACTIVE``; fail at once on a failure status.

    A failure status (:mod:`airflow_cleanrooms.wait_semantics`: the waiter's failure acceptors) fails
    the task with the resource's ``statusDetails`` in the error. Each status change is logged with
    the resource's age.

    :param deferrable: Wait in the triggerer (needs aiobotocore).
        (default: ``[operators] default_deferrable``, else ``False``)
    :param poke_interval: Seconds between checks (also the trigger's delay). (default: 60)
    :param max_retries: In deferrable mode, the trigger's maximum number of checks. (default: 720)
    :param print_log: While waiting (``poke`` mode or deferrable), copy the job's container logs
        (CloudWatch Logs) into the task log, in order and without repeats. In ``reschedule`` mode,
        where each poke is a new try, all of the job's lines come once, when it has ended.
        (default: ``False``; see :mod:`airflow_cleanrooms.container_logs`)
    :param log_stream_prefix: Follow the log streams whose names start with this (default: the
        job's id, the last segment of its ARN). (templated)
    :param max_requests_per_second: In deferrable mode, the most requests per second that the
        triggerer's waits on one account, Region and operation make together; they slow down
        further when AWS throttles. (default: 5, AWS's published quota; ``None``: unlimited)
    """

    aws_hook_class = CleanRoomsMLHook
    kind: ClassVar[ResourceKind]
    ui_color = "#66c3ff"
    operator_extra_links = (CleanRoomsMLContainerLogsLink(),)

    def __init__(
        self,
        *,
        membership_identifier: str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60,
        max_retries: int = 720,
        print_log: bool = False,
        log_stream_prefix: str | None = None,
        max_requests_per_second: float | None = DEFAULT_MAX_REQUESTS_PER_SECOND,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.membership_identifier = membership_identifier
        self.deferrable = deferrable
        self.max_retries = max_retries
        self.print_log = print_log
        self.log_stream_prefix = log_stream_prefix
        self.max_requests_per_second = max_requests_per_second
        self._last_status: str | None = None
        self._streamer: ContainerLogStreamer | None = None

    @property
    def arn(self) -> str:
        raise NotImplementedError

    def get_extra(self) -> dict[str, Any]:
        return {}

    def trigger(self) -> _CleanRoomsMLResourceTrigger:
        raise NotImplementedError

    def execute(self, context: Context) -> Any:
        persist_logs_link(context, self, self.kind, self.arn, self.log_stream_prefix)
        if not self.deferrable:
            self._streamer = stream_sync_wait(
                enabled=self.print_log,
                kind=self.kind,
                arn=self.arn,
                log=self.log,
                aws={
                    "aws_conn_id": self.aws_conn_id,
                    "region_name": self.region_name,
                    "verify": self.verify,
                    "config": self.botocore_config,
                },
                stream_prefix=self.log_stream_prefix,
            )
            return super().execute(context)
        self.defer(
            trigger=self.trigger(),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def poke(self, context: Context) -> bool:
        state = self._read_state()
        self._log_status(state)
        acceptors = waiter_acceptors(load_waiter_config(self.hook, self.kind.waiter_name))
        verdict = judge_poll(acceptors, state.response)  # as the sync waits and the triggers judge
        ended = verdict.state in ("success", "failure")
        if self._streamer is not None and (ended or not self.reschedule):
            # In reschedule mode each poke is a new try that would start over: the lines come once,
            # all of them, when the job has ended.
            self._streamer.on_poll(state, ended)
        if ended:
            log_final_state(self.kind, self.arn, state.final_fields(self.kind), self.log)
        if verdict.state == "success":
            return True
        if verdict.state == "failure":
            raise CleanRoomsMLJobFailedError(self.kind.label, self.arn, state.status, state.status_details)
        return False

    def _log_status(self, state: ResourceState) -> None:
        if state.status == self._last_status:
            return
        self.log.info(
            "%s %s is %s%s (age %s)",
            self.kind.label.capitalize(),
            self.arn,
            state.status,
            f" (was {self._last_status})" if self._last_status else "",
            format_duration(state.age_seconds()),
        )
        self._last_status = state.status

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """Resume after the trigger fired: :func:`~airflow_cleanrooms.wait_semantics.raise_for_wait_event`."""
        event = validate_execute_complete_event(event)
        raise_for_wait_event(self.kind, self.arn, event, self._read_state, self.log)
        return self.arn

    def _read_state(self) -> ResourceState:
        return self.hook.get_state(self.kind, self.membership_identifier, self.arn, **self.get_extra())

    def _trigger_common(self) -> dict[str, Any]:
        common: dict[str, Any] = {
            "waiter_delay": max(1, int(self.poke_interval)),
            "waiter_max_attempts": self.max_retries,
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
            "max_requests_per_second": self.max_requests_per_second,
        }
        if self.print_log:
            common.update(print_log=True, log_stream_prefix=self.log_stream_prefix)
        return common


class CleanRoomsMLTrainedModelInferenceJobSensor(CleanRoomsMLBaseSensor):
    """
    Wait for a trained model inference job to become ``ACTIVE``.

    Fails at once on ``CREATE_FAILED``, ``CANCEL_*`` and ``INACTIVE`` with the job's ``statusDetails``.

    :param membership_identifier: The membership ID of the membership that contains the job. (templated)
    :param trained_model_inference_job_arn: The ARN of the job, e.g. the start operator's
        ``output``. (templated)

    Also takes ``deferrable``, ``poke_interval``, ``max_retries``, the sensor arguments (``mode``,
    ``timeout``, ...) and the AWS arguments.
    """

    kind = TRAINED_MODEL_INFERENCE_JOB
    template_fields: Sequence[str] = aws_template_fields(
        "membership_identifier", "trained_model_inference_job_arn", "log_stream_prefix"
    )

    def __init__(self, *, trained_model_inference_job_arn: str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trained_model_inference_job_arn = trained_model_inference_job_arn

    @property
    def arn(self) -> str:
        # An XComArg (``start.output``) has been rendered to the ARN string by the time this runs.
        return str(self.trained_model_inference_job_arn)

    def trigger(self) -> CleanRoomsMLTrainedModelInferenceJobCompleteTrigger:
        return CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
            membership_identifier=self.membership_identifier,
            trained_model_inference_job_arn=self.arn,
            **self._trigger_common(),
        )


class CleanRoomsMLTrainedModelSensor(CleanRoomsMLBaseSensor):
    """
    Wait for a trained model to become ``ACTIVE``.

    Fails at once on ``CREATE_FAILED``, ``CANCEL_*``, ``DELETE_*`` and ``INACTIVE`` with the model's
    ``statusDetails``.

    :param membership_identifier: The membership ID of the membership that contains the model. (templated)
    :param trained_model_arn: The ARN of the trained model, e.g. the create operator's ``output``.
        (templated)
    :param version_identifier: The version to wait for (default: the latest). (templated)

    Also takes ``deferrable``, ``poke_interval``, ``max_retries``, the sensor arguments and the AWS
    arguments.
    """

    kind = TRAINED_MODEL
    template_fields: Sequence[str] = aws_template_fields(
        "membership_identifier", "trained_model_arn", "version_identifier", "log_stream_prefix"
    )

    def __init__(
        self, *, trained_model_arn: str | XComArg, version_identifier: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.trained_model_arn = trained_model_arn
        self.version_identifier = version_identifier

    @property
    def arn(self) -> str:
        # An XComArg (``create.output``) has been rendered to the ARN string by the time this runs.
        return str(self.trained_model_arn)

    def get_extra(self) -> dict[str, Any]:
        return {"versionIdentifier": self.version_identifier} if self.version_identifier else {}

    def trigger(self) -> CleanRoomsMLTrainedModelCompleteTrigger:
        return CleanRoomsMLTrainedModelCompleteTrigger(
            membership_identifier=self.membership_identifier,
            trained_model_arn=self.arn,
            version_identifier=self.version_identifier or None,
            **self._trigger_common(),
        )

"""
Operators for AWS Clean Rooms ML: start an inference job, train a model, create an ML input channel.

Each operator takes one argument per API input member, named in snake_case after the member in the
installed botocore model (``membershipIdentifier`` -> ``membership_identifier``). Every one of them
is a template field. A member that a newer botocore adds is accepted by name too, without a code
change. After rendering, the request is validated against the model before any API call
(:mod:`airflow_cleanrooms.operators.request`).

One start path, ``execute``::

    self.build_request()                            # render -> validate (self.request), no API call
    job = self.start_job(context, self.request)     # the one call that starts it; record_job()
    return self.wait_for_job(context, job)          # wait (poll or defer) and return the ARN

The inference-job and trained-model operators put durable execution around those steps
(:class:`~airflow_cleanrooms.operators.start.CleanRoomsMLDurableMixin`). What "done" and
"transient" mean, and what a trigger's event makes of the task, is :mod:`airflow_cleanrooms.wait_semantics`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils import validate_execute_complete_event
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from airflow_cleanrooms.aio.rate_limiter import DEFAULT_MAX_REQUESTS_PER_SECOND
from airflow_cleanrooms.assets import event_extra, outlets_of
from airflow_cleanrooms.compat import (
    AirflowException,
    conf,
    mask_secret,
    reject_arguments_the_model_lacks,
    sensitive_values,
)
from airflow_cleanrooms.container_logs import stream_sync_wait
from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError, CleanRoomsMLWaitTimeoutError
from airflow_cleanrooms.hooks.cleanrooms_ml import CleanRoomsMLHook, FoundJob, JobRef
from airflow_cleanrooms.lineage import job_run_facets, operator_lineage, resource_dataset, s3_dataset
from airflow_cleanrooms.links.cleanrooms_ml import (
    CleanRoomsMLContainerLogsLink,
    CleanRoomsMLInputChannelLink,
    CleanRoomsMLTrainedModelInferenceJobLink,
    CleanRoomsMLTrainedModelLink,
    _CleanRoomsMLLink,
    persist_logs_link,
)
from airflow_cleanrooms.operators.request import (
    CLI_INPUT_JSON,
    CLI_INPUT_YAML,
    argument_members,
    argument_names,
    build_request,
    json_argument_names,
    redacted_for_log,
    suggest_argument,
)
from airflow_cleanrooms.operators.start import CleanRoomsMLDurableMixin, CleanRoomsMLQuotaWaitMixin
from airflow_cleanrooms.triggers.cleanrooms_ml import (
    CleanRoomsMLInputChannelActiveTrigger,
    CleanRoomsMLTrainedModelCompleteTrigger,
    CleanRoomsMLTrainedModelInferenceJobCompleteTrigger,
    _CleanRoomsMLResourceTrigger,
)
from airflow_cleanrooms.wait_semantics import (
    ML_INPUT_CHANNEL,
    TRAINED_MODEL,
    TRAINED_MODEL_INFERENCE_JOB,
    ResourceKind,
    ResourceState,
    raise_for_wait_event,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

START_TRAINED_MODEL_INFERENCE_JOB = "StartTrainedModelInferenceJob"
CREATE_TRAINED_MODEL = "CreateTrainedModel"
CREATE_ML_INPUT_CHANNEL = "CreateMLInputChannel"

# next_method Airflow resumes a deferred task with when its trigger failed or timed out.
_TRIGGER_FAIL_METHOD = "__fail__"


def _template_fields(operation_name: str) -> tuple[str, ...]:
    return aws_template_fields(
        *argument_names(operation_name), CLI_INPUT_JSON, CLI_INPUT_YAML, "log_stream_prefix"
    )


def _renderers(operation_name: str) -> dict[str, str]:
    return {
        **dict.fromkeys(json_argument_names(operation_name), "json"),
        CLI_INPUT_JSON: "json",
        CLI_INPUT_YAML: "yaml",
    }


class CleanRoomsMLBaseOperator(AwsBaseOperator[CleanRoomsMLHook]):
    """
    Shared behaviour: model-driven arguments and validation, start, wait/defer, cancel on kill, link.

    Subclasses set ``operation_name`` (the API call that starts the resource), ``kind`` (what is
    waited on), ``link`` and the ``template_fields`` for the operation, and implement
    :meth:`trigger_for`.

    :param cli_input_json: The document ``--cli-input-json`` takes: a dict or a JSON string with the
        API's camelCase member names (as ``aws cleanroomsml ... --generate-cli-skeleton input``
        prints). Explicit arguments override its members. (templated)
    :param cli_input_yaml: The same document as YAML (``--cli-input-yaml``); not together with
        ``cli_input_json``. (templated)
    :param wait_for_completion: Wait until the resource is ``ACTIVE`` (default ``True``). With
        ``False`` the task ends as soon as the API call returned.
    :param waiter_delay: Seconds between status checks. (default: 60)
    :param waiter_max_attempts: Maximum number of status checks. (default: 720, i.e. 12 h at 60 s)
    :param deferrable: Wait in the triggerer instead of a worker slot (needs aiobotocore).
        (default: ``[operators] default_deferrable``, else ``False``)
    :param cancel_on_kill: Cancel the job when the task is killed, times out (``execution_timeout``
        or the deferral timeout) or gives up waiting (``waiter_max_attempts``). (default: ``True``)
    :param print_log: While waiting, copy the job's container logs (CloudWatch Logs) into the task
        log, in order and without repeats; deferrable waits stream them from the triggerer.
        (default: ``False``; see :mod:`airflow_cleanrooms.container_logs`)
    :param log_stream_prefix: Follow the log streams whose names start with this (default: the
        job's id, the last segment of its ARN). (templated)
    :param max_requests_per_second: In deferrable mode, the most requests per second that the
        triggerer's waits on one account, Region and operation make together; they slow down
        further when AWS throttles. (default: 5, AWS's published quota; ``None``: unlimited)
    """

    aws_hook_class = CleanRoomsMLHook
    operation_name: ClassVar[str]
    kind: ClassVar[ResourceKind]
    link: ClassVar[type[_CleanRoomsMLLink]]
    ui_color = "#ff9900"
    #: XCom key of a trained model's version (pushed by :meth:`record_job`).
    version_xcom_key: ClassVar[str] = "trained_model_version_identifier"
    #: Attempts of a durable start call (see ``CleanRoomsMLHook.start_at_most_once``).
    durable_start_attempts: ClassVar[int] = 8

    def __init__(
        self,
        *,
        api_arguments: dict[str, Any],
        cli_input_json: dict[str, Any] | str | None = None,
        cli_input_yaml: str | None = None,
        wait_for_completion: bool = True,
        waiter_delay: int = 60,
        waiter_max_attempts: int = 720,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_kill: bool = True,
        print_log: bool = False,
        log_stream_prefix: str | None = None,
        max_requests_per_second: float | None = DEFAULT_MAX_REQUESTS_PER_SECOND,
        **kwargs: Any,
    ) -> None:
        members = argument_members(self.operation_name)
        reject_arguments_the_model_lacks(self.operation_name, api_arguments, members)
        # Members a newer botocore model adds arrive here by name; accept them like the others.
        newer = {
            name: kwargs.pop(name) for name in list(kwargs) if name in members and name not in api_arguments
        }
        self._reject_misspelled_arguments(kwargs)
        super().__init__(**kwargs)
        values = {**api_arguments, **newer}
        for name in members:
            setattr(self, name, values.get(name))
        self.cli_input_json = cli_input_json
        self.cli_input_yaml = cli_input_yaml
        self.wait_for_completion = wait_for_completion
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts
        self.deferrable = deferrable
        self.cancel_on_kill = cancel_on_kill
        self.print_log = print_log
        self.log_stream_prefix = log_stream_prefix
        self.max_requests_per_second = max_requests_per_second
        self.request: dict[str, Any] = {}
        self._job: JobRef | None = None
        #: Why the job failed (for the OpenLineage FAIL event), once it did.
        self._failure: CleanRoomsMLJobFailedError | None = None

    def _reject_misspelled_arguments(self, kwargs: dict[str, Any]) -> None:
        """Fail at DAG parse time on a keyword that looks like a misspelled API argument."""
        accepted: set[str] = set()
        for klass in type(self).__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None:
                accepted.update(inspect.signature(init).parameters)
        for name in kwargs:
            if name in accepted:
                continue
            guess = suggest_argument(self.operation_name, name)
            if guess and guess != name:
                raise TypeError(
                    f"{type(self).__name__} got an unexpected argument {name!r}; did you mean {guess!r}? "
                    f"API arguments: {', '.join(argument_names(self.operation_name))}"
                )

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """
        Render, then register the values under sensitive keys (``environment={"DB_PASSWORD": ...}``)
        with the secrets masker at once: Airflow stores and logs the rendered fields right after
        rendering, before :meth:`execute` (Airflow 3.0 does not mask map values by key there).
        """
        super().render_template_fields(context, jinja_env)
        for value in sensitive_values(self.api_arguments):
            mask_secret(value)

    # ---- the one start path: build -> start -> wait -----------------------------------------

    def execute(self, context: Context) -> Any:
        self.build_request()
        return self.wait_for_job(context, self.start_job(context, self.request))

    @property
    def api_arguments(self) -> dict[str, Any]:
        """The (rendered) operator arguments, by snake_case name."""
        return {name: getattr(self, name, None) for name in argument_names(self.operation_name)}

    def build_request(self) -> dict[str, Any]:
        """
        Build the camelCase request from the rendered arguments and validate it (no API call).

        Everything the task does afterwards (start, wait, cancel, link) reads ``self.request``, never
        the raw arguments: a value may come from ``cli_input_json`` alone.
        """
        self.request = build_request(
            self.operation_name, self.api_arguments, self.cli_input_json, self.cli_input_yaml
        )
        return self.request

    def start_job(
        self,
        context: Context,
        request: dict[str, Any],
        find_started: Callable[[], FoundJob | None] | None = None,
    ) -> JobRef:
        """
        Make the one API call that starts the resource, and record it (XCom, link, on_kill).

        With ``find_started`` (durable execution) the call makes single attempts and, after an
        ambiguous failure, looks for the job before trying again
        (:meth:`~airflow_cleanrooms.hooks.cleanrooms_ml.CleanRoomsMLHook.start_at_most_once`).
        """
        self.log.info(
            "Calling %s for membership %s, name %r",
            self.operation_name,
            request.get("membershipIdentifier"),
            request.get("name"),
        )
        # Values under sensitive keys are shown as *** (and were registered with the secrets masker).
        self.log.info("Request: %s", json.dumps(redacted_for_log(request), default=str, sort_keys=True))

        def start() -> JobRef:
            if find_started is None:
                return self.hook.start(self.kind, request)
            return self.hook.start_at_most_once(
                self.kind, request, find_started=find_started, attempts=self.durable_start_attempts
            )[0]

        job = self.start_when_quota_allows(context, start)
        self.log.info("Started %s %s", self.kind.label, job.arn)
        self.record_job(context, job)
        return job

    def start_when_quota_allows(self, context: Context, start: Callable[[], JobRef]) -> JobRef:
        """Make the start call; operators whose jobs count against a quota wait for a slot here."""
        return start()

    def record_job(self, context: Context, job: JobRef) -> None:
        """
        Point cancel-on-kill, XCom and the console link at ``job`` (after a start, or a reconnect).

        The ARN is pushed under its own key (apart from ``return_value``) so a task resumed after a
        deferral timeout can still cancel it; a trained model's version under ``version_xcom_key``.
        """
        if self._job == job:
            return
        self._job = job
        ti = context["ti"]
        ti.xcom_push(key=self.kind.arn_member_snake, value=job.arn)
        if job.version is not None:
            ti.xcom_push(key=self.version_xcom_key, value=job.version)
        self.persist_link(context, job)
        persist_logs_link(context, self, self.kind, job.arn, self.log_stream_prefix)

    def persist_link(self, context: Context, job: JobRef, collaboration_id: str | None = None) -> None:
        """Store the console link's data (XCom); the collaboration, once known, makes it precise."""
        try:
            self.link.persist(
                context=context,
                operator=self,
                region_name=self.hook.conn_region_name,
                aws_partition=self.hook.conn_partition,
                arn=job.arn,
                membership_id=self.request.get("membershipIdentifier"),
                collaboration_id=collaboration_id,
            )
        except Exception as error:  # a console link is never worth failing the task for
            self.log.debug("Could not persist the console link: %s", error)

    def trigger_for(self, job: JobRef) -> _CleanRoomsMLResourceTrigger:
        raise NotImplementedError

    def _target(self, job: JobRef) -> tuple[str, str, dict[str, Any]]:
        """(membership, ARN, extra Get/Cancel members) of ``job``, from the validated request."""
        extra = {self.kind.version_member: job.version} if self.kind.version_member and job.version else {}
        return str(self.request.get("membershipIdentifier") or ""), job.arn, extra

    def wait_for_job(self, context: Context, job: JobRef) -> Any:
        """Wait until the resource is ``ACTIVE`` (poll here, or defer to the triggerer); return the result."""
        if not self.wait_for_completion:
            return self.job_result(context, job)
        if self.deferrable:
            self.log.info("Deferring until %s %s is ACTIVE", self.kind.label, job.arn)
            # Airflow 3 applies no execution_timeout to a deferred task unless the deferral carries it;
            # when it expires the task resumes through resume_execution("__fail__"), which cancels.
            self.defer(
                trigger=self.trigger_for(job),
                method_name="execute_complete",
                timeout=self.execution_timeout,
            )
        membership, arn, extra = self._target(job)
        streamer = stream_sync_wait(
            enabled=self.print_log,
            kind=self.kind,
            arn=arn,
            log=self.log,
            aws=self._aws_hook_arguments(),
            stream_prefix=self.log_stream_prefix,
        )
        try:
            state = self.hook.wait_for(
                self.kind,
                membership,
                arn,
                waiter_delay=self.waiter_delay,
                waiter_max_attempts=self.waiter_max_attempts,
                on_poll=streamer.on_poll if streamer is not None else None,
                **extra,
            )
        except CleanRoomsMLWaitTimeoutError:
            self.cancel_job(job, reason=f"it is not ACTIVE after {self.waiter_max_attempts} checks")
            raise
        except CleanRoomsMLJobFailedError as failure:
            self._failure = failure
            raise
        if state.response.get("collaborationIdentifier"):
            self.persist_link(context, job, collaboration_id=state.response["collaborationIdentifier"])
        return self.job_result(context, job)

    def job_result(self, context: Context, job: JobRef) -> Any:
        """What the task returns (XCom ``return_value``): the resource ARN; its outlets' events say so too."""
        self.describe_outlet_events(context, job)
        return job.arn

    def describe_outlet_events(self, context: Context, job: JobRef) -> None:
        """
        Put the job's ARN, version, status and membership in the ``extra`` of the asset event of each
        outlet that names this kind of resource in this membership (:mod:`airflow_cleanrooms.assets`).
        """
        membership = str(self.request.get("membershipIdentifier") or "")
        outlets = outlets_of(self.outlets or [], self.kind, membership)
        if not outlets:
            return
        events = context.get("outlet_events")
        if events is None:  # a job that succeeded never fails its task over metadata
            self.log.warning("This Airflow gives the task no outlet_events: the asset events carry no extra")
            return
        status = self.kind.done_status if self.wait_for_completion else None
        extra = event_extra(job.arn, job.version, status, membership)
        for asset in outlets:
            events[asset].extra.update(extra)
        self.log.info("Asset event extra of %s: %s", ", ".join(a.uri for a in outlets), extra)

    def get_job_state(self, job: JobRef) -> ResourceState:
        """Read the resource's current status and ``statusDetails``."""
        membership, arn, extra = self._target(job)
        return self.hook.get_state(self.kind, membership, arn, **extra)

    # ---- lineage (the OpenLineage listener calls these; see airflow_cleanrooms.lineage) -------

    def lineage_inputs(self) -> list[Dataset]:
        """The datasets the request reads (from ``self.request``)."""
        return []

    def lineage_outputs(self, job: JobRef) -> list[Dataset]:
        """The datasets the job writes: by default the resource it creates."""
        return [resource_dataset(job.arn, job.version)]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Inputs, outputs and the job's run facets, once the task succeeded."""
        return self._operator_lineage(self.kind.done_status if self.wait_for_completion else None)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage:
        """The same, with the failed job's status and ``statusDetails`` (when it got that far)."""
        failure = self._failure
        if failure is None:
            return self._operator_lineage(None)
        return self._operator_lineage(failure.status, failure.status_details)

    def _operator_lineage(self, status: str | None, details: dict[str, Any] | None = None) -> OperatorLineage:
        inputs = self.lineage_inputs() if self.request else []
        job = self._job
        if job is None:  # failed before the start call: what it would have read, nothing written
            return operator_lineage(inputs, [])
        return operator_lineage(
            inputs, self.lineage_outputs(job), job_run_facets(job.arn, status, job.version, details)
        )

    # ---- deferral ----------------------------------------------------------------------------

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: :func:`~airflow_cleanrooms.wait_semantics.raise_for_wait_event`."""
        event = validate_execute_complete_event(event)
        job = self._job_from_xcom(context, event.get(self.kind.arn_member_snake))
        if job is None:
            raise AirflowException(f"Trigger event carries no {self.kind.arn_member_snake}: {event}")
        self._restore_request()
        self._job = job
        try:
            raise_for_wait_event(self.kind, job.arn, event, lambda: self.get_job_state(job), self.log)
        except CleanRoomsMLWaitTimeoutError:
            self.cancel_job(job, reason="the wait in the triggerer ended before it was ACTIVE")
            raise
        except CleanRoomsMLJobFailedError as failure:
            self._failure = failure
            raise
        return self.job_result(context, job)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        if next_method == _TRIGGER_FAIL_METHOD:
            # The deferral timed out (or the trigger crashed): the task fails; cancel what it started.
            job = self._job_from_xcom(context)
            if job is not None:
                self._restore_request()
                self.cancel_job(job, reason=f"the deferred task failed ({(next_kwargs or {}).get('error')})")
        return super().resume_execution(next_method, next_kwargs, context)

    def _restore_request(self) -> None:
        """After a resume the request is rebuilt from the re-rendered arguments (for its membership)."""
        if self.request:
            return
        try:
            self.build_request()
        except Exception as error:
            self.log.warning("Could not rebuild the request after resuming: %s", error)
            self.request = {"membershipIdentifier": getattr(self, "membership_identifier", None)}

    def _job_from_xcom(self, context: Context, arn: str | None = None) -> JobRef | None:
        """The job this task started, as recorded in XCom by :meth:`record_job` (``arn`` if known)."""
        ti = context["ti"]
        version: str | None = None
        try:
            arn = arn or ti.xcom_pull(task_ids=self.task_id, key=self.kind.arn_member_snake)
            if self.kind.version_member and arn:
                version = ti.xcom_pull(task_ids=self.task_id, key=self.version_xcom_key)
        except Exception as error:
            self.log.warning("Could not read the job from XCom: %s", error)
        return JobRef(str(arn), version) if arn else None

    # ---- cancel ------------------------------------------------------------------------------

    def on_kill(self) -> None:
        """Cancel the job this task started (SIGTERM, mark failed, ``execution_timeout``)."""
        if self._job is not None:
            self.cancel_job(self._job, reason="the task was killed")

    def cancel_job(self, job: JobRef, *, reason: str) -> bool:
        """Cancel the resource unless ``cancel_on_kill`` is off; never raises. Return whether it was asked."""
        if not self.cancel_on_kill or self.kind.cancel_operation is None:
            return False
        self.log.warning("Cancelling %s %s because %s", self.kind.label, job.arn, reason)
        membership, arn, extra = self._target(job)
        try:
            self.hook.cancel(self.kind, membership, arn, **extra)
        except Exception as error:
            self.log.warning("Could not cancel %s %s: %s", self.kind.label, job.arn, error)
            return False
        return True

    def _aws_hook_arguments(self) -> dict[str, Any]:
        """The AWS arguments of this task's hooks (for the CloudWatch Logs hook)."""
        return {
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "config": self.botocore_config,
        }

    def _trigger_common(self) -> dict[str, Any]:
        common: dict[str, Any] = {
            "waiter_delay": self.waiter_delay,
            "waiter_max_attempts": self.waiter_max_attempts,
            "aws_conn_id": self.aws_conn_id,
            "region_name": self.region_name,
            "verify": self.verify,
            "botocore_config": self.botocore_config,
            "max_requests_per_second": self.max_requests_per_second,
        }
        if self.print_log:
            common.update(
                print_log=True,
                log_stream_prefix=self.log_stream_prefix,
                log_mask_values=sensitive_values(self.request),
            )
        return common


class CleanRoomsMLStartTrainedModelInferenceJobOperator(
    CleanRoomsMLDurableMixin, CleanRoomsMLQuotaWaitMixin, CleanRoomsMLBaseOperator
):
    """
    Start a trained model inference job (``aws cleanroomsml start-trained-model-inference-job``).

    Returns the job ARN (XCom ``return_value``), so ``operator.output`` feeds a sensor.

    .. seealso::
        https://docs.aws.amazon.com/cli/latest/reference/cleanroomsml/start-trained-model-inference-job.html

    :param membership_identifier: The membership ID of the membership that contains the job. (templated)
    :param name: The name of the job. (templated)
    :param trained_model_arn: The ARN of the trained model used for this job. (templated)
    :param trained_model_version_identifier: The version of the trained model to use. (templated)
    :param configured_model_algorithm_association_arn: The ARN of the configured model algorithm
        association used for this job. (templated)
    :param resource_config: ``{"instanceType": ..., "instanceCount": ...}``. (templated)
    :param output_configuration: ``{"members": [{"accountId": ...}], "accept": ...}``. (templated)
    :param data_source: ``{"mlInputChannelArn": ...}``. (templated)
    :param description: The description of the job. (templated)
    :param container_execution_parameters: ``{"maxPayloadInMB": ...}``. (templated)
    :param environment: Environment variables for the inference container; values under
        sensitive-looking keys are masked in logs. (templated)
    :param kms_key_arn: The ARN of the KMS key encrypting the job's data. (templated)
    :param tags: Tags for the job. (templated)
    :param ml_model_inference_payer_account_id: The account that pays for the inference. (templated)

    Also takes ``cli_input_json``/``cli_input_yaml``, ``wait_for_completion``,
    ``waiter_delay``, ``waiter_max_attempts``,
    ``deferrable`` and ``cancel_on_kill`` (see :class:`CleanRoomsMLBaseOperator`) and the AWS
    arguments ``aws_conn_id``, ``region_name``, ``verify``, ``botocore_config``.

    :param durable: A retried task finds the job it already started instead of starting another:
        a job still running is waited on, an ``ACTIVE`` one makes the task succeed, a failed one is
        replaced (task state store on Airflow 3.3+, plus a lookup by an identity tag that also
        covers a crash right after the start call, deferrable mode and older Airflow). A name held
        by a running job of another task fails the task before any start. (default: ``True``; see
        :mod:`airflow_cleanrooms.operators.start`)
    :param quota_wait_timeout: A start refused by the job quotas (5 pending/in-progress inference jobs
        per membership, 10 per account by default) waits for a free slot (in the triggerer when
        ``deferrable``) and starts then; after this long (seconds or a ``timedelta``) the task fails
        naming the quota. A quota below 1 fails at once. (default: 6 hours; templated; see
        :mod:`airflow_cleanrooms.operators.start`)
    :param quota_poll_interval: Seconds between checks for a free slot. (default: 60)
    """

    operation_name = START_TRAINED_MODEL_INFERENCE_JOB
    kind = TRAINED_MODEL_INFERENCE_JOB
    link = CleanRoomsMLTrainedModelInferenceJobLink
    operator_extra_links = (CleanRoomsMLTrainedModelInferenceJobLink(), CleanRoomsMLContainerLogsLink())
    template_fields: Sequence[str] = (
        *_template_fields(START_TRAINED_MODEL_INFERENCE_JOB),
        "quota_wait_timeout",
    )
    template_fields_renderers = _renderers(START_TRAINED_MODEL_INFERENCE_JOB)

    def __init__(
        self,
        *,
        membership_identifier: str | None = None,
        name: str | None = None,
        trained_model_arn: str | None = None,
        trained_model_version_identifier: str | None = None,
        configured_model_algorithm_association_arn: str | None = None,
        resource_config: dict[str, Any] | str | None = None,
        output_configuration: dict[str, Any] | str | None = None,
        data_source: dict[str, Any] | str | None = None,
        description: str | None = None,
        container_execution_parameters: dict[str, Any] | str | None = None,
        environment: dict[str, str] | str | None = None,
        kms_key_arn: str | None = None,
        tags: dict[str, str] | str | None = None,
        ml_model_inference_payer_account_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_arguments={
                "membership_identifier": membership_identifier,
                "name": name,
                "trained_model_arn": trained_model_arn,
                "trained_model_version_identifier": trained_model_version_identifier,
                "configured_model_algorithm_association_arn": configured_model_algorithm_association_arn,
                "resource_config": resource_config,
                "output_configuration": output_configuration,
                "data_source": data_source,
                "description": description,
                "container_execution_parameters": container_execution_parameters,
                "environment": environment,
                "kms_key_arn": kms_key_arn,
                "tags": tags,
                "ml_model_inference_payer_account_id": ml_model_inference_payer_account_id,
            },
            **kwargs,
        )

    def trigger_for(self, job: JobRef) -> CleanRoomsMLTrainedModelInferenceJobCompleteTrigger:
        return CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
            membership_identifier=self._target(job)[0],
            trained_model_inference_job_arn=job.arn,
            cancel_on_kill=self.cancel_on_kill,
            **self._trigger_common(),
        )

    def lineage_inputs(self) -> list[Dataset]:
        """The trained model (at its version, if one is named) and the ML input channel scored."""
        model = self.request["trainedModelArn"]
        channel = self.request["dataSource"]["mlInputChannelArn"]
        return [
            resource_dataset(model, self.request.get("trainedModelVersionIdentifier")),
            resource_dataset(channel),
        ]

    def lineage_outputs(self, job: JobRef) -> list[Dataset]:
        """The membership's default output location (``GetMLConfiguration``), else the job."""
        location = self.hook.default_output_location(self.request["membershipIdentifier"])
        return [s3_dataset(location)] if location else [resource_dataset(job.arn)]


class CleanRoomsMLCreateTrainedModelOperator(
    CleanRoomsMLDurableMixin, CleanRoomsMLQuotaWaitMixin, CleanRoomsMLBaseOperator
):
    """
    Train a model (``aws cleanroomsml create-trained-model``) and wait until it is ``ACTIVE``.

    Returns the trained model ARN (XCom ``return_value``) and pushes the new version under the XCom
    key ``trained_model_version_identifier``.

    :param membership_identifier: The membership ID of the member that is creating the trained
        model. (templated)
    :param name: The name of the trained model. (templated)
    :param configured_model_algorithm_association_arn: The association of the algorithm to
        train. (templated)
    :param hyperparameters: Algorithm-specific parameters that influence training. (templated)
    :param environment: Environment variables for the training container; values under
        sensitive-looking keys are masked in logs. (templated)
    :param resource_config: ``{"instanceType": ..., "instanceCount": ..., "volumeSizeInGB": ...}``.
        (templated)
    :param stopping_condition: ``{"maxRuntimeInSeconds": ...}``. (templated)
    :param incremental_training_data_channels: ``[{"trainedModelArn": ..., "channelName": ...}]``.
        (templated)
    :param data_channels: ``[{"mlInputChannelArn": ..., "channelName": ...}]``. (templated)
    :param training_input_mode: ``File``, ``FastFile`` or ``Pipe`` (from the model). (templated)
    :param description: The description of the trained model. (templated)
    :param kms_key_arn: The ARN of the KMS key encrypting the model artifacts. (templated)
    :param tags: Tags for the trained model. (templated)
    :param ml_model_training_payer_account_id: The account that pays for the training. (templated)

    Also takes ``cli_input_json``/``cli_input_yaml``, ``wait_for_completion``,
    ``waiter_delay``, ``waiter_max_attempts``,
    ``deferrable``, ``cancel_on_kill`` and the AWS arguments.

    :param durable: A retried task finds the trained model (version) it already created instead of
        training another, as for the inference-job operator. (default: ``True``; see
        :mod:`airflow_cleanrooms.operators.start`)
    :param quota_wait_timeout: A start refused by the training-job quotas (5 pending/in-progress per
        membership, 10 per account by default) waits for a free slot and trains then; after this
        long (seconds or a ``timedelta``) the task fails naming the quota. A quota below 1 fails at
        once. (default: 6 hours; templated; see :mod:`airflow_cleanrooms.operators.start`)
    :param quota_poll_interval: Seconds between checks for a free slot. (default: 60)
    """

    operation_name = CREATE_TRAINED_MODEL
    kind = TRAINED_MODEL
    link = CleanRoomsMLTrainedModelLink
    operator_extra_links = (CleanRoomsMLTrainedModelLink(), CleanRoomsMLContainerLogsLink())
    template_fields: Sequence[str] = (*_template_fields(CREATE_TRAINED_MODEL), "quota_wait_timeout")
    template_fields_renderers = _renderers(CREATE_TRAINED_MODEL)

    def __init__(
        self,
        *,
        membership_identifier: str | None = None,
        name: str | None = None,
        configured_model_algorithm_association_arn: str | None = None,
        hyperparameters: dict[str, str] | str | None = None,
        environment: dict[str, str] | str | None = None,
        resource_config: dict[str, Any] | str | None = None,
        stopping_condition: dict[str, Any] | str | None = None,
        incremental_training_data_channels: list[dict[str, Any]] | str | None = None,
        data_channels: list[dict[str, Any]] | str | None = None,
        training_input_mode: str | None = None,
        description: str | None = None,
        kms_key_arn: str | None = None,
        tags: dict[str, str] | str | None = None,
        ml_model_training_payer_account_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_arguments={
                "membership_identifier": membership_identifier,
                "name": name,
                "configured_model_algorithm_association_arn": configured_model_algorithm_association_arn,
                "hyperparameters": hyperparameters,
                "environment": environment,
                "resource_config": resource_config,
                "stopping_condition": stopping_condition,
                "incremental_training_data_channels": incremental_training_data_channels,
                "data_channels": data_channels,
                "training_input_mode": training_input_mode,
                "description": description,
                "kms_key_arn": kms_key_arn,
                "tags": tags,
                "ml_model_training_payer_account_id": ml_model_training_payer_account_id,
            },
            **kwargs,
        )

    def trigger_for(self, job: JobRef) -> CleanRoomsMLTrainedModelCompleteTrigger:
        return CleanRoomsMLTrainedModelCompleteTrigger(
            membership_identifier=self._target(job)[0],
            trained_model_arn=job.arn,
            version_identifier=job.version,
            cancel_on_kill=self.cancel_on_kill,
            **self._trigger_common(),
        )

    def lineage_inputs(self) -> list[Dataset]:
        """The configured model algorithm association and each training data channel."""
        channels = [channel["mlInputChannelArn"] for channel in self.request.get("dataChannels") or []]
        association = self.request["configuredModelAlgorithmAssociationArn"]
        return [resource_dataset(arn) for arn in (association, *channels)]


class CleanRoomsMLCreateMLInputChannelOperator(CleanRoomsMLBaseOperator):
    """
    Create an ML input channel (``aws cleanroomsml create-ml-input-channel``) and wait until it is ``ACTIVE``.

    Returns the channel ARN (XCom ``return_value``). A channel cannot be cancelled, so
    ``cancel_on_kill`` has no effect here.

    :param membership_identifier: The membership ID of the member creating the channel. (templated)
    :param configured_model_algorithm_associations: The associations allowed to use the channel.
        (templated)
    :param input_channel: ``{"dataSource": {...}, "roleArn": ...}``. (templated)
    :param name: The name of the channel. (templated)
    :param retention_in_days: Days to keep the channel's data. (templated)
    :param description: The description of the channel. (templated)
    :param kms_key_arn: The ARN of the KMS key encrypting the channel's data. (templated)
    :param tags: Tags for the channel. (templated)
    :param payer_configuration: Who pays for the channel's compute. (templated)

    Also takes ``cli_input_json``/``cli_input_yaml``, ``wait_for_completion``,
    ``waiter_delay``, ``waiter_max_attempts``,
    ``deferrable`` and the AWS arguments.
    """

    operation_name = CREATE_ML_INPUT_CHANNEL
    kind = ML_INPUT_CHANNEL
    link = CleanRoomsMLInputChannelLink
    operator_extra_links = (CleanRoomsMLInputChannelLink(),)
    template_fields: Sequence[str] = _template_fields(CREATE_ML_INPUT_CHANNEL)
    template_fields_renderers = _renderers(CREATE_ML_INPUT_CHANNEL)

    def __init__(
        self,
        *,
        membership_identifier: str | None = None,
        configured_model_algorithm_associations: list[str] | str | None = None,
        input_channel: dict[str, Any] | str | None = None,
        name: str | None = None,
        retention_in_days: int | str | None = None,
        description: str | None = None,
        kms_key_arn: str | None = None,
        tags: dict[str, str] | str | None = None,
        payer_configuration: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            api_arguments={
                "membership_identifier": membership_identifier,
                "configured_model_algorithm_associations": configured_model_algorithm_associations,
                "input_channel": input_channel,
                "name": name,
                "retention_in_days": retention_in_days,
                "description": description,
                "kms_key_arn": kms_key_arn,
                "tags": tags,
                "payer_configuration": payer_configuration,
            },
            **kwargs,
        )

    def trigger_for(self, job: JobRef) -> CleanRoomsMLInputChannelActiveTrigger:
        return CleanRoomsMLInputChannelActiveTrigger(
            membership_identifier=self._target(job)[0], ml_input_channel_arn=job.arn, **self._trigger_common()
        )

    def lineage_inputs(self) -> list[Dataset]:
        """The configured model algorithm associations the channel is made for."""
        return [
            resource_dataset(arn) for arn in self.request.get("configuredModelAlgorithmAssociations") or []
        ]


__all__ = [
    "CleanRoomsMLBaseOperator",
    "CleanRoomsMLCreateMLInputChannelOperator",
    "CleanRoomsMLCreateTrainedModelOperator",
    "CleanRoomsMLStartTrainedModelInferenceJobOperator",
]

"""
Operator extra links to AWS Clean Rooms ML in the AWS console.

The console addresses Clean Rooms ML resources inside their collaboration
(``/cleanrooms/home?region=R#/collaborations/C``); the APIs the operators call return the membership,
not the collaboration, so the link opens the collaboration when it is known (a trained model's
``GetTrainedModel`` response carries ``collaborationIdentifier``) and the region's Clean Rooms ML
console otherwise. The persisted XCom also carries the resource ARN, so the link is never ambiguous
about which job the task started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink

from airflow_cleanrooms.container_logs import default_stream_prefix, log_group

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_cleanrooms.wait_semantics import ResourceKind

CLEAN_ROOMS_CONSOLE = BASE_AWS_CONSOLE_LINK + "/cleanrooms/home?region={region_name}"


class _CleanRoomsMLLink(BaseAwsLink):
    """Opens the resource's collaboration when known, else the region's Clean Rooms console."""

    format_str = CLEAN_ROOMS_CONSOLE + "#/collaborations/{collaboration_id}"

    def format_link(self, **kwargs: Any) -> str:
        if not kwargs.get("region_name") or not kwargs.get("aws_domain"):
            return ""
        if kwargs.get("collaboration_id"):
            return self.format_str.format(**kwargs)
        return CLEAN_ROOMS_CONSOLE.format(**kwargs) + "#/collaborations"


class CleanRoomsMLTrainedModelInferenceJobLink(_CleanRoomsMLLink):
    """Console link for a trained model inference job."""

    name = "Clean Rooms ML Inference Job"
    key = "cleanrooms_ml_trained_model_inference_job"


class CleanRoomsMLTrainedModelLink(_CleanRoomsMLLink):
    """Console link for a trained model."""

    name = "Clean Rooms ML Trained Model"
    key = "cleanrooms_ml_trained_model"


class CleanRoomsMLInputChannelLink(_CleanRoomsMLLink):
    """Console link for an ML input channel."""

    name = "Clean Rooms ML Input Channel"
    key = "cleanrooms_ml_input_channel"


def console_hash_value(value: str) -> str:
    """
    A value inside the CloudWatch console's ``#logsV2:`` hash: percent-encoded twice, ``%`` -> ``$``.

    ``/aws/cleanroomsml/X`` -> ``$252Faws$252Fcleanroomsml$252FX`` (the console's own links do this).
    """
    return quote(quote(value, safe=""), safe="").replace("%", "$")


class CleanRoomsMLContainerLogsLink(BaseAwsLink):
    """
    The job's container logs in the CloudWatch console: its log group, in its Region and partition,
    listing only the log streams whose names start with the job's stream prefix.

    Clean Rooms ML writes what the model container prints to ``/aws/cleanroomsml/TrainedModelInferenceJobs``
    or ``/aws/cleanroomsml/TrainedModels`` (when the association's privacy configuration allows it).
    AWS does not document the streams' names, so the link narrows by a prefix
    (:func:`airflow_cleanrooms.container_logs.default_stream_prefix`, or the task's
    ``log_stream_prefix``) rather than pointing at one stream.
    """

    name = "Clean Rooms ML Container Logs"
    key = "cleanrooms_ml_container_logs"
    format_str = BASE_AWS_CONSOLE_LINK + "/cloudwatch/home?region={region_name}#logsV2:log-groups"

    def format_link(self, **kwargs: Any) -> str:
        if not (kwargs.get("region_name") and kwargs.get("aws_domain") and kwargs.get("log_group")):
            return ""
        url = BASE_AWS_CONSOLE_LINK.format(**kwargs) + (
            f"/cloudwatch/home?region={kwargs['region_name']}#logsV2:log-groups/log-group/"
            f"{console_hash_value(kwargs['log_group'])}"
        )
        if kwargs.get("stream_prefix"):
            url += f"$3FlogStreamNameFilter$3D{console_hash_value(kwargs['stream_prefix'])}"
        return url


def persist_logs_link(
    context: Context, task: Any, kind: ResourceKind, arn: str, stream_prefix: str | None
) -> None:
    """
    Store the data of the task's container logs link (jobs that run a container only).

    :param task: the operator or sensor; its hook gives the Region and partition.
    :param stream_prefix: the user's ``log_stream_prefix``; the job's default prefix when ``None``.
    """
    group = log_group(kind)
    if group is None:
        return
    try:
        CleanRoomsMLContainerLogsLink.persist(
            context=context,
            operator=task,
            region_name=task.hook.conn_region_name,
            aws_partition=task.hook.conn_partition,
            log_group=group,
            stream_prefix=stream_prefix or default_stream_prefix(arn),
        )
    except Exception as error:  # a link is never worth failing the task for
        task.log.debug("Could not persist the container logs link: %s", error)

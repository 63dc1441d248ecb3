"""
OpenLineage for Clean Rooms ML: what a training, inference or ML-input-channel task read and wrote.

No OpenLineage naming convention exists for Clean Rooms ML. Its resources are named the way AWS
Glue's lineage names Glue tables, by ARN: the namespace is the ARN up to the account
(``arn:aws:cleanrooms-ml:us-east-1:111122223333``), the name is the rest
(``membership/<membership id>/trained-model/<model id>``). So a trained model is the same dataset
whether a training task wrote it or an inference task read it, and a catalog chains the two. A trained
model's version is the dataset's ``version`` facet.

An inference job writes its results to the membership's default output location
(``GetMLConfiguration``). When the membership has one, the output is that S3 location, named as the
amazon provider names S3 datasets (namespace ``s3://<bucket>``, name ``<key>``), so a catalog joins it
to whatever reads it next. Otherwise the output is the job itself.

Each event carries the job: ``externalQuery`` (the standard facet; its id is the job's ARN) and
``cleanroomsMLJob`` (ARN, version, status and, when the job failed, its ``statusDetails``).

OpenLineage is imported inside the functions, through ``airflow.providers.common.compat.openlineage``
where it has the class: the provider works without OpenLineage installed, and only the OpenLineage
listener calls these.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage

#: The ARN service name of Clean Rooms ML (``arn:aws:cleanrooms-ml:...``).
ARN_SERVICE = "cleanrooms-ml"
#: Where the ``cleanroomsMLJob`` run facet's JSON schema lives.
JOB_FACET_SCHEMA = (
    "https://raw.githubusercontent.com/airflow-cleanrooms/airflow-cleanrooms/main/"
    "airflow_cleanrooms/CleanRoomsMLJobRunFacet.json"
)


@dataclass(frozen=True)
class ResourceName:
    """A Clean Rooms ML resource's OpenLineage name: ``namespace`` (ARN up to the account) and ``name``."""

    namespace: str
    name: str

    @classmethod
    def from_arn(cls, arn: str) -> ResourceName:
        """
        Split ``arn:<partition>:cleanrooms-ml:<region>:<account>:<resource>``.

        :raises ValueError: ``arn`` is not a Clean Rooms ML ARN (the message shows it and the form).
        """
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != ARN_SERVICE or not all(parts[1:]):
            raise ValueError(
                f"{arn!r} is not a Clean Rooms ML ARN "
                f"(arn:<partition>:{ARN_SERVICE}:<region>:<account>:<resource>)"
            )
        return cls(":".join(parts[:5]), parts[5])


def resource_dataset(arn: str, version: str | None = None) -> Dataset:
    """The dataset of a Clean Rooms ML resource (with a ``version`` facet for a trained model's version)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    resource = ResourceName.from_arn(arn)
    facets: dict[str, Any] = {}
    if version:
        from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

        facets["version"] = DatasetVersionDatasetFacet(datasetVersion=version)
    return Dataset(namespace=resource.namespace, name=resource.name, facets=facets)


def s3_dataset(uri: str) -> Dataset:
    """
    An S3 location named as the amazon provider names a job's S3 output: namespace ``s3://<bucket>``,
    name ``<key>`` as given, as ``SageMakerBaseOperator.path_to_s3_dataset`` does for SageMaker jobs (a
    prefix keeps its trailing slash). Not through the ``s3`` asset converter: an ``Asset`` URI drops
    that slash, so the job's output would no longer be the dataset SageMaker-style readers name.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return Dataset(namespace=f"s3://{bucket}", name=key or "/")


@functools.cache
def _job_facet_class() -> Callable[..., RunFacet]:
    """``CleanRoomsMLJobRunFacet``, defined on first use (OpenLineage is an optional import)."""
    import attrs
    from airflow.providers.common.compat.openlineage.facet import RunFacet

    @attrs.define
    class CleanRoomsMLJobRunFacet(RunFacet):  # type: ignore[misc,valid-type]
        """The Clean Rooms ML job a task ran: its ARN, version, status and ``statusDetails``."""

        arn: str
        status: str | None = None
        version: str | None = None
        statusDetails: dict[str, Any] | None = None

        @staticmethod
        def _get_schema() -> str:
            return JOB_FACET_SCHEMA

    return CleanRoomsMLJobRunFacet


def job_run_facets(
    arn: str, status: str | None, version: str | None = None, status_details: dict[str, Any] | None = None
) -> dict[str, RunFacet]:
    """``externalQuery`` (the job's ARN, a standard facet) and ``cleanroomsMLJob``."""
    from airflow.providers.common.compat.openlineage.facet import ExternalQueryRunFacet

    return {
        "externalQuery": ExternalQueryRunFacet(
            externalQueryId=arn, source=ResourceName.from_arn(arn).namespace
        ),
        "cleanroomsMLJob": _job_facet_class()(
            arn=arn, status=status, version=version, statusDetails=status_details
        ),
    }


def operator_lineage(
    inputs: list[Dataset], outputs: list[Dataset], run_facets: dict[str, RunFacet] | None = None
) -> OperatorLineage:
    """What ``get_openlineage_facets_on_complete``/``_on_failure`` return."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets or {})

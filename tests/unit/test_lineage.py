"""
OpenLineage of the training, inference and ML-input-channel operators: the exact ``OperatorLineage``
each returns on success and on failure (as the amazon provider's tests compare theirs), with every
AWS call answered by botocore's Stubber.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any

import attrs
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY

from airflow_cleanrooms.exceptions import CleanRoomsMLJobFailedError
from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateMLInputChannelOperator,
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)
from tests.unit.unit_support import (
    ACCOUNT,
    ASSOCIATION_ARN,
    CHANNEL_ARGS,
    CHANNEL_ARN,
    GET_JOB,
    GET_MODEL,
    INFERENCE_REQUEST,
    JOB_ARN,
    MEMBERSHIP,
    MODEL_ARN,
    VERSION,
    channel_response,
    expect_durable_start,
    job_response,
    make_operator,
    model_response,
    needs_model_versions,
    with_version,
)

needs_openlineage = pytest.mark.skipif(
    importlib.util.find_spec("airflow.providers.openlineage") is None,
    reason="the OpenLineage provider is not installed (the main and MWAA stages install it)",
)
NAMESPACE = f"arn:aws:cleanrooms-ml:us-east-1:{ACCOUNT}"
DETAILS = {"statusCode": "ContainerError", "message": "exit code 137"}
OUTPUT_LOCATION = "s3://scores-bucket/churn/weekly/"


def ol() -> SimpleNamespace:
    """The OpenLineage classes the expected values are built from."""
    from airflow.providers.common.compat.openlineage.facet import Dataset, ExternalQueryRunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    return SimpleNamespace(
        Dataset=Dataset,
        DatasetVersionDatasetFacet=DatasetVersionDatasetFacet,
        ExternalQueryRunFacet=ExternalQueryRunFacet,
        OperatorLineage=OperatorLineage,
    )


def dataset(name: str, version: str | None = None) -> Any:
    facet = ol()
    facets = {"version": facet.DatasetVersionDatasetFacet(datasetVersion=version)} if version else {}
    return facet.Dataset(namespace=NAMESPACE, name=name, facets=facets)


def job_facet(lineage: Any) -> dict[str, Any]:
    """The ``cleanroomsMLJob`` run facet's fields (without the producer and schema URL)."""
    fields = attrs.asdict(lineage.run_facets["cleanroomsMLJob"])
    assert fields.pop("_schemaURL").endswith("/CleanRoomsMLJobRunFacet.json")
    fields.pop("_producer")
    return fields


def expected(inputs: list[Any], outputs: list[Any], arn: str, lineage: Any) -> Any:
    """The lineage wanted, with the job facet taken from ``lineage`` (its fields are checked apart)."""
    facet = ol()
    run_facets = {
        "externalQuery": facet.ExternalQueryRunFacet(externalQueryId=arn, source=NAMESPACE),
        "cleanroomsMLJob": lineage.run_facets["cleanroomsMLJob"],
    }
    return facet.OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)


MODEL = f"membership/{MEMBERSHIP}/trained-model/model-1"
CHANNEL = f"membership/{MEMBERSHIP}/ml-input-channel/channel-1"
ASSOCIATION = f"membership/{MEMBERSHIP}/configured-model-algorithm-association/assoc-1"
JOB = f"membership/{MEMBERSHIP}/trained-model-inference-job/job-1"
ML_CONFIGURATION = {"membershipIdentifier": MEMBERSHIP}


def inference(stub_for: Any, context: Any, final: str, details: dict[str, str] | None = None) -> Any:
    """A sync inference task that started its job and saw it reach ``final``; and its stubber."""
    op = make_operator(CleanRoomsMLStartTrainedModelInferenceJobOperator, task_id="score")
    stubber = stub_for(op)
    expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, {"trainedModelInferenceJobArn": JOB_ARN})
    stubber.add_response("get_trained_model_inference_job", job_response(final, details), GET_JOB)
    if final == "ACTIVE":
        assert op.execute(context) == JOB_ARN
    else:
        with pytest.raises(CleanRoomsMLJobFailedError):
            op.execute(context)
    return op, stubber


@needs_openlineage
class TestInference:
    def test_complete_writes_the_membership_output_location(self, stub_for, context) -> None:
        op, stubber = inference(stub_for, context, "ACTIVE")
        stubber.add_response(
            "get_ml_configuration",
            {
                "membershipIdentifier": MEMBERSHIP,
                "defaultOutputLocation": {
                    "destination": {"s3Destination": {"s3Uri": OUTPUT_LOCATION}},
                    "roleArn": f"arn:aws:iam::{ACCOUNT}:role/cleanrooms-ml",
                },
                "createTime": "2026-01-01T00:00:00Z",
                "updateTime": "2026-01-01T00:00:00Z",
            },
            ML_CONFIGURATION,
        )
        lineage = op.get_openlineage_facets_on_complete(context["ti"])
        s3 = ol().Dataset(namespace="s3://scores-bucket", name="churn/weekly/")
        assert lineage == expected([dataset(MODEL), dataset(CHANNEL)], [s3], JOB_ARN, lineage)
        assert job_facet(lineage) == {
            "arn": JOB_ARN,
            "status": "ACTIVE",
            "version": None,
            "statusDetails": None,
        }

    def test_complete_without_an_ml_configuration_writes_the_job(self, stub_for, context) -> None:
        op, stubber = inference(stub_for, context, "ACTIVE")
        stubber.add_client_error(
            "get_ml_configuration", "ResourceNotFoundException", "no configuration", 404, ML_CONFIGURATION
        )
        lineage = op.get_openlineage_facets_on_complete(context["ti"])
        assert lineage == expected([dataset(MODEL), dataset(CHANNEL)], [dataset(JOB)], JOB_ARN, lineage)

    @needs_model_versions
    def test_a_named_model_version_is_the_input_dataset_version(self) -> None:
        op = make_operator(
            CleanRoomsMLStartTrainedModelInferenceJobOperator, trained_model_version_identifier=VERSION
        )
        op.build_request()
        assert op.lineage_inputs() == [dataset(MODEL, VERSION), dataset(CHANNEL)]

    def test_failure_carries_the_status_details(self, stub_for, context) -> None:
        op, stubber = inference(stub_for, context, "CREATE_FAILED", DETAILS)
        stubber.add_client_error(
            "get_ml_configuration", "AccessDeniedException", "denied", 403, ML_CONFIGURATION
        )
        lineage = op.get_openlineage_facets_on_failure(context["ti"])
        assert lineage == expected([dataset(MODEL), dataset(CHANNEL)], [dataset(JOB)], JOB_ARN, lineage)
        assert job_facet(lineage) == {
            "arn": JOB_ARN,
            "status": "CREATE_FAILED",
            "version": None,
            "statusDetails": DETAILS,
        }

    def test_failure_before_the_start_names_the_inputs_only(self, stub_for, context) -> None:
        op = make_operator(CleanRoomsMLStartTrainedModelInferenceJobOperator)
        stubber = stub_for(op)
        stubber.add_response(
            "list_trained_model_inference_jobs",
            {"trainedModelInferenceJobs": []},
            {"membershipIdentifier": MEMBERSHIP, "maxResults": ANY},
        )
        stubber.add_client_error(
            "start_trained_model_inference_job", "AccessDeniedException", "not allowed", 403
        )
        with pytest.raises(ClientError, match="not allowed"):
            op.execute(context)
        lineage = op.get_openlineage_facets_on_failure(context["ti"])
        assert lineage == ol().OperatorLineage(inputs=[dataset(MODEL), dataset(CHANNEL)], outputs=[])


@needs_openlineage
class TestTraining:
    def test_complete_reads_the_association_and_channels_and_writes_the_model_version(
        self, stub_for, context
    ) -> None:
        op = make_operator(CleanRoomsMLCreateTrainedModelOperator, deferrable=True)
        context["ti"].xcoms["trained_model_version_identifier"] = VERSION
        stub_for(op)
        op.execute_complete(context, {"status": "success", "trained_model_arn": MODEL_ARN})
        lineage = op.get_openlineage_facets_on_complete(context["ti"])
        assert lineage == expected(
            [dataset(ASSOCIATION), dataset(CHANNEL)], [dataset(MODEL, VERSION)], MODEL_ARN, lineage
        )
        assert job_facet(lineage) == {
            "arn": MODEL_ARN,
            "status": "ACTIVE",
            "version": VERSION,
            "statusDetails": None,
        }

    def test_deferred_failure_carries_the_status_details(self, stub_for, context) -> None:
        context["ti"].xcoms["trained_model_version_identifier"] = VERSION
        op = make_operator(CleanRoomsMLCreateTrainedModelOperator, deferrable=True)
        stub_for(op).add_response(
            "get_trained_model", model_response("CREATE_FAILED", DETAILS), with_version(GET_MODEL)
        )
        with pytest.raises(CleanRoomsMLJobFailedError):
            op.execute_complete(context, {"status": "error", "message": "m", "trained_model_arn": MODEL_ARN})
        lineage = op.get_openlineage_facets_on_failure(context["ti"])
        assert lineage.outputs == [dataset(MODEL, VERSION)]
        assert job_facet(lineage) == {
            "arn": MODEL_ARN,
            "status": "CREATE_FAILED",
            "version": VERSION,
            "statusDetails": DETAILS,
        }


@needs_openlineage
class TestMLInputChannel:
    def test_complete_reads_the_associations_and_writes_the_channel(self, stub_for, context) -> None:
        op = make_operator(CleanRoomsMLCreateMLInputChannelOperator)
        stubber = stub_for(op)
        request = {
            "membershipIdentifier": MEMBERSHIP,
            "configuredModelAlgorithmAssociations": [ASSOCIATION_ARN],
            "inputChannel": CHANNEL_ARGS["input_channel"],
            "name": "channel",
            "retentionInDays": 30,
        }
        stubber.add_response("create_ml_input_channel", {"mlInputChannelArn": CHANNEL_ARN}, request)
        stubber.add_response(
            "get_ml_input_channel",
            channel_response("ACTIVE"),
            {"membershipIdentifier": MEMBERSHIP, "mlInputChannelArn": CHANNEL_ARN},
        )
        assert op.execute(context) == CHANNEL_ARN
        lineage = op.get_openlineage_facets_on_complete(context["ti"])
        assert lineage == expected([dataset(ASSOCIATION)], [dataset(CHANNEL)], CHANNEL_ARN, lineage)


def test_not_a_clean_rooms_ml_arn_is_named_in_the_error() -> None:
    from airflow_cleanrooms.lineage import ResourceName

    with pytest.raises(ValueError, match=r"'arn:aws:s3:::bucket' is not a Clean Rooms ML ARN"):
        ResourceName.from_arn("arn:aws:s3:::bucket")


def test_the_operators_import_and_run_without_openlineage() -> None:
    """Nothing imports OpenLineage until the listener asks for lineage (it is an optional extra)."""
    script = textwrap.dedent(
        """
        import sys

        import airflow_cleanrooms.lineage
        import airflow_cleanrooms.operators.cleanrooms_ml

        print(sorted(m for m in sys.modules if m.split(".")[0] == "openlineage"))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

"""The ``cleanrooms-ml://`` asset scheme and the asset events the operators describe."""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import urlsplit

import pytest
from airflow.providers.common.compat.assets import Asset

try:
    from airflow.sdk.execution_time.context import OutletEventAccessors
except ImportError:  # Airflow 2.11
    from airflow.utils.context import OutletEventAccessors  # type: ignore[no-redef,attr-defined]

from airflow_cleanrooms.assets import (
    convert_asset_to_openlineage,
    create_asset,
    outlets_of,
    sanitize_uri,
)
from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS
from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL, TRAINED_MODEL_INFERENCE_JOB
from tests.unit.unit_support import (
    GET_JOB,
    INFERENCE_REQUEST,
    JOB_ARN,
    MEMBERSHIP,
    MODEL_ARN,
    VERSION,
    expect_durable_start,
    job_response,
    make_operator,
)

OTHER_MEMBERSHIP = "99999999-8888-7777-6666-555555555555"
MODEL_ASSET = f"cleanrooms-ml://{MEMBERSHIP}/trained-model/churn"
SCORES_ASSET = f"cleanrooms-ml://{MEMBERSHIP}/trained-model-inference-job/churn-scores"


class TestScheme:
    def test_a_valid_uri_is_kept_and_airflow_applies_the_check(self) -> None:
        assert sanitize_uri(urlsplit(MODEL_ASSET)) == urlsplit(MODEL_ASSET)
        # Airflow finds the check through the provider info ("asset-uris"; "dataset-uris" on 2.11, which
        # only warns unless [core] strict_dataset_uri_validation is set).
        refused = (
            pytest.raises(ValueError, match="'not-a-uuid' is not a membership id")
            if AIRFLOW_V_3_0_PLUS
            else pytest.warns(UserWarning, match="'not-a-uuid' is not a membership id")
        )
        with refused:
            Asset("cleanrooms-ml://not-a-uuid/trained-model/churn")

    @pytest.mark.parametrize(
        ("uri", "message"),
        [
            ("cleanrooms-ml://nope/trained-model/churn", r"'nope' is not a membership id \(a UUID\)"),
            (
                f"cleanrooms-ml://{MEMBERSHIP}/model/churn",
                r"path '/model/churn' does not fit "
                r".*<trained-model-inference-job\|trained-model\|ml-input-channel>",
            ),
            (f"cleanrooms-ml://{MEMBERSHIP}/trained-model", "does not fit"),
            (f"cleanrooms-ml://{MEMBERSHIP}/trained-model/a b", r"label 'a b' is not 1-128 letters"),
        ],
    )
    def test_a_bad_uri_names_the_part_and_what_is_allowed(self, uri: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            sanitize_uri(urlsplit(uri))

    def test_the_factory_builds_the_uri(self) -> None:
        asset = create_asset(membership_id=MEMBERSHIP, resource_type="trained-model", label="churn")
        assert asset.uri == MODEL_ASSET

    @pytest.mark.skipif(
        importlib.util.find_spec("airflow.providers.openlineage") is None,
        reason="the OpenLineage provider is not installed (the main and MWAA stages install it)",
    )
    def test_openlineage_names_it_by_membership_type_and_label(self) -> None:
        from airflow.providers.common.compat.openlineage.facet import Dataset

        assert convert_asset_to_openlineage(Asset(MODEL_ASSET), None) == Dataset(
            namespace=f"cleanrooms-ml://{MEMBERSHIP}", name="trained-model/churn"
        )

    def test_outlets_of_a_kind_and_membership(self) -> None:
        outlets = [
            Asset(MODEL_ASSET),
            Asset(SCORES_ASSET),
            Asset(f"cleanrooms-ml://{OTHER_MEMBERSHIP}/trained-model/churn"),
            Asset("s3://bucket/key"),
        ]
        assert outlets_of(outlets, TRAINED_MODEL, MEMBERSHIP) == [Asset(MODEL_ASSET)]
        assert outlets_of(outlets, TRAINED_MODEL_INFERENCE_JOB, MEMBERSHIP) == [Asset(SCORES_ASSET)]


def run_inference(stub_for: Any, context: dict[str, Any], outlets: list[Asset]) -> OutletEventAccessors:
    events = OutletEventAccessors()
    context["outlet_events"] = events
    op = make_operator(CleanRoomsMLStartTrainedModelInferenceJobOperator, outlets=outlets)
    stubber = stub_for(op)
    expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, {"trainedModelInferenceJobArn": JOB_ARN})
    stubber.add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
    assert op.execute(context) == JOB_ARN
    return events


class TestOutletEvents:
    def test_an_inference_outlet_gets_the_job(self, stub_for, context) -> None:
        scores = Asset(SCORES_ASSET)
        other = Asset(f"cleanrooms-ml://{OTHER_MEMBERSHIP}/trained-model-inference-job/churn-scores")
        events = run_inference(stub_for, context, [scores, other, Asset("s3://bucket/key")])
        assert events[scores].extra == {
            "arn": JOB_ARN,
            "version": None,
            "status": "ACTIVE",
            "membership": MEMBERSHIP,
        }
        assert events[other].extra == {}  # another membership's: not this task's job

    def test_a_deferred_training_outlet_gets_the_model_and_its_version(self, stub_for, context) -> None:
        model = Asset(MODEL_ASSET)
        events = OutletEventAccessors()
        context["outlet_events"] = events
        context["ti"].xcoms["trained_model_version_identifier"] = VERSION
        op = make_operator(CleanRoomsMLCreateTrainedModelOperator, deferrable=True, outlets=[model])
        stub_for(op)
        assert (
            op.execute_complete(context, {"status": "success", "trained_model_arn": MODEL_ARN}) == MODEL_ARN
        )
        assert events[model].extra == {
            "arn": MODEL_ARN,
            "version": VERSION,
            "status": "ACTIVE",
            "membership": MEMBERSHIP,
        }

    def test_without_outlets_nothing_is_asked_of_the_context(self, stub_for, context) -> None:
        op = make_operator(CleanRoomsMLStartTrainedModelInferenceJobOperator)  # no outlet_events in context
        stubber = stub_for(op)
        expect_durable_start(
            stubber, context["ti"], INFERENCE_REQUEST, {"trainedModelInferenceJobArn": JOB_ARN}
        )
        stubber.add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
        assert op.execute(context) == JOB_ARN

    def test_a_context_without_outlet_events_does_not_fail_a_finished_job(
        self, stub_for, context, capsys
    ) -> None:
        op = make_operator(CleanRoomsMLStartTrainedModelInferenceJobOperator, outlets=[Asset(SCORES_ASSET)])
        stubber = stub_for(op)
        expect_durable_start(
            stubber, context["ti"], INFERENCE_REQUEST, {"trainedModelInferenceJobArn": JOB_ARN}
        )
        stubber.add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
        assert op.execute(context) == JOB_ARN  # context has no "outlet_events"
        assert "gives the task no outlet_events" in capsys.readouterr().out

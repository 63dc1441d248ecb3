"""
The example DAGs' params carry the botocore model's rules, so a bad run conf is refused before a run.

Validated twice: through the DAG's own ``ParamsDict`` (what ``dag.test``/task runtime do) and through
the serialized DAG's params (what the API server checks when "Trigger DAG" posts the form).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from airflow_cleanrooms.compat import ParamValidationError
from airflow_cleanrooms.param_schemas import member_schema, shape_schema
from airflow_cleanrooms.service_model import enum_values, input_members, shape_limits
from tests.dags.dags_support import INFERENCE, TRAIN_AND_INFER

OP = "StartTrainedModelInferenceJob"


def validate_like_the_dag(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


def validate_like_the_api(dag: Any, conf: dict[str, Any]) -> dict[str, Any]:
    try:
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:  # Airflow < 3.2
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer  # type: ignore[assignment]

    serialized = Serializer.deserialize_dag(Serializer.serialize_dag(dag))
    if hasattr(serialized.params, "deep_merge"):
        try:
            return serialized.params.deep_merge(conf).validate()
        except ParamValidationError:
            raise
        except ValueError as error:  # Airflow 3.2: "Invalid input for param <name>: <reason>"
            raise ParamValidationError(str(error)) from error
    return validate_like_the_dag(serialized, conf)  # how Airflow < 3.2 validates a run's conf


VALIDATORS = [validate_like_the_dag, validate_like_the_api]


@pytest.fixture(scope="module")
def inference_dag(repo_dag_bag: Any) -> Any:
    return repo_dag_bag.dags[INFERENCE]


@pytest.mark.parametrize("validate", VALIDATORS)
@pytest.mark.parametrize("dag_id", [INFERENCE, TRAIN_AND_INFER])
def test_defaults_are_valid(repo_dag_bag: Any, dag_id: str, validate: Any) -> None:
    resolved = validate(repo_dag_bag.dags[dag_id], {})
    assert resolved["membership_id"]


@pytest.mark.parametrize("validate", VALIDATORS)
def test_good_values_pass(inference_dag: Any, validate: Any) -> None:
    instance_type = enum_values("InferenceInstanceType")[-1]
    _, high = shape_limits(input_members(OP)["resourceConfig"].members["instanceCount"])
    resolved = validate(
        inference_dag,
        {"instance_type": instance_type, "instance_count": high, "receiver_account": "444455556666"},
    )
    assert resolved["instance_type"] == instance_type
    assert resolved["instance_count"] == high


@pytest.mark.parametrize("validate", VALIDATORS)
@pytest.mark.parametrize(
    ("param", "bad_value", "complaint"),
    [
        ("instance_type", "ml.m5.huge", "is not one of"),
        ("instance_type", "ML.M5.XLARGE", "is not one of"),
        ("instance_count", 0, "less than the minimum"),
        ("instance_count", 11, "greater than the maximum"),
        ("instance_count", "2", "is not of type 'integer'"),
        ("receiver_account", "12345", "is too short"),
        ("receiver_account", "12345678901a", "does not match"),
        ("receiver_account", "1234567890123", "is too long"),
        ("membership_id", "not-a-uuid", "is too short"),
        ("membership_id", "ABCDEFAB-0000-4000-8000-000000000000", "does not match"),
        ("trained_model_arn", "arn:aws:s3:::bucket/trained-model/x", "does not match"),
        (
            "ml_input_channel_arn",
            "arn:aws:cleanrooms-ml:us-east-1:111122223333:membership/x",
            "does not match",
        ),
        ("tags", {"AWS:owner": "me"}, "should not be valid"),
        ("tags", {"k" * 129: "v"}, "is too long"),
        ("tags", {"team": 7}, "is not of type 'string'"),
        ("environment", {"1BAD": "x"}, "does not match"),
        ("environment", {f"V{i}": "x" for i in range(17)}, "has too many properties"),
        ("environment", "SCORE=1", "is not of type 'object'"),
    ],
)
def test_bad_values_are_refused(
    inference_dag: Any, validate: Any, param: str, bad_value: Any, complaint: str
) -> None:
    with pytest.raises(ParamValidationError) as refused:
        validate(inference_dag, {param: bad_value})
    assert param in str(refused.value) or complaint in str(refused.value)
    assert complaint in str(refused.value)


def test_schemas_come_from_the_installed_model(inference_dag: Any) -> None:
    schemas = {name: param.schema for name, param in inference_dag.params.items()}
    assert schemas["instance_type"]["enum"] == enum_values("InferenceInstanceType")
    count_shape = input_members(OP)["resourceConfig"].members["instanceCount"]
    assert (schemas["instance_count"]["minimum"], schemas["instance_count"]["maximum"]) == shape_limits(
        count_shape
    )
    assert schemas["membership_id"]["pattern"] == member_schema(OP, "membershipIdentifier")["pattern"]
    assert schemas["trained_model_arn"]["pattern"] == member_schema(OP, "trainedModelArn")["pattern"]
    assert schemas["tags"]["maxProperties"] == shape_limits(input_members(OP)["tags"])[1]
    assert schemas["environment"] == {**shape_schema("InferenceEnvironmentMap"), "title": "Environment"}


def test_train_and_infer_refuses_a_training_instance_type_only_valid_for_inference(repo_dag_bag: Any) -> None:
    dag = repo_dag_bag.dags[TRAIN_AND_INFER]
    inference_only = sorted(set(enum_values("InferenceInstanceType")) - set(enum_values("InstanceType")))
    if not inference_only:
        pytest.skip("every inference instance type is also a training instance type in this model")
    with pytest.raises(ParamValidationError, match="training_instance_type"):
        validate_like_the_dag(dag, {"training_instance_type": inference_only[0]})
    assert validate_like_the_dag(dag, {"inference_instance_type": inference_only[0]})


@pytest.mark.parametrize("dag_id", [INFERENCE, TRAIN_AND_INFER])
def test_name_prefix_leaves_room_for_the_run_suffix(repo_dag_bag: Any, dag_id: str) -> None:
    dag = repo_dag_bag.dags[dag_id]
    longest_prefix = "p" * dag.params.get_param("name_prefix").schema["maxLength"]
    validate_like_the_dag(dag, {"name_prefix": longest_prefix})
    with pytest.raises(ParamValidationError):
        validate_like_the_dag(dag, {"name_prefix": longest_prefix + "p"})
    longest_name = (
        f"{longest_prefix}-scores-20260102T030405"
        if dag_id == TRAIN_AND_INFER
        else (f"{longest_prefix}-20260102T030405")
    )
    assert len(longest_name) <= member_schema(OP, "name")["maxLength"]

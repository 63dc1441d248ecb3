"""The example DAGs parse, chain their tasks in the documented order and wait the way they say."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dags.dags_support import INFERENCE, INFERENCE_TASKS, TRAIN_AND_INFER, TRAIN_AND_INFER_TASKS

ALL_DAG_IDS = [INFERENCE, f"{INFERENCE}_deferrable", TRAIN_AND_INFER, f"{TRAIN_AND_INFER}_deferrable"]
#: The asset pair (dags/example_cleanrooms_ml_assets.py): its tasks wait themselves, deferred.
RETRAIN, SCORE = "example_cleanrooms_ml_retrain", "example_cleanrooms_ml_score_new_model"


def _chain(dag: Any) -> list[str]:
    """The DAG's tasks as one linear chain (fails if the DAG is not a single chain)."""
    roots = [task for task in dag.tasks if not task.upstream_task_ids]
    assert len(roots) == 1, f"{dag.dag_id} has several roots: {[t.task_id for t in roots]}"
    chain = [roots[0]]
    while chain[-1].downstream_task_ids:
        (next_id,) = chain[-1].downstream_task_ids
        chain.append(dag.get_task(next_id))
    assert len(chain) == len(dag.tasks)
    return [task.task_id for task in chain]


def test_dags_folder_loads_without_import_errors(repo_dag_bag: Any) -> None:
    assert repo_dag_bag.import_errors == {}
    assert sorted(repo_dag_bag.dag_ids) == sorted([*ALL_DAG_IDS, RETRAIN, SCORE])


def test_the_scoring_dag_is_scheduled_on_the_retraining_dags_model(repo_dag_bag: Any) -> None:
    train = repo_dag_bag.dags[RETRAIN].get_task("create_trained_model")
    score = repo_dag_bag.dags[SCORE].get_task("start_inference")
    (model,) = train.outlets
    assert model.uri.startswith("cleanrooms-ml://") and model.uri.endswith("/trained-model/churn")
    timetable = repo_dag_bag.dags[SCORE].timetable  # schedule=[asset]: all of one (a dataset on Airflow 2.11)
    condition = getattr(timetable, "asset_condition", None) or timetable.dataset_condition
    assert [asset.uri for asset in getattr(condition, "objects", [condition])] == [model.uri]
    # The run scores with what the asset event carried, and both tasks wait in the triggerer.
    assert "triggering_asset_events" in score.trained_model_arn
    if getattr(score, "trained_model_version_identifier", None) is not None:  # botocore >= 1.38
        assert "triggering_asset_events" in score.trained_model_version_identifier
    assert train.deferrable and score.deferrable
    assert train.membership_identifier == score.membership_identifier == model.uri.split("/")[2]


@pytest.mark.parametrize("dag_id", [TRAIN_AND_INFER, f"{TRAIN_AND_INFER}_deferrable"])
def test_train_and_infer_runs_train_wait_infer_wait(repo_dag_bag: Any, dag_id: str) -> None:
    assert _chain(repo_dag_bag.dags[dag_id]) == TRAIN_AND_INFER_TASKS


@pytest.mark.parametrize("dag_id", [INFERENCE, f"{INFERENCE}_deferrable"])
def test_inference_runs_start_then_wait(repo_dag_bag: Any, dag_id: str) -> None:
    assert _chain(repo_dag_bag.dags[dag_id]) == INFERENCE_TASKS


@pytest.mark.parametrize("dag_id", ALL_DAG_IDS)
def test_sensors_wait_as_the_dag_id_says(repo_dag_bag: Any, dag_id: str) -> None:
    dag = repo_dag_bag.dags[dag_id]
    deferrable = dag_id.endswith("_deferrable")
    sensors = [task for task in dag.tasks if task.task_id.startswith("wait_")]
    assert sensors
    for sensor in sensors:
        assert sensor.deferrable is deferrable, sensor.task_id
        # Sync variants give the worker slot back between checks.
        assert sensor.mode == ("poke" if deferrable else "reschedule"), sensor.task_id
        # Deferrable: the trigger's number of checks covers the sensor's timeout.
        assert sensor.max_retries * sensor.poke_interval >= sensor.timeout - sensor.poke_interval
    # Starting/creating tasks hand over to the sensors instead of waiting themselves.
    for task in dag.tasks:
        if not task.task_id.startswith("wait_"):
            assert task.wait_for_completion is False, task.task_id


@pytest.mark.parametrize("dag_id", ALL_DAG_IDS)
def test_dags_use_aws_default_and_are_manual(repo_dag_bag: Any, dag_id: str) -> None:
    dag = repo_dag_bag.dags[dag_id]
    assert {task.aws_conn_id for task in dag.tasks} == {"aws_default"}
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: "Trigger DAG" / dags test
    assert "aws_default" in dag.doc_md and "endpoint_url" in dag.doc_md


def test_inference_is_fed_from_upstream_xcom(repo_dag_bag: Any) -> None:
    dag = repo_dag_bag.dags[TRAIN_AND_INFER]
    start = dag.get_task("start_inference")
    assert "xcom_pull(task_ids='create_trained_model')" in start.trained_model_arn
    # The job name comes from the run (manual runs have no logical date, so no ds/ds_nodash), through
    # run_after where Airflow has it (2.11 has not: its runs all have a logical date).
    assert "dag_run.run_after if dag_run.run_after is defined else dag_run.logical_date" in start.name
    assert start.name.endswith(") | ts_nodash }}")
    assert "ds" not in start.name.replace("params", "")

"""
OpenLineage from the example DAGs in the real deployment (scheduler, triggerer, LocalExecutor): the
OpenLineage provider's listener writes every event through its file transport, and the checks read
them back. Each task emits START and COMPLETE (a deferred task may emit START twice); the trained
model is the training task's output and the inference task's input, in the sync and deferrable
example DAGs and in the asset pair (whose operators wait deferred, and name the model's version);
the inference output is the membership's S3 output location; the run facets carry the XCom ARN.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.lineage_support import arn_name, names, read_events
from tests.topology import wait_until

from .conftest import (
    EXAMPLE_DAGS,
    MEMBERSHIP_ID,
    OUTPUT_LOCATION,
    RETRAIN_DAG,
    SCORE_DAG,
    ExampleRun,
    RetrainRun,
    trained_model_version,
)

if TYPE_CHECKING:
    from tests.topology import AirflowTopology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "arn:aws:cleanrooms-ml:us-east-1:"
TRAIN_AND_INFER = (
    "example_cleanrooms_ml_train_and_infer",
    "example_cleanrooms_ml_train_and_infer_deferrable",
)


@pytest.fixture(scope="module")
def events(
    lineage_events: Path | None,
    deployment: AirflowTopology,
    example_runs: dict[str, ExampleRun],
    retrain_run: RetrainRun,
) -> dict[str, list[dict[str, Any]]]:
    """The events of this session's example runs, by ``<dag_id>.<task_id>@<run_id>``."""
    if lineage_events is None:
        pytest.skip("the OpenLineage provider is not installed (the main and MWAA stages install it)")
    tasks = [f"{run.dag_id}.{task}@{run.run_id}" for run in example_runs.values() for task in run.task_states]
    assert retrain_run.scoring is not None, "the retraining run started no scoring run"
    tasks += [
        f"{RETRAIN_DAG}.create_trained_model@{retrain_run.run_id}",
        f"{SCORE_DAG}.start_inference@{retrain_run.scoring['dag_run_id']}",
    ]

    def all_complete() -> dict[str, list[dict[str, Any]]] | None:
        found = read_events(lineage_events)
        done = all(any(e["eventType"] == "COMPLETE" for e in found.get(task, [])) for task in tasks)
        return found if done else None

    # The listener emits from the task's process as it ends; the run's state can come first.
    return wait_until(all_complete, 60, "a COMPLETE event for every task", interval=0.5)


def test_every_task_emits_start_then_complete(
    events: dict[str, list[dict[str, Any]]], example_runs: dict[str, ExampleRun]
) -> None:
    for dag_id in EXAMPLE_DAGS:
        run = example_runs[dag_id]
        for task in run.task_states:
            kinds = [e["eventType"] for e in events[f"{dag_id}.{task}@{run.run_id}"]]
            assert kinds.count("COMPLETE") == 1, f"{dag_id}.{task}: {kinds}"
            # A task that resumes (a deferred task, a rescheduled sensor) may emit START again.
            assert kinds.count("START") >= 1 and kinds.index("START") < kinds.index("COMPLETE"), kinds
            if not task.startswith("wait_"):  # the example DAGs' operators run once
                assert kinds.count("START") == 1, f"{dag_id}.{task}: {kinds}"
            assert "FAIL" not in kinds


@pytest.mark.parametrize("dag_id", TRAIN_AND_INFER)
def test_the_trained_model_chains_training_to_inference(
    dag_id: str,
    events: dict[str, list[dict[str, Any]]],
    deployment: AirflowTopology,
    example_runs: dict[str, ExampleRun],
) -> None:
    run = example_runs[dag_id]
    model_arn = deployment.xcom(dag_id, run.run_id, "create_trained_model")
    job_arn = deployment.xcom(dag_id, run.run_id, "start_inference")
    (trained,) = [
        e for e in events[f"{dag_id}.create_trained_model@{run.run_id}"] if e["eventType"] == "COMPLETE"
    ]
    (scored,) = [e for e in events[f"{dag_id}.start_inference@{run.run_id}"] if e["eventType"] == "COMPLETE"]

    assert names(trained["outputs"]) == [arn_name(model_arn)]
    assert arn_name(model_arn) in names(scored["inputs"]), (
        "the inference task's inputs miss the model it scored with"
    )
    assert names(scored["outputs"]) == [("s3://deployment-scores", "churn/")], OUTPUT_LOCATION
    assert all(namespace.startswith(NAMESPACE) for namespace, _ in names(trained["inputs"]))
    version = trained["outputs"][0]["facets"].get("version", {}).get("datasetVersion")
    assert version == trained_model_version(deployment, dag_id, run.run_id), "the model's version facet"
    for event, arn in ((trained, model_arn), (scored, job_arn)):
        facets = event["run"]["facets"]
        assert facets["externalQuery"]["externalQueryId"] == arn
        assert facets["cleanroomsMLJob"]["arn"] == arn
        assert f"membership/{MEMBERSHIP_ID}/" in arn


def test_deferred_operators_chain_the_model_at_its_version(
    events: dict[str, list[dict[str, Any]]], deployment: AirflowTopology, retrain_run: RetrainRun
) -> None:
    """The asset pair's operators wait deferred: their COMPLETE events name the model at its version."""
    model_arn = deployment.xcom(RETRAIN_DAG, retrain_run.run_id, "create_trained_model")
    version = trained_model_version(deployment, RETRAIN_DAG, retrain_run.run_id)
    assert retrain_run.scoring is not None
    trained = events[f"{RETRAIN_DAG}.create_trained_model@{retrain_run.run_id}"]
    scored = events[f"{SCORE_DAG}.start_inference@{retrain_run.scoring['dag_run_id']}"]
    for task_events in (trained, scored):
        kinds = [e["eventType"] for e in task_events]
        assert kinds.count("COMPLETE") == 1 and 1 <= kinds.count("START") <= 2, kinds
    (trained_complete,) = [e for e in trained if e["eventType"] == "COMPLETE"]
    (scored_complete,) = [e for e in scored if e["eventType"] == "COMPLETE"]
    (model,) = trained_complete["outputs"]
    assert (model["namespace"], model["name"]) == arn_name(model_arn)
    assert model["facets"].get("version", {}).get("datasetVersion") == version
    used = [d for d in scored_complete["inputs"] if (d["namespace"], d["name"]) == arn_name(model_arn)]
    assert len(used) == 1 and used[0]["facets"].get("version", {}).get("datasetVersion") == version
    assert trained_complete["run"]["facets"]["cleanroomsMLJob"]["status"] == "ACTIVE"

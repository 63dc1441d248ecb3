"""
OpenLineage from the train-and-infer example DAG run with ``dag.test()``, in sync and deferrable mode,
on every CI stage (each installs the OpenLineage provider; ``tests/conftest.py`` points its file
transport at the session's folder). The deployment test proves the same in a real Airflow on the main
stage; this one proves it on every Airflow CI covers.

Each task emits START and COMPLETE (a deferred sensor may emit START again when it resumes); the
trained model is the training task's output and the inference task's input; the inference output is
the membership's S3 output location (its ML configuration); both operators' run facets carry the ARN.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.dags.dags_support import TRAIN_AND_INFER, TRAIN_AND_INFER_TASKS, train_conf
from tests.lineage_support import arn_name, names, only, read_events
from tests.topology import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTPUT_BUCKET, OUTPUT_PREFIX = "s3://dag-test-scores", "churn/"


@pytest.mark.parametrize("deferrable", [pytest.param(False, id="sync"), pytest.param(True, id="deferrable")])
def test_train_and_infer_events_chain_the_trained_model(
    deferrable: bool,
    aws_default_emulator: Any,
    run_example: Any,
    run_after: datetime,
    openlineage_events: Path,
) -> None:
    emulator = aws_default_emulator
    membership_id = str(uuid.uuid4())
    seeded = emulator.control.seed_membership(membership_id)
    client = emulator.client()
    client.put_ml_configuration(
        membershipIdentifier=membership_id,
        defaultOutputLocation={
            "destination": {"s3Destination": {"s3Uri": f"{OUTPUT_BUCKET}/{OUTPUT_PREFIX}"}},
            "roleArn": "arn:aws:iam::123456789012:role/cleanrooms-ml-results",
        },
    )
    dag_id = f"{TRAIN_AND_INFER}_deferrable" if deferrable else TRAIN_AND_INFER

    _, dag_run = run_example(dag_id, train_conf(seeded, membership_id, "lineage"))

    assert str(dag_run.state) == "success"
    keys = {task: f"{dag_id}.{task}@{dag_run.run_id}" for task in TRAIN_AND_INFER_TASKS}

    def all_complete() -> dict[str, list[dict[str, Any]]] | None:
        found = read_events(openlineage_events)
        done = all(any(e["eventType"] == "COMPLETE" for e in found.get(key, [])) for key in keys.values())
        return found if done else None

    # The listener may hand an event to its own process or thread: wait for the files, not for a count.
    events = wait_until(all_complete, 60, "a COMPLETE event for every task", interval=0.2)
    for task, key in keys.items():
        kinds = [e["eventType"] for e in events[key]]
        assert kinds.count("COMPLETE") == 1 and "FAIL" not in kinds, f"{task}: {kinds}"
        assert kinds.index("START") < kinds.index("COMPLETE"), f"{task}: {kinds}"
        if not task.startswith("wait_"):  # the operators run once; a deferred sensor resumes
            assert kinds.count("START") == 1, f"{task}: {kinds}"

    (model,) = client.list_trained_models(membershipIdentifier=membership_id)["trainedModels"]
    (job,) = client.list_trained_model_inference_jobs(membershipIdentifier=membership_id)[
        "trainedModelInferenceJobs"
    ]
    model_arn, job_arn = model["trainedModelArn"], job["trainedModelInferenceJobArn"]
    trained = only(events[keys["create_trained_model"]], "COMPLETE")
    scored = only(events[keys["start_inference"]], "COMPLETE")
    assert names(trained["outputs"]) == [arn_name(model_arn)]
    assert (arn_name(seeded["ml_input_channel_arn"])) in names(trained["inputs"])
    assert arn_name(model_arn) in names(scored["inputs"]), "the inference task's inputs miss its model"
    assert names(scored["outputs"]) == [(OUTPUT_BUCKET, OUTPUT_PREFIX)]
    for event, arn in ((trained, model_arn), (scored, job_arn)):
        facets = event["run"]["facets"]
        assert facets["externalQuery"]["externalQueryId"] == arn
        assert facets["cleanroomsMLJob"]["arn"] == arn

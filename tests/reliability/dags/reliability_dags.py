"""
DAGs of the reliability suite (copied into the suite's Airflow dags folder).

Every run gets its inputs from ``dag_run.conf`` (membership, trained model, channel, job name), so
each scenario works in its own membership and counts its own jobs. The operator is the shipped
inference-job operator with two test hooks, controlled by the suite:

* every try writes ``<markers>/<dag_id>__<run_id>__<task_id>__<try>.pid`` (the task process pid,
  so the suite can SIGKILL exactly that process);
* with ``pause_after_start=True``, try 1 writes ``...started`` right after the start call returned
  and then waits to be killed: the window between the start call and the task state store write.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

if __package__:  # imported by the suite as tests.reliability.dags.reliability_dags
    from .bad_input_corpus import CORPUS, RENDERED_STRING, arguments
else:  # parsed by Airflow, which puts the dags folder on sys.path
    from bad_input_corpus import CORPUS, RENDERED_STRING, arguments  # type: ignore[no-redef]

from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator

MARKERS = Path(os.environ.get("RELIABILITY_MARKERS", "/tmp/reliability-markers"))
CONN_ID = os.environ.get("RELIABILITY_CONN_ID", "cleanrooms_emulator")

_Inference = CleanRoomsMLStartTrainedModelInferenceJobOperator


def _marker(context: Any, suffix: str) -> Path:
    ti = context["ti"]
    index = f".{ti.map_index}" if getattr(ti, "map_index", -1) not in (-1, None) else ""
    return MARKERS / f"{ti.dag_id}__{ti.run_id}__{ti.task_id}{index}__{ti.try_number}.{suffix}"


class ReliabilityInferenceOperator(_Inference):  # type: ignore[misc,valid-type]
    """The shipped operator plus the suite's markers (see the module docstring)."""

    def __init__(self, *, pause_after_start: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pause_after_start = pause_after_start

    def execute(self, context: Any) -> Any:
        MARKERS.mkdir(parents=True, exist_ok=True)
        _marker(context, "pid").write_text(str(os.getpid()))
        return super().execute(context)

    def build_request(self) -> dict[str, Any]:
        request = super().build_request()
        # Logged on purpose: values under sensitive keys must come out masked.
        self.log.info("Rendered environment: %s", self.environment)
        return request

    def start_job(self, context: Any, request: dict[str, Any], find_started: Any = None) -> Any:
        job = super().start_job(context, request, find_started)
        if self.pause_after_start and context["ti"].try_number == 1:
            _marker(context, "started").write_text(f"{os.getpid()} {job.arn}")
            time.sleep(300)  # the suite SIGKILLs this process now
            raise RuntimeError("the suite did not kill the task after the start call")
        return job


COMMON: dict[str, Any] = {
    "membership_identifier": "{{ dag_run.conf['membership_id'] }}",
    "trained_model_arn": "{{ dag_run.conf['trained_model_arn'] }}",
    "resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
    "output_configuration": {"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
    "data_source": {"mlInputChannelArn": "{{ dag_run.conf['channel_arn'] }}"},
    "environment": {"MODEL_THRESHOLD": "0.5", "API_TOKEN": "{{ dag_run.conf.get('api_token', 'none') }}"},
    "tags": {"suite": "reliability", "run_id": "{{ run_id | replace(':', '_') | replace('+', '_') }}"},
    "aws_conn_id": CONN_ID,
}
JOB_NAME = "{{ dag_run.conf['job_name'] }}-{{ ti.task_id | replace('_', '-') }}"


def _dag(dag_id: str, retries: int) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_runs=4,
        default_args={"retries": retries, "retry_delay": timedelta(seconds=1)},
        tags=["reliability"],
    )


def _inference(task_id: str, **kwargs: Any) -> ReliabilityInferenceOperator:
    options = {**COMMON, "name": JOB_NAME, "waiter_delay": 1, **kwargs}
    return ReliabilityInferenceOperator(task_id=task_id, **options)


# SIGKILL right after the start call (before the task state store write), mid-wait, after ACTIVE.
with _dag("rel_kill_after_start", retries=2):
    _inference("start_inference", pause_after_start=True)

with _dag("rel_kill_mid_wait", retries=2):
    _inference("start_inference")

with _dag("rel_kill_after_active", retries=2):
    # A long poll interval: the job turns ACTIVE while the task sleeps, and the suite kills it then.
    _inference("start_inference", waiter_delay=30)

with _dag("rel_triggerer_restart", retries=1):
    _inference("start_inference", deferrable=True)

with _dag("rel_emulator_restart", retries=1):
    _inference("start_inference")

with _dag("rel_faults", retries=1):
    _inference("start_sync")
    _inference("start_deferred", deferrable=True)

with _dag("rel_mark_failed", retries=0):
    # The user marks the waiting task failed: the job it started must be cancelled, in both modes.
    _inference("start_sync")
    _inference("start_deferred", deferrable=True)

with _dag("rel_job_fails", retries=1):
    _inference("start_inference")

# Kinds of bad input run through real Airflow as one mapped task (templates rendered by Airflow);
# every map index must fail on try 1, before any call. The whole corpus runs in-process in
# test_bad_input_corpus.py: a task process per kind would cost more than it proves.
BAD_INPUT_IN_AIRFLOW = (
    "template-renders-a-string-where-a-dict-is-needed",
    "misspelled-key-instancetype",
    "name-of-a-running-job-of-another-task",
    "environment-17-entries",
    "tag-key-starting-with-AWS:",
    "instance-count-11",
)
BAD_INPUTS = tuple(entry for entry in CORPUS if entry.id in BAD_INPUT_IN_AIRFLOW)
_TEMPLATES = {
    "@MEMBERSHIP@": "{{ dag_run.conf['membership_id'] }}",
    "@TRAINED_MODEL_ARN@": "{{ dag_run.conf['trained_model_arn'] }}",
    "@CHANNEL_ARN@": "{{ dag_run.conf['channel_arn'] }}",
    "@ASSOCIATION_ARN@": "{{ dag_run.conf['association_arn'] }}",
    "@TAKEN_NAME@": "{{ dag_run.conf['taken_name'] }}",
    RENDERED_STRING: "{{ dag_run.conf['instance_type'] }}",
}
with _dag("rel_bad_input", retries=1):
    ReliabilityInferenceOperator.partial(
        task_id="bad_input", aws_conn_id=CONN_ID, waiter_delay=1
    ).expand_kwargs(
        [
            arguments(entry, "{{ dag_run.conf['job_name'] }}-{{ ti.map_index }}", _TEMPLATES)
            for entry in BAD_INPUTS
        ],
    )

DAG_IDS = (
    "rel_kill_after_start",
    "rel_kill_mid_wait",
    "rel_kill_after_active",
    "rel_triggerer_restart",
    "rel_emulator_restart",
    "rel_faults",
    "rel_mark_failed",
    "rel_job_fails",
    "rel_bad_input",
)

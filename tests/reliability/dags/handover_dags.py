"""
DAGs of the hand-over proof on the distributed topology (``tests/reliability/test_triggerer_handover.py``):
one mapped inference-job task of ``HANDOVER_WAITS`` deferred waits per run (``handover``), two
(``handover_kill``), ``HANDOVER_MANY_WAITS`` (``handover_many``, the request-rate row), and one sync
wait (``handover_sync``); each run's jobs in its own membership.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import DAG

from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator

CONN_ID = os.environ.get("RELIABILITY_CONN_ID", "cleanrooms_emulator")
WAITS = int(os.environ.get("HANDOVER_WAITS", "20"))
MANY_WAITS = int(os.environ.get("HANDOVER_MANY_WAITS", "200"))
PARAMS = {"membership_id": "", "trained_model_arn": "", "channel_arn": ""}


def waits(dag_id: str, count: int) -> DAG:
    """A DAG of ``count`` deferred inference waits (one mapped task, ``score``)."""
    with DAG(dag_id, schedule=None, params=PARAMS, max_active_tasks=count) as dag:
        CleanRoomsMLStartTrainedModelInferenceJobOperator.partial(
            task_id="score",
            aws_conn_id=CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            trained_model_arn="{{ params.trained_model_arn }}",
            resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            output_configuration={"members": [{"accountId": "444455556666"}]},
            data_source={"mlInputChannelArn": "{{ params.channel_arn }}"},
            deferrable=True,
            waiter_delay=2,  # 20 waits: 10 polls/s wanted, twice the emulator's rate (200: 20 times)
            waiter_max_attempts=720,
            retries=0,
        ).expand(name=[f"{dag_id}-{index}" for index in range(count)])
    return dag


handover = waits("handover", WAITS)
handover_kill = waits("handover_kill", 2)
handover_many = waits("handover_many", MANY_WAITS)

with DAG("handover_sync", schedule=None, params=PARAMS) as handover_sync:
    # A sync wait on a Celery worker that the test SIGKILLs: the retry reconnects to the job.
    CleanRoomsMLStartTrainedModelInferenceJobOperator(
        task_id="score",
        aws_conn_id=CONN_ID,
        membership_identifier="{{ params.membership_id }}",
        name="handover-sync",
        trained_model_arn="{{ params.trained_model_arn }}",
        resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        output_configuration={"members": [{"accountId": "444455556666"}]},
        data_source={"mlInputChannelArn": "{{ params.channel_arn }}"},
        waiter_delay=2,
        waiter_max_attempts=720,
        retries=1,
        retry_delay=timedelta(seconds=2),
    )

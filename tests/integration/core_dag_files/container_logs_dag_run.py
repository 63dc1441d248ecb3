"""Inference jobs with container log streaming (copied into the dags folder by test_container_logs.py)."""

from __future__ import annotations

import os
from typing import Any

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow.models import DAG  # type: ignore[no-redef,assignment]

from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from airflow_cleanrooms.sensors.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobSensor

CONN_ID = os.environ.get("CORE_TEST_CONN_ID", "aws_default")
# run_after as YYYYMMDDTHHMMSS (Airflow 2.11 has no run_after: its dag.test() makes it the logical date).
RUN_SUFFIX = "{{ (dag_run.run_after if dag_run.run_after is defined else dag_run.logical_date) | ts_nodash }}"
PARAMS = {"membership_id": "", "trained_model_arn": "", "channel_arn": "", "db_password": ""}


def score(**waiting: Any) -> CleanRoomsMLStartTrainedModelInferenceJobOperator:
    """The job whose container logs the test reads; ``waiting``: how (and whether) the operator waits."""
    return CleanRoomsMLStartTrainedModelInferenceJobOperator(
        task_id="score",
        aws_conn_id=CONN_ID,
        membership_identifier="{{ params.membership_id }}",
        name="scores-" + RUN_SUFFIX,
        trained_model_arn="{{ params.trained_model_arn }}",
        resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        output_configuration={"members": [{"accountId": "444455556666"}]},
        data_source={"mlInputChannelArn": "{{ params.channel_arn }}"},
        environment={"DB_PASSWORD": "{{ params.db_password }}", "MODE": "batch"},
        **waiting,
    )


for deferrable in (False, True):
    with DAG(
        "container_logs_inference" + ("_deferrable" if deferrable else ""), schedule=None, params=PARAMS
    ) as dag:
        score(waiter_delay=1, waiter_max_attempts=60, deferrable=deferrable, print_log=True, retries=0)
    globals()[dag.dag_id] = dag

for mode in ("poke", "reschedule"):
    with DAG(f"container_logs_sensor_{mode}", schedule=None, params=PARAMS) as sensor_dag:
        CleanRoomsMLTrainedModelInferenceJobSensor(
            task_id="wait",
            aws_conn_id=CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            trained_model_inference_job_arn=score(wait_for_completion=False).output,
            poke_interval=1,
            mode=mode,
            print_log=True,
            retries=0,
        )
    globals()[sensor_dag.dag_id] = sensor_dag

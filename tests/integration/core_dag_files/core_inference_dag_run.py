"""Inference job then sensor, everything templated (copied into the dags folder by test_core_dag_runs.py)."""

from __future__ import annotations

import os
from datetime import timedelta

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.11
    from airflow.models import DAG  # type: ignore[no-redef,assignment]

from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from airflow_cleanrooms.sensors.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobSensor

CONN_ID = os.environ.get("CORE_TEST_CONN_ID", "aws_default")
# run_after as YYYYMMDDTHHMMSS (Airflow 2.11 has no run_after: its dag.test() makes it the logical date).
RUN_SUFFIX = "{{ (dag_run.run_after if dag_run.run_after is defined else dag_run.logical_date) | ts_nodash }}"

for deferrable in (False, True):
    with DAG(
        "core_inference_dag_run" + ("_deferrable" if deferrable else ""),
        schedule=None,
        params={
            "membership_id": "",
            "trained_model_arn": "",
            "channel_arn": "",
            "threshold": "0.5",
            "receiver_account": "444455556666",
            "instance_count": 1,
            "db_password": "",
        },
    ) as dag:
        start = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="start_inference",
            aws_conn_id=CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            name="churn-scores-" + RUN_SUFFIX,
            trained_model_arn="{{ params.trained_model_arn }}",
            resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": "{{ params.instance_count }}"},
            output_configuration={
                "members": [{"accountId": "{{ params.receiver_account }}"}],
                "accept": "text/csv",
            },
            data_source={"mlInputChannelArn": "{{ params.channel_arn }}"},
            environment={
                "MODEL_THRESHOLD": "{{ params.threshold }}",
                "DB_PASSWORD": "{{ params.db_password }}",
            },
            tags={"team": "growth", "run_id": "{{ run_id }}"},
            waiter_delay=1,
            waiter_max_attempts=60,
            # Sync variant: the operator returns at once and the sensor (reschedule mode) waits.
            # Deferrable variant: the operator itself waits in the triggerer, then the sensor checks.
            wait_for_completion=deferrable,
            deferrable=deferrable,
        )
        CleanRoomsMLTrainedModelInferenceJobSensor(
            task_id="wait_inference",
            aws_conn_id=CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            trained_model_inference_job_arn=start.output,
            poke_interval=1,
            mode="poke" if deferrable else "reschedule",
            deferrable=deferrable,
        )
    globals()[dag.dag_id] = dag

with DAG(
    "core_inference_execution_timeout",
    schedule=None,
    params={"membership_id": "", "trained_model_arn": "", "channel_arn": ""},
) as timeout_dag:
    # The job outlives execution_timeout: Airflow kills the task, on_kill cancels the job.
    CleanRoomsMLStartTrainedModelInferenceJobOperator(
        task_id="start_inference",
        aws_conn_id=CONN_ID,
        membership_identifier="{{ params.membership_id }}",
        name="timed-out-" + RUN_SUFFIX,
        trained_model_arn="{{ params.trained_model_arn }}",
        resource_config={"instanceType": "ml.m5.xlarge"},
        output_configuration={"members": [{"accountId": "444455556666"}]},
        data_source={"mlInputChannelArn": "{{ params.channel_arn }}"},
        waiter_delay=1,
        execution_timeout=timedelta(seconds=3),
    )

for deferrable in (False, True):
    with DAG(
        "core_inference_cli_input_json" + ("_deferrable" if deferrable else ""),
        schedule=None,
        params={"membership_id": "", "trained_model_arn": "", "channel_arn": ""},
    ) as json_dag:
        # Issue 11: every API member in the CLI document, no other API argument.
        CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="start_inference",
            aws_conn_id=CONN_ID,
            cli_input_json={
                "membershipIdentifier": "{{ params.membership_id }}",
                "name": "from-json-" + RUN_SUFFIX,
                "trainedModelArn": "{{ params.trained_model_arn }}",
                "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
                "outputConfiguration": {"members": [{"accountId": "444455556666"}]},
                "dataSource": {"mlInputChannelArn": "{{ params.channel_arn }}"},
            },
            waiter_delay=1,
            waiter_max_attempts=60,
            deferrable=deferrable,
        )
    globals()[json_dag.dag_id] = json_dag

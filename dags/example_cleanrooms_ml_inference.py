"""
### Run an AWS Clean Rooms ML inference job on a trained model ("Trigger DAG" form)

`start_inference` -> `wait_inference`

Made for the "Trigger DAG" button: every input of the job is a param with the JSON schema of the
API member it feeds, read from the installed botocore service model, so the trigger form (and
`--conf` / `dag.test(run_conf=...)`) rejects a bad value before a run is created:

* `membership_id`: a UUID;
* `trained_model_arn`, `ml_input_channel_arn`: ARNs matching the model's patterns;
* `instance_type`: one of the model's `InferenceInstanceType` values;
* `instance_count`: within the model's range for `InferenceResourceConfig.instanceCount`;
* `receiver_account`: a 12-digit AWS account id;
* `environment`: an object of environment variables (model limits on count, names and values);
* `tags`: an object of tags (at most the model's count, no `aws:` key prefix, key/value lengths).

`start_inference` returns the job ARN; `wait_inference` waits for `ACTIVE` and fails fast, with
the job's `statusDetails`, on `CREATE_FAILED`, `CANCEL_*` or `INACTIVE`. The job name is
`<name_prefix>-<run_after as YYYYMMDDTHHMMSS>`.

All values are Jinja templates over the params. Object params are rendered as JSON
(`{{ params.tags | tojson }}`) and numbers as their digits; the operator turns both back into the
types the API member needs (it reads them from the model) before validating the request.

#### Sync or deferrable
The sensor's `deferrable` argument is fixed at parse time (not a template field), so two DAGs come
from one factory: `example_cleanrooms_ml_inference` (sensor in `reschedule` mode) and
`example_cleanrooms_ml_inference_deferrable` (sensor defers to the triggerer). The polling interval
comes from the environment variable `CLEANROOMS_ML_EXAMPLE_POLL_SECONDS` (default 60 seconds).

#### Container logs
The sensor has `print_log=True`: what the model container writes (CloudWatch Logs, when the
association's privacy configuration allows it) appears in its task log: as it comes when deferred,
all at once when the job ended in `reschedule` mode. The log status, and why no logs came if so,
is in the block logged when the wait ends; the "Clean Rooms ML Container Logs" link opens them in
the CloudWatch console.

#### Emulator or AWS
The tasks use the Airflow connection `aws_default`. With
`AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws", "extra": {"endpoint_url": "http://127.0.0.1:PORT"}}'`
(plus `"region_name": "us-east-1"`) they talk to the local emulator; define `aws_default` without
`endpoint_url` (credentials from the environment, an instance/pod role, or `role_arn` in the extra)
and the same DAG runs on AWS.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

try:
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.11
    from airflow.models import DAG, Param  # type: ignore[assignment,no-redef,attr-defined,unused-ignore]

from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from airflow_cleanrooms.param_schemas import member_schema
from airflow_cleanrooms.sensors.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobSensor

DAG_ID = "example_cleanrooms_ml_inference"
AWS_CONN_ID = "aws_default"
POLL_SECONDS_ENV = "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS"
WAIT_TIMEOUT = timedelta(hours=12)  # per sensor, sync and deferrable alike
OPERATION = "StartTrainedModelInferenceJob"

# When the run was due: manual runs in Airflow 3 have no logical date, and Airflow 2.11 has no run_after.
RUN_AFTER = "dag_run.run_after if dag_run.run_after is defined else dag_run.logical_date"
RUN_SUFFIX = "{{ (" + RUN_AFTER + ") | ts_nodash }}"
NAME_PREFIX_MAX_LENGTH = int(member_schema(OPERATION, "name")["maxLength"]) - len("-20260101T000000")

# Placeholders that satisfy the model's patterns; the trigger form or run conf replaces them.
EXAMPLE_ACCOUNT = "111122223333"
EXAMPLE_MEMBERSHIP = "00000000-0000-4000-8000-000000000000"
EXAMPLE_MEMBERSHIP_ARN = f"arn:aws:cleanrooms-ml:us-east-1:{EXAMPLE_ACCOUNT}:membership/{EXAMPLE_MEMBERSHIP}"


def poll_seconds() -> int:
    """Seconds between status checks, read at parse time (``CLEANROOMS_ML_EXAMPLE_POLL_SECONDS``)."""
    return max(1, int(os.environ.get(POLL_SECONDS_ENV, "60")))


def dag_params() -> dict[str, Param]:
    """Trigger-form params, each with the JSON schema of the API member it feeds."""
    return {
        "membership_id": Param(
            EXAMPLE_MEMBERSHIP,
            title="Membership id",
            description="Clean Rooms membership id (UUID) that owns the trained model.",
            **member_schema(OPERATION, "membershipIdentifier"),
        ),
        "trained_model_arn": Param(
            f"{EXAMPLE_MEMBERSHIP_ARN}/trained-model/example",
            title="Trained model ARN",
            description="ARN of an ACTIVE trained model in the membership.",
            **member_schema(OPERATION, "trainedModelArn"),
        ),
        "ml_input_channel_arn": Param(
            f"{EXAMPLE_MEMBERSHIP_ARN}/ml-input-channel/example",
            title="ML input channel ARN",
            description="ML input channel holding the data to score.",
            **member_schema(OPERATION, "dataSource", "mlInputChannelArn"),
        ),
        "instance_type": Param(
            "ml.m5.xlarge",
            title="Instance type",
            description="Inference instance type (values from the installed botocore model).",
            **member_schema(OPERATION, "resourceConfig", "instanceType"),
        ),
        "instance_count": Param(
            1,
            title="Instance count",
            description="Number of inference instances.",
            **member_schema(OPERATION, "resourceConfig", "instanceCount"),
        ),
        "receiver_account": Param(
            EXAMPLE_ACCOUNT,
            title="Receiver account",
            description="AWS account id (12 digits) that receives the results.",
            **member_schema(OPERATION, "outputConfiguration", "members", "accountId"),
        ),
        "accept": Param(
            "text/csv",
            title="Result MIME type",
            description="MIME type of the results.",
            **member_schema(OPERATION, "outputConfiguration", "accept"),
        ),
        "name_prefix": Param(
            "scores",
            title="Job name prefix",
            description="The job is named <prefix>-<run time as YYYYMMDDTHHMMSS>.",
            type="string",
            minLength=1,
            maxLength=NAME_PREFIX_MAX_LENGTH,
        ),
        "environment": Param(
            {"SCORE_THRESHOLD": "0.5"},
            title="Environment",
            description="Environment variables of the inference container.",
            **member_schema(OPERATION, "environment"),
        ),
        "tags": Param(
            {"team": "growth"},
            title="Tags",
            description="Tags on the inference job.",
            **member_schema(OPERATION, "tags"),
        ),
    }


def build_dag(dag_id: str, *, deferrable: bool) -> DAG:
    """Build the inference DAG; ``deferrable`` picks how the sensor waits."""
    poll = poll_seconds()
    max_checks = int(WAIT_TIMEOUT.total_seconds() // poll)
    sensor_mode = {"deferrable": True} if deferrable else {"deferrable": False, "mode": "reschedule"}
    with DAG(
        dag_id=dag_id,
        description="Run a Clean Rooms ML inference job on a trained model"
        + (" (deferrable sensor)" if deferrable else ""),
        doc_md=__doc__,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        schedule=None,
        catchup=False,
        tags=["example", "cleanrooms-ml"] + (["deferrable"] if deferrable else []),
        params=dag_params(),
    ) as dag:
        start_inference = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="start_inference",
            aws_conn_id=AWS_CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            name="{{ params.name_prefix }}-" + RUN_SUFFIX,
            trained_model_arn="{{ params.trained_model_arn }}",
            resource_config={
                "instanceType": "{{ params.instance_type }}",
                "instanceCount": "{{ params.instance_count }}",
            },
            output_configuration={
                "accept": "{{ params.accept }}",
                "members": [{"accountId": "{{ params.receiver_account }}"}],
            },
            data_source={"mlInputChannelArn": "{{ params.ml_input_channel_arn }}"},
            environment="{{ params.environment | tojson }}",
            tags="{{ params.tags | tojson }}",
            wait_for_completion=False,
        )

        wait_inference = CleanRoomsMLTrainedModelInferenceJobSensor(
            task_id="wait_inference",
            aws_conn_id=AWS_CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            trained_model_inference_job_arn=start_inference.output,
            poke_interval=poll,
            timeout=WAIT_TIMEOUT.total_seconds(),
            max_retries=max_checks,
            print_log=True,  # the job's container logs in this task's log (CloudWatch Logs)
            **sensor_mode,
        )
        start_inference >> wait_inference
    return dag


example_cleanrooms_ml_inference = build_dag(DAG_ID, deferrable=False)
example_cleanrooms_ml_inference_deferrable = build_dag(f"{DAG_ID}_deferrable", deferrable=True)

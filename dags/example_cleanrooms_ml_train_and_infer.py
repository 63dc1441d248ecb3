"""
### Train a custom model in AWS Clean Rooms ML, then run an inference job with it

`create_trained_model` -> `wait_trained_model` -> `start_inference` -> `wait_inference`

1. **create_trained_model** starts `CreateTrainedModel` from the configured model algorithm
   association and the training ML input channel given in the run's params. It returns the trained
   model ARN (XCom `return_value`) without waiting.
2. **wait_trained_model** waits until the trained model is `ACTIVE`; it fails at once, with the
   model's `statusDetails`, if training ends `CREATE_FAILED`, is cancelled or deleted.
3. **start_inference** starts `StartTrainedModelInferenceJob` on the trained model ARN pulled from
   the XCom of `create_trained_model`. The job name is templated from the run
   (`{{ dag_run.run_after | ts_nodash }}`: manual runs in Airflow 3 have no logical date), its
   environment and tags from the params. It returns the job ARN.
4. **wait_inference** waits until the inference job is `ACTIVE` (fails fast on `CREATE_FAILED`,
   `CANCEL_*`, `INACTIVE`).

#### Params
Every AWS object the run needs comes from `params` (the defaults are placeholders): override them
in the "Trigger DAG" form or with a run conf, e.g.
`airflow dags test example_cleanrooms_ml_train_and_infer --conf '{"membership_id": "...", ...}'`.

#### Sync or deferrable
A sensor's `deferrable` argument is fixed when the DAG file is parsed (it is not a template field),
so a run param cannot switch it. This file therefore defines two DAGs from one factory:
`example_cleanrooms_ml_train_and_infer` (sensors in `reschedule` mode: no worker slot held between
checks) and `example_cleanrooms_ml_train_and_infer_deferrable` (sensors defer to the triggerer).

The polling interval is read at parse time from the environment variable
`CLEANROOMS_ML_EXAMPLE_POLL_SECONDS` (default 60 seconds; the demo and the tests set it to 1).

#### Container logs
The sensors have `print_log=True`: what the training and inference containers write (CloudWatch
Logs, when the association's privacy configuration allows it) appears in their task logs, and the
"Clean Rooms ML Container Logs" link opens them in the CloudWatch console.

#### Running it against AWS instead of the emulator
Nothing in the DAG changes: every task uses the Airflow connection `aws_default`, and the
connection decides where the calls go.

* The demo (`make demo`) points it at the local emulator through the environment:
  `AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws", "extra": {"endpoint_url": "http://127.0.0.1:PORT"}}'`
  (plus `"region_name": "us-east-1"` in the extra).
* For AWS, define `aws_default` without `endpoint_url` (Admin -> Connections in the UI, or the
  same environment variable): credentials from the environment or an instance/pod role, or a
  `role_arn` and `region_name` in the extra. Then trigger the DAG with your membership id,
  association ARN, ML input channel ARNs and receiver account as params.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum

try:
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.11
    from airflow.models import DAG, Param  # type: ignore[assignment,no-redef,attr-defined,unused-ignore]

from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)
from airflow_cleanrooms.param_schemas import member_schema
from airflow_cleanrooms.sensors.cleanrooms_ml import (
    CleanRoomsMLTrainedModelInferenceJobSensor,
    CleanRoomsMLTrainedModelSensor,
)

DAG_ID = "example_cleanrooms_ml_train_and_infer"
AWS_CONN_ID = "aws_default"
POLL_SECONDS_ENV = "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS"
WAIT_TIMEOUT = timedelta(hours=12)  # per sensor, sync and deferrable alike

TRAIN = "CreateTrainedModel"
INFER = "StartTrainedModelInferenceJob"

# Resource names end with "-model-<run_after>" / "-scores-<run_after>" (ts_nodash: 15 characters),
# so the prefix may use what the model's NameString length leaves over.
# When the run was due: manual runs in Airflow 3 have no logical date, and Airflow 2.11 has no run_after.
RUN_AFTER = "dag_run.run_after if dag_run.run_after is defined else dag_run.logical_date"
RUN_SUFFIX = "{{ (" + RUN_AFTER + ") | ts_nodash }}"
RUN_SUFFIX_LENGTH = len("20260101T000000")
NAME_MAX_LENGTH = int(member_schema(INFER, "name")["maxLength"])
NAME_PREFIX_MAX_LENGTH = NAME_MAX_LENGTH - len("-scores-") - RUN_SUFFIX_LENGTH

# Placeholders that satisfy the model's patterns; a real run overrides them.
EXAMPLE_ACCOUNT = "111122223333"
EXAMPLE_MEMBERSHIP = "00000000-0000-4000-8000-000000000000"
EXAMPLE_MEMBERSHIP_ARN = f"arn:aws:cleanrooms-ml:us-east-1:{EXAMPLE_ACCOUNT}:membership/{EXAMPLE_MEMBERSHIP}"


def poll_seconds() -> int:
    """Seconds between status checks, read at parse time (``CLEANROOMS_ML_EXAMPLE_POLL_SECONDS``)."""
    return max(1, int(os.environ.get(POLL_SECONDS_ENV, "60")))


def dag_params() -> dict[str, Param]:
    """The run's params, each with the JSON schema of the API member it feeds."""
    return {
        "membership_id": Param(
            EXAMPLE_MEMBERSHIP,
            title="Membership id",
            description="Clean Rooms membership id (UUID) that owns the model and the channels.",
            **member_schema(TRAIN, "membershipIdentifier"),
        ),
        "configured_model_algorithm_association_arn": Param(
            f"{EXAMPLE_MEMBERSHIP_ARN}/configured-model-algorithm-association/example",
            title="Configured model algorithm association ARN",
            description="ARN of the configured model algorithm association to train.",
            **member_schema(TRAIN, "configuredModelAlgorithmAssociationArn"),
        ),
        "training_channel_arn": Param(
            f"{EXAMPLE_MEMBERSHIP_ARN}/ml-input-channel/example-training",
            title="Training ML input channel ARN",
            description="ML input channel the model is trained on.",
            **member_schema(TRAIN, "dataChannels", "mlInputChannelArn"),
        ),
        "inference_channel_arn": Param(
            f"{EXAMPLE_MEMBERSHIP_ARN}/ml-input-channel/example-inference",
            title="Inference ML input channel ARN",
            description="ML input channel the inference job scores.",
            **member_schema(INFER, "dataSource", "mlInputChannelArn"),
        ),
        "receiver_account": Param(
            EXAMPLE_ACCOUNT,
            title="Receiver account",
            description="AWS account (12 digits) that receives the inference results.",
            **member_schema(INFER, "outputConfiguration", "members", "accountId"),
        ),
        "name_prefix": Param(
            "churn",
            title="Name prefix",
            description="Prefix of the trained model and inference job names.",
            type="string",
            minLength=1,
            maxLength=NAME_PREFIX_MAX_LENGTH,
        ),
        "training_instance_type": Param(
            "ml.m5.xlarge",
            title="Training instance type",
            description="Training instance type.",
            **member_schema(TRAIN, "resourceConfig", "instanceType"),
        ),
        "training_volume_size_gb": Param(
            10,
            title="Training volume (GB)",
            description="Training volume size in GB.",
            **member_schema(TRAIN, "resourceConfig", "volumeSizeInGB"),
        ),
        "epochs": Param(
            "5",
            title="Epochs",
            description="Hyperparameter passed to the training container.",
            **member_schema(TRAIN, "hyperparameters")["additionalProperties"],
        ),
        "inference_instance_type": Param(
            "ml.m5.xlarge",
            title="Inference instance type",
            description="Inference instance type.",
            **member_schema(INFER, "resourceConfig", "instanceType"),
        ),
        "score_threshold": Param(
            "0.5",
            title="Score threshold",
            description="Passed to the inference container as SCORE_THRESHOLD.",
            **member_schema(INFER, "environment")["additionalProperties"],
        ),
        "team": Param(
            "growth",
            title="Team tag",
            description="Value of the 'team' tag on the trained model and the inference job.",
            **member_schema(INFER, "tags")["additionalProperties"],
        ),
    }


def build_dag(dag_id: str, *, deferrable: bool) -> DAG:
    """Build the train-and-infer DAG; ``deferrable`` picks how the two sensors wait."""
    poll = poll_seconds()
    max_checks = int(WAIT_TIMEOUT.total_seconds() // poll)  # the deferrable sensors' limit
    sensor_mode = {"deferrable": True} if deferrable else {"deferrable": False, "mode": "reschedule"}
    tags = {
        "team": "{{ params.team }}",
        "airflow-dag": "{{ dag.dag_id }}",
        "airflow-run-after": RUN_SUFFIX,
    }
    with DAG(
        dag_id=dag_id,
        description="Train a Clean Rooms ML model, then score an ML input channel with it"
        + (" (deferrable sensors)" if deferrable else ""),
        doc_md=__doc__,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        schedule=None,
        catchup=False,
        max_active_runs=1,
        tags=["example", "cleanrooms-ml"] + (["deferrable"] if deferrable else []),
        params=dag_params(),
    ) as dag:
        create_trained_model = CleanRoomsMLCreateTrainedModelOperator(
            task_id="create_trained_model",
            aws_conn_id=AWS_CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            name="{{ params.name_prefix }}-model-" + RUN_SUFFIX,
            configured_model_algorithm_association_arn=(
                "{{ params.configured_model_algorithm_association_arn }}"
            ),
            resource_config={
                "instanceType": "{{ params.training_instance_type }}",
                "instanceCount": 1,
                # Rendered as digits; the operator makes it the integer the model asks for.
                "volumeSizeInGB": "{{ params.training_volume_size_gb }}",
            },
            data_channels=[
                {"mlInputChannelArn": "{{ params.training_channel_arn }}", "channelName": "train"}
            ],
            hyperparameters={"epochs": "{{ params.epochs }}"},
            stopping_condition={"maxRuntimeInSeconds": 4 * 3600},
            description="Trained by Airflow run {{ run_id }}",
            tags=tags,
            wait_for_completion=False,
        )

        wait_trained_model = CleanRoomsMLTrainedModelSensor(
            task_id="wait_trained_model",
            aws_conn_id=AWS_CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            trained_model_arn=create_trained_model.output,
            poke_interval=poll,
            timeout=WAIT_TIMEOUT.total_seconds(),
            max_retries=max_checks,
            print_log=True,  # the job's container logs in this task's log (CloudWatch Logs)
            **sensor_mode,
        )

        start_inference = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="start_inference",
            aws_conn_id=AWS_CONN_ID,
            membership_identifier="{{ params.membership_id }}",
            name="{{ params.name_prefix }}-scores-" + RUN_SUFFIX,
            trained_model_arn="{{ ti.xcom_pull(task_ids='create_trained_model') }}",
            resource_config={"instanceType": "{{ params.inference_instance_type }}", "instanceCount": 1},
            output_configuration={
                "accept": "text/csv",
                "members": [{"accountId": "{{ params.receiver_account }}"}],
            },
            data_source={"mlInputChannelArn": "{{ params.inference_channel_arn }}"},
            environment={
                "SCORE_THRESHOLD": "{{ params.score_threshold }}",
                "AIRFLOW_RUN_ID": "{{ run_id }}",
            },
            tags=tags,
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

        create_trained_model >> wait_trained_model >> start_inference >> wait_inference
    return dag


example_cleanrooms_ml_train_and_infer = build_dag(DAG_ID, deferrable=False)
example_cleanrooms_ml_train_and_infer_deferrable = build_dag(f"{DAG_ID}_deferrable", deferrable=True)

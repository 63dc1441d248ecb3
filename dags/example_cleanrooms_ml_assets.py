"""
### Retrain in one DAG, score with every new model in another (Airflow assets)

`example_cleanrooms_ml_retrain`: `create_trained_model` trains a model and waits (deferred) until
it is `ACTIVE`. Its outlet is the asset `cleanrooms-ml://<membership id>/trained-model/churn`, and
the task puts the new model's ARN, version, status and membership into the asset event's `extra`.

`example_cleanrooms_ml_score_new_model` is scheduled on that asset: every new model starts a run,
whose `start_inference` scores with the model ARN and version the triggering asset event carried
(`triggering_asset_events`), and waits (deferred) until the job is `ACTIVE`.

#### Inputs
* The membership is read when the file is parsed (an asset's URI is fixed then): the environment
  variable `CLEANROOMS_ML_EXAMPLE_MEMBERSHIP_ID`.
* Retraining: the run's params (`configured_model_algorithm_association_arn`,
  `training_channel_arn`), from the "Trigger DAG" form, `--conf`, or their defaults on a schedule.
* Scoring runs start from the asset, without a conf: the channel to score is the Airflow Variable
  `cleanrooms_ml_scoring_channel_arn`.

#### Emulator or AWS
The tasks use the Airflow connection `aws_default`. With
`AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws", "extra": {"endpoint_url": "http://127.0.0.1:PORT"}}'`
(plus `"region_name": "us-east-1"`) they talk to the local emulator; without `endpoint_url` the same
DAGs run on AWS.
"""

from __future__ import annotations

import os

import pendulum

try:
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2.11
    from airflow.models import DAG, Param  # type: ignore[assignment,no-redef,attr-defined,unused-ignore]

from airflow_cleanrooms.assets import create_asset
from airflow_cleanrooms.compat import model_has_member
from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)
from airflow_cleanrooms.param_schemas import member_schema

AWS_CONN_ID = "aws_default"
MEMBERSHIP_ENV = "CLEANROOMS_ML_EXAMPLE_MEMBERSHIP_ID"
POLL_SECONDS_ENV = "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS"
SCORING_CHANNEL_VARIABLE = "cleanrooms_ml_scoring_channel_arn"
EXAMPLE_ACCOUNT = "111122223333"
MEMBERSHIP_ID = os.environ.get(MEMBERSHIP_ENV, "00000000-0000-4000-8000-000000000000")
MEMBERSHIP_ARN = f"arn:aws:cleanrooms-ml:us-east-1:{EXAMPLE_ACCOUNT}:membership/{MEMBERSHIP_ID}"
POLL_SECONDS = max(1, int(os.environ.get(POLL_SECONDS_ENV, "60")))
# When the run was due: manual runs in Airflow 3 have no logical date, and Airflow 2.11 has no run_after.
RUN_AFTER = "dag_run.run_after if dag_run.run_after is defined else dag_run.logical_date"
RUN_SUFFIX = "{{ (" + RUN_AFTER + ") | ts_nodash }}"
TRAIN = "CreateTrainedModel"

#: The model this pair retrains and scores with: its ARN and version travel in each event's extra.
CHURN_MODEL = create_asset(membership_id=MEMBERSHIP_ID, resource_type="trained-model", label="churn")
#: The newest event of the run's triggering asset (scoring runs have exactly one triggering asset).
#: (Airflow 2.11 names them triggering_dataset_events.)
NEW_MODEL = (
    "((triggering_asset_events if triggering_asset_events is defined else triggering_dataset_events)"
    ".values() | first | last).extra"
)
#: Score with the event's model version, where the installed botocore has trained model versions.
VERSION_OF_NEW_MODEL = (
    {"trained_model_version_identifier": "{{ " + NEW_MODEL + "['version'] or '' }}"}
    if model_has_member("StartTrainedModelInferenceJobRequest", "trainedModelVersionIdentifier")
    else {}
)

with DAG(
    dag_id="example_cleanrooms_ml_retrain",
    description="Retrain the churn model; its asset schedules the scoring DAG",
    doc_md=__doc__,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["example", "cleanrooms-ml", "assets"],
    params={
        "configured_model_algorithm_association_arn": Param(
            f"{MEMBERSHIP_ARN}/configured-model-algorithm-association/example",
            title="Configured model algorithm association ARN",
            **member_schema(TRAIN, "configuredModelAlgorithmAssociationArn"),
        ),
        "training_channel_arn": Param(
            f"{MEMBERSHIP_ARN}/ml-input-channel/example-training",
            title="Training ML input channel ARN",
            **member_schema(TRAIN, "dataChannels", "mlInputChannelArn"),
        ),
    },
) as example_cleanrooms_ml_retrain:
    CleanRoomsMLCreateTrainedModelOperator(
        task_id="create_trained_model",
        aws_conn_id=AWS_CONN_ID,
        membership_identifier=MEMBERSHIP_ID,
        name="churn-model-" + RUN_SUFFIX,
        configured_model_algorithm_association_arn="{{ params.configured_model_algorithm_association_arn }}",
        resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 10},
        data_channels=[{"mlInputChannelArn": "{{ params.training_channel_arn }}", "channelName": "train"}],
        deferrable=True,
        waiter_delay=POLL_SECONDS,
        outlets=[CHURN_MODEL],
    )

with DAG(
    dag_id="example_cleanrooms_ml_score_new_model",
    description="Score with each new churn model, as soon as the retraining DAG made it",
    doc_md=__doc__,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    schedule=[CHURN_MODEL],
    catchup=False,
    tags=["example", "cleanrooms-ml", "assets"],
) as example_cleanrooms_ml_score_new_model:
    CleanRoomsMLStartTrainedModelInferenceJobOperator(
        task_id="start_inference",
        aws_conn_id=AWS_CONN_ID,
        membership_identifier=MEMBERSHIP_ID,
        name="churn-scores-" + RUN_SUFFIX,
        trained_model_arn="{{ " + NEW_MODEL + "['arn'] }}",
        **VERSION_OF_NEW_MODEL,
        resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        output_configuration={"accept": "text/csv", "members": [{"accountId": EXAMPLE_ACCOUNT}]},
        data_source={"mlInputChannelArn": "{{ var.value." + SCORING_CHANNEL_VARIABLE + " }}"},
        deferrable=True,
        waiter_delay=POLL_SECONDS,
    )

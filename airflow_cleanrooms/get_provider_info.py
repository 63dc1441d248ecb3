"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_cleanrooms import __version__

INTEGRATION_NAME = "AWS Clean Rooms ML"
# The hooks authenticate through the amazon provider's ``aws`` connection type. It is deliberately
# not re-declared under "connection-types": that key registers a type, it does not say "uses one".
# Declaring ``aws`` again makes whichever provider is discovered first own it and makes Airflow log
# "The connection_type 'aws' has been already registered by provider ..." in every task and CLI call.
AWS_CONNECTION_TYPE = "aws"
#: The ``cleanrooms-ml://`` scheme's handler, factory and OpenLineage converter.
ASSET_URIS = {
    "schemes": ["cleanrooms-ml"],
    "handler": "airflow_cleanrooms.assets.sanitize_uri",
    "factory": "airflow_cleanrooms.assets.create_asset",
    "to_openlineage_converter": "airflow_cleanrooms.assets.convert_asset_to_openlineage",
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-cleanrooms",
        "name": "AWS Clean Rooms ML",
        "description": (
            "Apache Airflow provider for `AWS Clean Rooms ML <https://aws.amazon.com/clean-rooms/ml/>`__: "
            "train custom models and run inference jobs from DAGs. Uses the Amazon provider's "
            "``aws`` connection type."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION_NAME,
                "external-doc-url": "https://docs.aws.amazon.com/clean-rooms/latest/userguide/machine-learning.html",
                "tags": ["aws"],
            }
        ],
        "operators": [
            {
                "integration-name": INTEGRATION_NAME,
                "python-modules": ["airflow_cleanrooms.operators.cleanrooms_ml"],
            }
        ],
        "sensors": [
            {
                "integration-name": INTEGRATION_NAME,
                "python-modules": ["airflow_cleanrooms.sensors.cleanrooms_ml"],
            }
        ],
        "hooks": [
            {
                "integration-name": INTEGRATION_NAME,
                "python-modules": ["airflow_cleanrooms.hooks.cleanrooms_ml"],
            }
        ],
        "triggers": [
            {
                "integration-name": INTEGRATION_NAME,
                "python-modules": ["airflow_cleanrooms.triggers.cleanrooms_ml"],
            }
        ],
        "config": {
            "cleanrooms_ml": {
                "description": "Options of the AWS Clean Rooms ML provider.",
                "options": {
                    "triggerers": {
                        "description": (
                            "How many triggerers poll the same AWS accounts (Amazon MWAA: the number of "
                            "schedulers; Helm chart: triggerer.replicas). Each triggerer's deferred waits "
                            "take 1/N of max_requests_per_second, so that N triggerers together stay "
                            "under the account's request rate from their first poll."
                        ),
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "2",
                        "default": "1",
                    }
                },
            }
        },
        # Airflow 3 reads "asset-uris"; Airflow 2.11 reads the same entry as "dataset-uris" (as the amazon
        # provider declares its s3 scheme under both).
        "asset-uris": [ASSET_URIS],
        "dataset-uris": [ASSET_URIS],
        "extra-links": [
            "airflow_cleanrooms.links.cleanrooms_ml.CleanRoomsMLTrainedModelInferenceJobLink",
            "airflow_cleanrooms.links.cleanrooms_ml.CleanRoomsMLTrainedModelLink",
            "airflow_cleanrooms.links.cleanrooms_ml.CleanRoomsMLInputChannelLink",
            "airflow_cleanrooms.links.cleanrooms_ml.CleanRoomsMLContainerLogsLink",
        ],
    }

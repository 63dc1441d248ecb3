"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_cleanrooms import __version__

INTEGRATION_NAME = "AWS Clean Rooms ML"
AWS_CONNECTION_TYPE = "aws"


def _aws_connection_types() -> list[dict[str, Any]]:
    """
    The amazon provider's own ``aws`` connection type entry, reused as is.

    The provider's hooks authenticate through the amazon provider's ``aws`` connection; declaring the
    very same entry (hook class, display name, form behaviour) keeps the connection form identical
    whichever provider the providers manager happens to register it from first.
    """
    from airflow.providers.amazon.get_provider_info import get_provider_info as amazon_provider_info

    return [
        dict(entry)
        for entry in amazon_provider_info().get("connection-types", [])
        if entry.get("connection-type") == AWS_CONNECTION_TYPE
    ]


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow validates against ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-cleanrooms",
        "name": "AWS Clean Rooms ML",
        "description": (
            "Apache Airflow provider for `AWS Clean Rooms ML <https://aws.amazon.com/clean-rooms/ml/>`__: "
            "train custom models and run inference jobs from DAGs."
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
        "extra-links": [
            "airflow_cleanrooms.links.cleanrooms_ml.CleanRoomsMLTrainedModelInferenceJobLink",
            "airflow_cleanrooms.links.cleanrooms_ml.CleanRoomsMLTrainedModelLink",
            "airflow_cleanrooms.links.cleanrooms_ml.CleanRoomsMLInputChannelLink",
        ],
        "connection-types": _aws_connection_types(),
    }

"""The provider package: get_provider_info() against Airflow's schema, discovery, links, packaged files."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_cleanrooms.get_provider_info import get_provider_info
from airflow_cleanrooms.links.cleanrooms_ml import (
    CleanRoomsMLInputChannelLink,
    CleanRoomsMLTrainedModelInferenceJobLink,
    CleanRoomsMLTrainedModelLink,
)


def _import(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_provider_info_matches_airflows_schema() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == "airflow-cleanrooms"
    assert info["versions"]


def test_everything_listed_imports() -> None:
    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for link in info["extra-links"]:
        _import(link)
    integrations = {i["integration-name"] for i in info["integrations"]}
    for section in ("hooks", "operators", "sensors", "triggers"):
        assert {e["integration-name"] for e in info[section]} <= integrations


def test_listed_modules_hold_the_public_classes() -> None:
    from airflow_cleanrooms.hooks import cleanrooms_ml as hooks
    from airflow_cleanrooms.operators import cleanrooms_ml as operators
    from airflow_cleanrooms.sensors import cleanrooms_ml as sensors
    from airflow_cleanrooms.triggers import cleanrooms_ml as triggers

    assert hooks.CleanRoomsMLHook
    assert operators.CleanRoomsMLStartTrainedModelInferenceJobOperator
    assert operators.CleanRoomsMLCreateTrainedModelOperator
    assert operators.CleanRoomsMLCreateMLInputChannelOperator
    assert sensors.CleanRoomsMLTrainedModelInferenceJobSensor
    assert sensors.CleanRoomsMLTrainedModelSensor
    assert triggers.CleanRoomsMLTrainedModelInferenceJobCompleteTrigger
    assert triggers.CleanRoomsMLTrainedModelCompleteTrigger


def test_the_aws_connection_type_stays_the_amazon_providers() -> None:
    # The provider uses the amazon provider's ``aws`` connection type without re-registering it.
    assert "connection-types" not in get_provider_info()


def test_airflow_providers_list_shows_the_provider(airflow_home) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=180,
        check=True,
    )
    listing = next(line for line in result.stdout.splitlines() if line.startswith("[{"))
    providers = {p["package_name"]: p for p in json.loads(listing)}
    assert "airflow-cleanrooms" in providers
    assert providers["airflow-cleanrooms"]["version"] == get_provider_info()["versions"][0]
    assert "already registered" not in result.stdout + result.stderr


def test_waiter_json_is_packaged() -> None:
    from airflow_cleanrooms.wait_semantics import WAITERS_FILE

    assert WAITERS_FILE.is_file()
    assert WAITERS_FILE.is_relative_to(Path(importlib.import_module("airflow_cleanrooms").__file__).parent)


@pytest.mark.parametrize(
    "link",
    [
        CleanRoomsMLTrainedModelInferenceJobLink(),
        CleanRoomsMLTrainedModelLink(),
        CleanRoomsMLInputChannelLink(),
    ],
)
def test_console_links(link) -> None:
    assert link.format_link(region_name="us-east-1", aws_domain="aws.amazon.com", arn="x") == (
        "https://console.aws.amazon.com/cleanrooms/home?region=us-east-1#/collaborations"
    )
    assert link.format_link(
        region_name="eu-west-1", aws_domain="aws.amazon.com", collaboration_id="c-1", arn="x"
    ) == ("https://console.aws.amazon.com/cleanrooms/home?region=eu-west-1#/collaborations/c-1")
    assert link.format_link(region_name=None, aws_domain=None) == ""


def test_classifiers_name_every_python_ci_runs() -> None:
    """Each CI stage's lock names its Python; the package's classifiers name exactly those."""
    import re
    from importlib import metadata

    root = Path(__file__).resolve().parents[2]
    tested = {
        match.group(1)
        for lock in (root / "locks").glob("*.txt")
        if (match := re.search(r"^# python: (\S+)$", lock.read_text(), re.MULTILINE))
    }
    # The installed distribution's metadata: the wheel's in the MWAA stages, the editable install's elsewhere.
    classifiers = metadata.metadata("airflow-cleanrooms").get_all("Classifier") or []
    declared = {
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert tested and declared == tested, (
        f"CI runs Python {sorted(tested)}, classifiers say {sorted(declared)}"
    )
    requires = metadata.metadata("airflow-cleanrooms")["Requires-Python"]
    assert requires == f">={min(tested, key=lambda v: tuple(map(int, v.split('.'))))}"

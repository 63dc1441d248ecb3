"""Reading OpenLineage events back: what the provider's file transport wrote, one JSON file per event.

The test session (``tests/conftest.py``) and the deployments point the transport at a folder where the
OpenLineage provider is installed; the checks read the events back with these helpers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any


def read_events(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every event the transport wrote, by ``<job>@<run_id>`` (job: ``<dag_id>.<task_id>``, or the DAG id)."""
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(folder.glob("ol-*.json")):
        event = json.loads(path.read_text())
        run_id = event["run"]["facets"].get("airflow", {}).get("dagRun", {}).get("run_id")
        by_job[f"{event['job']['name']}@{run_id}"].append(event)
    return by_job


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Datasets as (namespace, name) pairs."""
    return [(d["namespace"], d["name"]) for d in datasets]


def arn_name(arn: str) -> tuple[str, str]:
    """A Clean Rooms ML ARN as its dataset's (namespace, name)."""
    prefix, _, resource = arn.partition(":membership/")
    return prefix, "membership/" + resource


def only(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one event of ``kind`` (``COMPLETE``, ``FAIL``) among a task's events."""
    (found,) = [e for e in events if e["eventType"] == kind]
    return found

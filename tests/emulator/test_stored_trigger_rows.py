"""
Trigger rows an earlier release wrote still deserialize and run.

Airflow stores a deferred task's trigger as its classpath and keyword arguments, and a triggerer of a
newer release of this provider builds it again from that row (an upgrade while tasks are deferred).
``data/trigger_rows_3f10ed0.json`` holds the rows main wrote at 3f10ed0, before the triggers became
declarative: every trigger class, with and without container-log streaming, a model version and a
rate. Each is built again from its stored keywords, must serialize back to the same row, and runs to
its event against the emulator (its membership and ARNs swapped for the emulator's, the keywords
themselves as stored).
"""

from __future__ import annotations

import asyncio
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cleanrooms.aio.client_pool import close_shared_clients
from airflow_cleanrooms.compat import has_model_versions

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle

ROWS = json.loads((Path(__file__).parent / "data" / "trigger_rows_3f10ed0.json").read_text())["rows"]
MODEL_VERSIONS = has_model_versions()


def _row_id(row: dict[str, Any]) -> str:
    kwargs = row["kwargs"]
    extras = [key for key in ("print_log", "version_identifier", "resource") if key in kwargs]
    return row["classpath"].rsplit(".", 1)[-1] + "".join(f"-{key}" for key in extras)


def _live(kwargs: dict[str, Any], emulator: EmulatorHandle, seeded: dict[str, str], job_arn: str) -> None:
    """The stored row's keywords, pointed at the emulator's resources (the same keys, as stored)."""
    swap = {
        "membership_identifier": seeded["membership_id"],
        "trained_model_inference_job_arn": job_arn,
        "trained_model_arn": seeded["trained_model_arn"],
        "ml_input_channel_arn": seeded["ml_input_channel_arn"],
        "version_identifier": seeded.get("trained_model_version_identifier"),
        "aws_conn_id": emulator.conn_id,
        "log_stream_prefix": job_arn.rsplit("/", 1)[-1],
    }
    for key, value in swap.items():
        if key in kwargs:
            kwargs[key] = value
    kwargs.pop("region_name", None)  # the emulator connection's own Region


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_a_stored_row_deserializes_and_runs(
    row: dict[str, Any], cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str],
    make_inference_request: Any,
) -> None:  # fmt: skip
    module, _, name = row["classpath"].rpartition(".")
    trigger_class = getattr(importlib.import_module(module), name)
    stored = dict(row["kwargs"])
    assert trigger_class(**stored).serialize() == (row["classpath"], row["kwargs"])

    if "version_identifier" in stored and not MODEL_VERSIONS:
        pytest.skip("the installed botocore model has no trained model versions")
    cleanrooms_emulator.control.set_timings(pending_seconds=0.5, running_seconds=1.5)
    job_arn = client.start_trained_model_inference_job(**make_inference_request(name="stored-row"))[
        "trainedModelInferenceJobArn"
    ]
    kwargs = dict(stored)
    _live(kwargs, cleanrooms_emulator, seeded, job_arn)
    trigger = trigger_class(**kwargs)

    async def first_event() -> dict[str, Any]:
        try:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("the trigger ended without an event")
        finally:
            await close_shared_clients()

    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    if "resource" in stored:  # the quota-slot trigger: fewer jobs than the quota hold a slot
        assert event["quota_name"] == stored["quota_name"]
        assert event["pending_jobs"] < stored["quota_value"]
    else:
        return_key = next(key for key in stored if key.endswith("_arn"))
        assert event[return_key] == kwargs[return_key]

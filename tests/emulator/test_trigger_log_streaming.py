"""Deferrable streaming in the trigger: shared clients, lines once each, the last lines after the end."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cleanrooms.aio.client_pool import SharedClientPool, close_shared_clients
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobCompleteTrigger

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle


@pytest.mark.emulator_limits(
    request_rate="off", inference_jobs_per_membership=10, reason="3 jobs, polled fast"
)
def test_streaming_triggers_share_one_logs_client_and_log_each_line_once(
    cleanrooms_emulator: EmulatorHandle,
    client: Any,
    seeded: dict[str, str],
    make_inference_request: Any,
    capfd: pytest.CaptureFixture[str],
) -> None:
    control = cleanrooms_emulator.control
    control.set_timings(pending_seconds=0.5, running_seconds=2.5)
    control.fail_job("stream-1", "AlgorithmError", "bad row 1")
    arns = [
        client.start_trained_model_inference_job(**make_inference_request(name=f"stream-{i}"))[
            "trainedModelInferenceJobArn"
        ]
        for i in range(3)
    ]
    triggers = [
        CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
            membership_identifier=seeded["membership_id"],
            trained_model_inference_job_arn=arn,
            waiter_delay=1,
            waiter_max_attempts=30,
            aws_conn_id=cleanrooms_emulator.conn_id,
            print_log=True,
        )
        for arn in arns
    ]

    async def run() -> tuple[list[dict[str, Any]], int]:
        async def one(trigger: Any) -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("no event")

        try:
            events = await asyncio.gather(*(one(t) for t in triggers))
            return events, SharedClientPool.for_running_loop().clients_created
        finally:
            await close_shared_clients()

    events, clients = asyncio.run(run())

    assert [e["status"] for e in events] == ["success", "error", "success"]
    assert events[1]["logs_status"] == "PUBLISH_SUCCEEDED"
    assert clients == 2  # one cleanroomsml client and one logs client for the three waits
    output = capfd.readouterr()
    text = output.out + output.err  # the trigger's log (Airflow's logging writes it to the console)
    assert text.count("[container] ERROR AlgorithmError: bad row 1") == 1
    assert text.count("[container] Scored 1000 of 1000 records; output written. Exiting with code 0") == 2
    for arn in arns:
        assert f"Following log stream: {arn.rsplit('/', 1)[-1]}/algo-1" in text
        assert text.count(f"'{arn.rsplit('/', 1)[-1]}'") == 1  # "Streaming ..." once per wait
    assert text.count("Container logs: 4 lines from 1 stream") == 2  # start, model, progress, exit 0
    assert text.count("Container logs: 5 lines from 1 stream") == 1  # ... progress, ERROR, exit 1

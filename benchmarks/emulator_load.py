"""
Load benchmark of the Clean Rooms ML emulator: N jobs, each polled by its own concurrent poller.

Starts the emulator in a separate process (``python -m airflow_cleanrooms.emulator``), starts N
inference jobs through the API, then runs N pollers at once (one asyncio loop, one keep-alive
connection each), every poller calling ``GetTrainedModelInferenceJob`` for its job back to back
(``--interval 0``) or every ``--interval`` seconds, for ``--seconds``. Jobs are timed to finish
inside the window, so the run also checks that every poller saw its job reach ``ACTIVE``.

Prints requests/second and p50/p90/p99/max latency, per server stack::

    python benchmarks/emulator_load.py --n 1000            # the figure in the README/report
    python benchmarks/emulator_load.py --n 20 --seconds 2   # CI smoke
    python benchmarks/emulator_load.py --n 1000 --stack aiohttp --stack threading   # compare stacks

Requests carry a SigV4-shaped ``Authorization`` header (the emulator checks that requests are
signed, not the signature), so the load generator spends its CPU on HTTP, not on signing. Client
and server share this machine's cores: the figures are a floor for the server alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/cleanrooms-ml/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)
HEADERS = {"Authorization": AUTH, "X-Amz-Date": "20260101T000000Z", "Content-Type": "application/json"}
_LISTENING = re.compile(r"listening on (http://\S+)")


def start_emulator(
    stack: str, state: str, pending: float, running: float
) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "airflow_cleanrooms.emulator",
        "--port",
        "0",
        "--state",
        state,
        "--stack",
        stack,
        "--pending-seconds",
        str(pending),
        "--running-seconds",
        str(running),
        "--log-level",
        "WARNING",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    for line in process.stdout:
        found = _LISTENING.search(line)
        if found:
            return process, found.group(1)
    raise RuntimeError("the emulator did not start")


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_load(url: str, n: int, seconds: float, interval: float) -> dict[str, Any]:
    membership = str(uuid.uuid4())
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.post(
            f"{url}/_emulator/seed", json={"membershipId": membership, "trainedModel": True}
        ) as response:
            seed = await response.json()
        start_uri = f"{url}/memberships/{membership}/trained-model-inference-jobs"
        creating = asyncio.Semaphore(64)

        async def create(index: int) -> str:
            body = {
                "name": f"bench-{index}",
                "trainedModelArn": seed["trained_model_arn"],
                "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
                "outputConfiguration": {"members": [{"accountId": ACCOUNT}]},
                "dataSource": {"mlInputChannelArn": seed["ml_input_channel_arn"]},
            }
            async with creating, session.post(start_uri, data=json.dumps(body), headers=HEADERS) as response:
                payload = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"start failed: {response.status} {payload}")
                return str(payload["trainedModelInferenceJobArn"])

        created_at = time.perf_counter()
        arns = await asyncio.gather(*(create(i) for i in range(n)))
        create_seconds = time.perf_counter() - created_at

        latencies: list[float] = []
        errors = 0
        final_status: dict[str, str] = {}
        deadline = time.perf_counter() + seconds

        async def poll(arn: str) -> None:
            nonlocal errors
            get_uri = f"{url}/memberships/{membership}/trained-model-inference-jobs/{urllib.parse.quote(arn, safe='')}"
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    async with session.get(get_uri, headers=HEADERS) as response:
                        payload = await response.read()
                        if response.status == 200:
                            final_status[arn] = json.loads(payload)["status"]
                        else:
                            errors += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - began)
                if interval:
                    await asyncio.sleep(interval)

        began = time.perf_counter()
        await asyncio.gather(*(poll(arn) for arn in arns))
        elapsed = time.perf_counter() - began

    latencies.sort()
    return {
        "pollers": n,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "errors": errors,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50) * 1000, 2),
            "p90": round(percentile(latencies, 0.90) * 1000, 2),
            "p99": round(percentile(latencies, 0.99) * 1000, 2),
            "max": round(latencies[-1] * 1000, 2) if latencies else None,
            "mean": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        },
        "jobs_started_per_second": round(n / create_seconds, 1),
        "jobs_seen_active": sum(1 for s in final_status.values() if s == "ACTIVE"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="concurrent pollers = jobs (default 1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="polling window (default 10)")
    parser.add_argument(
        "--interval", type=float, default=0.0, help="pause between one poller's calls (default 0)"
    )
    parser.add_argument(
        "--stack", action="append", choices=["aiohttp", "threading"], help="server stack(s) (default aiohttp)"
    )
    parser.add_argument(
        "--state", choices=["file", "memory"], default="file", help="emulator state (default file)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per stack instead of text")
    args = parser.parse_args(argv)
    failures = 0
    for stack in args.stack or ["aiohttp"]:
        with tempfile.TemporaryDirectory(prefix="emulator-load-") as tmp:
            state = str(Path(tmp) / "state.db") if args.state == "file" else ":memory:"
            # Jobs finish inside the polling window: every poller must see ACTIVE.
            process, url = start_emulator(
                stack, state, pending=args.seconds * 0.2, running=args.seconds * 0.3
            )
            try:
                result = asyncio.run(run_load(url, args.n, args.seconds, args.interval))
            finally:
                process.terminate()
                process.wait(30)
        result.update(stack=stack, state=args.state, interval=args.interval, cpus=os.cpu_count())
        if args.json:
            print(json.dumps(result))
        else:
            lat = result["latency_ms"]
            print(
                f"[{stack:9s}] {result['pollers']} pollers x {result['seconds']}s: "
                f"{result['requests']} requests, {result['requests_per_second']} req/s, "
                f"latency p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms; "
                f"errors {result['errors']}; jobs seen ACTIVE {result['jobs_seen_active']}/{result['pollers']}; "
                f"start rate {result['jobs_started_per_second']} jobs/s ({result['state']} state, {result['cpus']} CPUs)"
            )
        if result["errors"] or result["jobs_seen_active"] != result["pollers"]:
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

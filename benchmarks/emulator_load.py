"""
Load benchmark of the Clean Rooms ML emulator: N jobs, each polled by its own concurrent poller.

Starts the emulator in a separate process (``python -m airflow_cleanrooms.emulator``), starts N
inference jobs through the API, then runs N pollers at once (one asyncio loop, one keep-alive
connection each), each calling ``GetTrainedModelInferenceJob`` for its own job, in two phases:

- *paced*: a pause of ``--interval`` seconds after each answer (as sensors and triggers poll), for
  ``--seconds``; the jobs are timed to go CREATE_PENDING -> ACTIVE inside this window, and the run
  checks that every poller saw its job reach ``ACTIVE``;
- *back to back*: no pause, for ``--saturate-seconds``: the most the server answers.

Prints, per phase, requests/second, p50/p90/p99/max latency, errors, and the
server's CPU time per request (read from /proc, so it stays meaningful on a busy machine)::

    python benchmarks/emulator_load.py --n 1000    # the reported figures
    python benchmarks/emulator_load.py --n 20      # CI smoke (short windows), a few seconds

Requests carry a SigV4-shaped ``Authorization`` header (the emulator checks that requests are
signed, not the signature), and the pollers speak minimal HTTP/1.1 over asyncio streams, so the
load generator spends as little CPU as it can. Client and server share this machine's cores: the
figures are a floor for the server alone; its CPU time per request is the number that carries over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from airflow_cleanrooms.emulator.process import EmulatorProcess

ACCOUNT = "123456789012"
AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/cleanrooms-ml/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
)
HEADERS = {"Authorization": AUTH, "X-Amz-Date": "20260101T000000Z", "Content-Type": "application/json"}


def start_emulator(state: str, pending: float, running: float) -> EmulatorProcess:
    args = ["--pending-seconds", str(pending)]
    args += ["--running-seconds", str(running), "--log-level", "WARNING"]
    # This measures the server's own capacity (N jobs at once, polled back to back): AWS's job quotas
    # and request rates would refuse most of that load, so they are off here.
    args += ["--no-limits"]
    return EmulatorProcess(state=state, args=args).start()


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


_STATUS = re.compile(rb'"status": ?"([A-Z_]+)"')


def host_port(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


def raw_get(url: str, path: str) -> bytes:
    """A complete keep-alive HTTP/1.1 GET, built once per poller."""
    host, port = host_port(url)
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in HEADERS.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request and read one response (Content-Length framed) on a kept-alive connection.

    A minimal client on purpose: the load generator shares the CPUs with the server, so the
    cheaper each request is to send, the more the figures say about the server.
    """
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def poll_phase(
    url: str,
    membership: str,
    arns: list[str],
    seconds: float,
    interval: float,
    server_pid: int,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every job polled by its own poller for ``seconds``; ``interval`` = pause after each answer."""
    latencies: list[float] = []
    errors = 0
    final_status: dict[str, str] = {}
    deadline = time.perf_counter() + seconds
    hard_deadline = deadline + 2 * seconds

    async def poll(index: int, arn: str) -> None:
        nonlocal errors
        quoted = urllib.parse.quote(arn, safe="")
        request = raw_get(url, f"/memberships/{membership}/trained-model-inference-jobs/{quoted}")
        if interval:  # spread the pollers over one interval, as independent waits would be
            await asyncio.sleep(interval * index / len(arns))
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        # Paced pollers also go on until they have seen their job finish (at most 3 windows).
        while time.perf_counter() < deadline or (
            interval and final_status.get(arn) != "ACTIVE" and time.perf_counter() < hard_deadline
        ):
            began = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection(*host_port(url))
                status, body = await exchange(*connection, request)
                if status == 200:
                    found = _STATUS.search(body)
                    final_status[arn] = found.group(1).decode() if found else "?"
                else:
                    errors += 1
            except (OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                connection = None
            latencies.append(time.perf_counter() - began)
            if interval:
                await asyncio.sleep(interval)
        if connection is not None:
            connection[1].close()

    cpu_before = process_cpu_seconds(server_pid)
    began = time.perf_counter()
    await asyncio.gather(*(poll(i, arn) for i, arn in enumerate(arns)))
    elapsed = time.perf_counter() - began
    server_cpu = process_cpu_seconds(server_pid) - cpu_before
    latencies.sort()
    result = {
        "interval": interval,
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
        "server_cpu_cores": round(server_cpu / elapsed, 2),
        "server_cpu_us_per_request": round(server_cpu / max(1, len(latencies)) * 1e6, 1),
    }
    return result, final_status


async def run_load(
    url: str, server_pid: int, n: int, seconds: float, interval: float, saturate_seconds: float
) -> dict[str, Any]:
    membership = str(uuid.uuid4())
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=120)
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
        arns = list(await asyncio.gather(*(create(i) for i in range(n))))
        create_seconds = time.perf_counter() - created_at
        # Paced: pollers as waits do it (a pause between calls); the jobs finish inside this window.
        paced, final_status = await poll_phase(url, membership, arns, seconds, interval, server_pid)
        # Saturated: every poller calls back to back; measures the most the server answers.
        saturated, _ = await poll_phase(url, membership, arns, saturate_seconds, 0.0, server_pid)
    return {
        "pollers": n,
        "paced": paced,
        "saturated": saturated,
        "jobs_started_per_second": round(n / create_seconds, 1),
        "jobs_seen_active": sum(1 for s in final_status.values() if s == "ACTIVE"),
    }


def describe(label: str, phase: dict[str, Any]) -> str:
    lat = phase["latency_ms"]
    return (
        f"  {label}: {phase['requests']} requests in {phase['seconds']}s = "
        f"{phase['requests_per_second']} req/s; "
        f"latency p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms; "
        f"errors {phase['errors']}; server CPU {phase['server_cpu_us_per_request']} us/request "
        f"({phase['server_cpu_cores']} cores busy)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="concurrent pollers = jobs (default 1000)")
    parser.add_argument(
        "--seconds", type=float, help="paced polling window (default 10; 2 when --n is under 100)"
    )
    parser.add_argument(
        "--interval", type=float, help="paced: pause after each answer, per poller (default 2; 0.5 under 100)"
    )
    parser.add_argument(
        "--saturate-seconds", type=float, help="back-to-back polling window (default 5; 1 under 100)"
    )
    parser.add_argument(
        "--state", choices=["file", "memory"], default="file", help="emulator state (default file)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    small = args.n < 100  # the quick CI smoke run
    args.seconds = args.seconds if args.seconds is not None else (2.0 if small else 10.0)
    args.interval = args.interval if args.interval is not None else (0.5 if small else 2.0)
    args.saturate_seconds = (
        args.saturate_seconds if args.saturate_seconds is not None else (1.0 if small else 5.0)
    )
    with tempfile.TemporaryDirectory(prefix="emulator-load-") as tmp:
        state = str(Path(tmp) / "state.db") if args.state == "file" else ":memory:"
        # Jobs finish inside the polling window: every poller must see ACTIVE.
        emulator = start_emulator(state, pending=args.seconds * 0.2, running=args.seconds * 0.3)
        assert emulator.process is not None
        try:
            result = asyncio.run(
                run_load(
                    emulator.url,
                    emulator.process.pid,
                    args.n,
                    args.seconds,
                    args.interval,
                    args.saturate_seconds,
                )
            )
        finally:
            emulator.stop(timeout=30)
    result.update(state=args.state, cpus=os.cpu_count())
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['pollers']} jobs, one poller each ({result['state']} state, "
            f"{result['cpus']} CPUs shared with the load generator); "
            f"started {result['jobs_started_per_second']} jobs/s; "
            f"jobs seen ACTIVE {result['jobs_seen_active']}/{result['pollers']}"
        )
        print(describe(f"paced every {args.interval}s", result["paced"]))
        print(describe("back to back   ", result["saturated"]))
    errors = result["paced"]["errors"] + result["saturated"]["errors"]
    return 1 if errors or result["jobs_seen_active"] != result["pollers"] else 0


if __name__ == "__main__":
    sys.exit(main())

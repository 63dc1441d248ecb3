"""
One measured run (a fresh process): N concurrent inference-job waits in one event loop.

``python benchmarks/waits.py SPEC.json`` reads the spec written by run_all.py (variant, jobs, timings,
emulator URL) and prints one JSON line of results. Variants:

* ``ours``: the provider's trigger on ``CleanRoomsMLBaseWaiterTrigger`` (default transport: one shared
  boto3 client per connection, calls on the pool's threads);
* ``anchor``: the same trigger class with the amazon provider's ``AwsBaseWaiterTrigger.run`` (a client
  per trigger through ``hook.get_async_conn()``, the provider's ``async_wait``), same waiter;
* ``ours-aio``: the same trigger with ``client_transport = "aio"`` (one shared aiobotocore client per
  connection, used on the loop), the alternative design, measured to choose between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trigger_classes() -> dict[str, type]:
    from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

    from airflow_cleanrooms.triggers.cleanrooms_ml import (
        CleanRoomsMLTrainedModelInferenceJobCompleteTrigger as Ours,
    )

    class Anchor(Ours):  # type: ignore[misc,valid-type]
        run = AwsBaseWaiterTrigger.run

    class OursAio(Ours):  # type: ignore[misc,valid-type]
        client_transport = "aio"

    return {"ours": Ours, "ours-aio": OursAio, "anchor": Anchor}


async def warm_up(conn_ids: list[str]) -> None:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    for conn_id in conn_ids:
        hook = AwsGenericHook(aws_conn_id=conn_id, client_type="cleanroomsml")
        async with await hook.get_async_conn():
            pass


def main(spec_path: str) -> None:
    if os.environ.get("BENCH_DUMP_AFTER"):  # diagnose a hang: every thread's stack to stderr
        import faulthandler

        faulthandler.dump_traceback_later(float(os.environ["BENCH_DUMP_AFTER"]), exit=True)
    spec = json.loads(Path(spec_path).read_text())
    variant = spec["variant"]
    jobs = spec["jobs"]
    n = len(jobs)

    # Everything both variants need is imported before the baseline.
    import airflow.sdk  # noqa: F401

    from airflow_cleanrooms.aio.client_pool import SharedClientPool, close_shared_clients
    from airflow_cleanrooms.aio.poll_scheduler import PollScheduler
    from airflow_cleanrooms.emulator.control import EmulatorControl

    cls = trigger_classes()[variant]
    conn_ids = sorted(spec["connections"])
    # The first fraction of the waits stream their container logs (print_log) beside the status wait.
    streaming = round(n * float(spec.get("print_log_fraction") or 0.0)) if variant != "anchor" else 0
    # The request-rate limiter of our triggers: the spec's rate (None: off), else the trigger's default.
    rate = (
        {"max_requests_per_second": spec["max_requests_per_second"]}
        if "max_requests_per_second" in spec
        else {}
    )
    triggers = [
        cls(
            membership_identifier=job.get("membership", spec["membership"]),
            trained_model_inference_job_arn=job["arn"],
            waiter_delay=spec["delay"],
            waiter_max_attempts=spec["max_attempts"],
            aws_conn_id=job.get("conn_id", conn_ids[i % len(conn_ids)]),
            **rate,
            **({"print_log": True} if i < streaming else {}),
        )
        for i, job in enumerate(jobs)
    ]
    # The jobs were created with a long CREATE_IN_PROGRESS; move the emulator's clock so the first
    # turns ACTIVE `active_after` seconds from now (the others follow in creation order).
    control = EmulatorControl(spec["url"], timeout=120)
    # Warm-up, identical for every variant: open and close one client per connection through the
    # provider's hook, so the service model and endpoint rules are loaded (and cached by the provider's
    # shared botocore loader) before the baseline, as in a triggerer that has been running a while.
    asyncio.run(warm_up(conn_ids))
    gc.collect()
    # The heap the collector walks on a full (generation 2) pass, and what one such pass costs here,
    # before any wait exists: the floor of any full collection during the run.
    heap_objects = len(gc.get_objects())
    full_started = time.perf_counter()
    gc.collect()
    full_collection_ms = (time.perf_counter() - full_started) * 1000
    collections_before = [generation["collections"] for generation in gc.get_stats()]
    if spec.get("gc_freeze"):
        gc.freeze()  # start-up objects out of the collector's way, as a tuned long-running process does
    rss_base = rss_bytes()
    t_go = time.time()
    cpu_go = time.process_time()
    first_created = spec.get("first_created") or min(j["created"] for j in jobs)
    clock_file = Path(spec["clock_file"]) if spec.get("clock_file") else None
    if clock_file is None or spec.get("moves_clock"):
        advance = first_created + spec["hold_seconds"] - (t_go + spec["active_after"])
        control.advance_clock(advance)
        if clock_file is not None:  # the other triggerer processes of the run read it
            clock_file.with_suffix(".tmp").write_text(str(advance))
            clock_file.with_suffix(".tmp").rename(clock_file)
    else:  # another process of the run moves the emulator's clock once for all of them
        deadline = time.time() + 300
        while not clock_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        advance = float(clock_file.read_text())
    active_at = [j["created"] + spec["hold_seconds"] - advance for j in jobs]

    # Garbage-collector passes longer than 20 ms, (seconds after the start, generation, ms): a full
    # collection over the waits' objects stops the loop like any other synchronous work.
    gc_pauses: list[tuple[float, int, float]] = []
    gc_started: dict[str, float] = {}

    # Objects the young collections promote into the old generation: CPython runs a full collection
    # (a pause over the whole heap, `full_collection_ms_at_start`) once those exceed a quarter of the
    # old generation, so this count is what brings the next full pass closer.
    promoted = {"total": 0, "young": 0}
    # BENCH_GC_TRACE=path: what the young generation holds at each such collection (types, counts).
    trace = open(os.environ["BENCH_GC_TRACE"], "a") if os.environ.get("BENCH_GC_TRACE") else None  # noqa: SIM115

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        generation = info["generation"]
        if phase == "start":
            if generation == 1:
                young = gc.get_objects(0) + gc.get_objects(1)
                promoted["young"] = len(young) - 1  # the list itself is young too
                if trace:
                    print(round(time.time() - t_go, 2), Counter(map(type, young)).most_common(12), file=trace)
                del young
            gc_started["t"] = time.perf_counter()
        else:
            if generation == 1:
                promoted["total"] += promoted["young"] - info["collected"] - info["uncollectable"]
                if trace:
                    print("  promoted", promoted["young"] - info["collected"], file=trace, flush=True)
        if phase != "start" and "t" in gc_started:
            took = time.perf_counter() - gc_started.pop("t")
            if took > 0.02:
                gc_pauses.append((round(time.time() - t_go, 2), info["generation"], round(took * 1000, 1)))

    gc.callbacks.append(on_gc)
    events: dict[int, tuple[dict[str, Any], float]] = {}
    limiters: dict[str, dict[str, Any]] = {}  # ours: each rate limiter's figures, by account key
    stalls: list[float] = []
    big_stalls: list[tuple[float, float]] = []  # (seconds after the start, stall in ms) above 50 ms
    rss_peak = rss_base
    cpu_end = cpu_go

    async def run() -> tuple[float, int]:
        nonlocal rss_peak
        finished = asyncio.Event()
        beat = 0.01

        async def heartbeat() -> None:
            while not finished.is_set():
                start = time.perf_counter()
                await asyncio.sleep(beat)
                stall = max(0.0, time.perf_counter() - start - beat)
                stalls.append(stall)
                if stall > 0.05:
                    big_stalls.append((round(time.time() - t_go, 2), round(stall * 1000, 1)))

        def sample_rss() -> None:  # in a thread: reading /proc is a syscall, kept off the measured loop
            nonlocal rss_peak
            while not sampler_done.wait(0.05):
                rss_peak = max(rss_peak, rss_bytes())

        sampler_done = threading.Event()
        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()

        async def wait_one(i: int) -> None:
            async for event in triggers[i].run():  # iterated to its end, as the triggerer does
                events[i] = (event.payload, time.time())

        hb = asyncio.create_task(heartbeat())
        await asyncio.sleep(beat * 3)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(wait_one(i) for i in range(n)), return_exceptions=True),
                timeout=spec["timeout"],
            )
        t_end = time.time()
        nonlocal cpu_end
        cpu_end = time.process_time()
        rss_peak = max(rss_peak, rss_bytes())
        finished.set()
        sampler_done.set()
        await hb
        pool = SharedClientPool.for_running_loop()
        built = pool.clients_created
        for key, limiter in PollScheduler.for_running_loop().rate_limiters.limiters.items():
            limiters[key.account] = {
                "granted": limiter.granted,
                "throttles": limiter.throttles,
                "cuts": limiter.cuts,
                "rate_at_end": round(limiter.rate, 3),
            }
        await close_shared_clients()
        return t_end, built

    debug = bool(os.environ.get("BENCH_ASYNCIO_DEBUG"))  # logs callbacks slower than 50 ms to stderr
    if debug:
        import logging

        logging.getLogger("asyncio").addHandler(logging.StreamHandler(sys.stderr))
        logging.getLogger("asyncio").setLevel(logging.WARNING)
    if os.environ.get("BENCH_PROFILE"):  # main-thread profile of the measured loop, to stderr
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        t_end, pool_built = profiler.runcall(asyncio.run, run(), debug=debug)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats(
            os.environ.get("BENCH_PROFILE_SORT", "cumulative")
        ).print_stats(45)
    else:
        t_end, pool_built = asyncio.run(run(), debug=debug)

    ok = [i for i, (payload, _) in events.items() if payload.get("status") == "success"]
    errors = [
        payload.get("message", "")[:200]
        for payload, _ in events.values()
        if payload.get("status") != "success"
    ]
    latencies = sorted(events[i][1] - active_at[i] for i in ok)
    clients_by_conn: dict[str, set[int]] = {}
    for _i, t in enumerate(triggers):
        client_id = getattr(t, "_client_id", None)
        if client_id is not None:
            clients_by_conn.setdefault(t.aws_conn_id, set()).add(client_id)
    shared_across = len(clients_by_conn) > 1 and bool(
        set.intersection(*clients_by_conn.values()) if clients_by_conn else False
    )
    result = {
        "variant": variant,
        "n": n,
        "streaming_waits": streaming,
        "completed": len(ok),
        "errors": len(events) - len(ok),
        "missing": n - len(events),
        "error_samples": errors[:3],
        "max_stall_s": max(stalls) if stalls else None,
        "stalls_over_50ms": len(big_stalls),
        "worst_stalls_at": sorted(big_stalls, key=lambda x: -x[1])[:5],
        "gc_pauses_over_20ms": gc_pauses,
        "heap_objects_at_start": heap_objects,
        "full_collection_ms_at_start": full_collection_ms,
        "promoted_to_old_generation_per_wait": promoted["total"] / n,
        "full_collections": gc.get_stats()[2]["collections"] - collections_before[2],
        "collections_during_run": [
            generation["collections"] - before
            for generation, before in zip(gc.get_stats(), collections_before, strict=True)
        ],
        "p99_stall_s": statistics.quantiles(stalls, n=100)[98] if len(stalls) >= 100 else None,
        "rss_growth_per_wait_bytes": (rss_peak - rss_base) / n,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_max_s": latencies[-1] if latencies else None,
        "latency_min_s": latencies[0] if latencies else None,
        "active_spread_s": max(active_at) - min(active_at),
        "t_go": t_go,
        "total_s": t_end - t_go,
        "cpu_s": cpu_end - cpu_go,
        "last_active_s": max(active_at) - t_go,
        "clients_per_connection": {k: len(v) for k, v in clients_by_conn.items()},
        "client_shared_across_connections": shared_across,
        "pool_clients_built": pool_built,
        "rate_limiters": limiters,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])

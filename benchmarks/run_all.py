"""
All scale benchmarks in one command (``scripts/bench``): prints a table, optionally writes JSON.

1. N concurrent inference-job waits in one event loop against the emulator (its own process), for
   our trigger and for the anchor (the amazon provider's ``AwsBaseWaiterTrigger`` path, same waiter),
   each in a fresh process: completions, largest event-loop stall (heartbeat coroutine), RSS growth
   per wait, API calls per job, time from the job turning ACTIVE to its event, total time. These
   rows run with the emulator's AWS limits off and our rate limiter off: the cost of the machinery.
2. The same N waits as a multi-team triggerer sees them (spread over the accounts and memberships of
   ``common.TEAMS``) against AWS's request rate (the emulator's 5 requests/second per operation and
   account), ours (the shared rate limiter at its default, 5/s) next to the anchor: completions,
   failures, throttled responses, offered requests/second per account, detection latency against
   its bound, largest event-loop stall.
3. DAG parse cost (fresh interpreters, median): our operators + sensors + example DAG vs bare
   ``import airflow.sdk``, next to the amazon provider's SageMaker operator + sensor modules.

Figures are printed, never asserted; ``--smoke`` (CI) runs a small N so the harness cannot rot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CONNECTIONS,
    MEMBERSHIP,
    MEMBERSHIPS_PER_TEAM,
    ROOT,
    TEAMS,
    EmulatorProcess,
    child_env,
    connection_uri_env,
    create_jobs,
    create_team_jobs,
    emulator_process,
)
from parse_cost import measure as measure_parse_cost

HOLD_SECONDS = 3600.0  # CREATE_IN_PROGRESS length the jobs are created with (the clock is then moved)
PENDING_SECONDS = 1.0


def run_waits(emu: EmulatorProcess, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    control = emu.control
    control.reset()
    control.set_timings(pending_seconds=PENDING_SECONDS, running_seconds=HOLD_SECONDS)
    seed = control.seed_membership(MEMBERSHIP, trained_model=True)
    started = time.monotonic()
    jobs = create_jobs(emu.url, args.n, seed, prefix=f"bench-{variant}")
    creation_s = time.monotonic() - started
    control.clear_requests()
    spec = {
        "variant": variant,
        "jobs": jobs,
        "url": emu.url,
        "membership": MEMBERSHIP,
        "connections": sorted(CONNECTIONS),
        "delay": args.delay,
        "max_attempts": args.max_attempts,
        "active_after": args.active_after,
        "hold_seconds": PENDING_SECONDS + HOLD_SECONDS,
        "timeout": args.timeout,
        "gc_freeze": args.gc_freeze,
        "print_log_fraction": args.print_log_fraction,
        "max_requests_per_second": None,  # the emulator's limits are off: so is our limiter
    }
    result = run_child(emu, spec, connection_uri_env(emu.url), args)
    polls = control.requests("GetTrainedModelInferenceJob")
    result["api_calls_per_job"] = len(polls) / args.n
    first_poll: dict[str, float] = {}
    for entry in polls:
        arn = entry["params"].get("trainedModelInferenceJobArn", "")
        first_poll.setdefault(arn, entry["time"] - result["t_go"])
    if first_poll:
        ordered = sorted(first_poll.values())
        result["first_poll_median_s"] = ordered[len(ordered) // 2]
        result["first_poll_max_s"] = ordered[-1]
    result["cpu_ms_per_call"] = 1000 * result["cpu_s"] / len(polls) if polls else None
    result["job_creation_s"] = creation_s
    result["logs_calls"] = len(control.requests("GetLogEvents")) + len(control.requests("DescribeLogStreams"))
    return result


#: The rate-limited run: AWS's default request rate (requests/second per operation and account).
LIMITED_RATE = 5.0
GET_JOB = "GetTrainedModelInferenceJob"


def merge_triggerers(results: list[dict[str, Any]]) -> dict[str, Any]:
    """
    One result for waits split over several triggerer processes: counts and CPU add up; latencies,
    stalls and the run's time are the worst of them (the median too: the larger of the medians).
    """
    if len(results) == 1:
        return results[0]
    merged = dict(results[0])
    for key in ("n", "completed", "errors", "missing", "cpu_s"):
        merged[key] = sum(result[key] for result in results)
    for key in ("latency_p50_s", "latency_max_s", "max_stall_s", "total_s"):
        merged[key] = max((r[key] for r in results if r.get(key) is not None), default=None)
    merged["error_samples"] = [sample for result in results for sample in result["error_samples"]][:3]
    merged["rate_limiters"] = {
        f"triggerer {index + 1}: {key}": limiter
        for index, result in enumerate(results)
        for key, limiter in (result.get("rate_limiters") or {}).items()
    }
    return merged


def run_limited_waits(
    emu: EmulatorProcess, variant: str, args: argparse.Namespace, triggerers: int = 1, told: int = 1
) -> dict[str, Any]:
    """
    N waits spread over TEAMS' accounts and memberships against the emulator's request rate, in
    ``triggerers`` processes (each a triggerer, with its own limiters) that are ``told`` how many
    triggerers there are (``[cleanrooms_ml] triggerers``).
    """
    control = emu.control
    control.reset()
    # The jobs are created with the limits off (N jobs are far beyond the job quotas), then every
    # operation, GetTrainedModelInferenceJob included, is limited to LIMITED_RATE per account.
    control.set_limits(inference_jobs_per_membership=None, inference_jobs_per_account=None, request_rate=None)
    control.set_timings(pending_seconds=PENDING_SECONDS, running_seconds=HOLD_SECONDS)
    seeds = {}
    for index in range(len(TEAMS) * MEMBERSHIPS_PER_TEAM):
        membership = f"0b1f6c2a-3d4e-4f50-8a6b-{index:012d}"
        seeds[membership] = control.seed_membership(membership, trained_model=True)
    started = time.monotonic()
    jobs = create_team_jobs(emu.url, args.n, seeds, prefix=f"limited-{variant}")
    creation_s = time.monotonic() - started
    control.set_limits(request_rate=LIMITED_RATE)
    control.clear_requests()
    control.clear_stats()
    spec = {
        "variant": variant,
        "jobs": jobs,
        "url": emu.url,
        "membership": MEMBERSHIP,
        "connections": sorted(TEAMS),
        "delay": args.delay,
        "max_attempts": args.max_attempts,
        "active_after": args.active_after,
        "hold_seconds": PENDING_SECONDS + HOLD_SECONDS,
        "timeout": args.timeout,
        "gc_freeze": args.gc_freeze,
    }
    conn_env = {**connection_uri_env(emu.url, TEAMS), "AIRFLOW__CLEANROOMS_ML__TRIGGERERS": str(told)}
    clock_file = Path(tempfile.mkdtemp(prefix="cleanrooms-bench-clock-")) / "advance"
    shared = {"first_created": min(job["created"] for job in jobs), "clock_file": str(clock_file)}
    specs = [
        {
            **spec,
            **(shared if triggerers > 1 else {}),
            "jobs": jobs[index::triggerers],
            "moves_clock": index == 0,
        }
        for index in range(triggerers)
    ]
    with ThreadPoolExecutor(max_workers=triggerers) as pool:
        result = merge_triggerers(list(pool.map(lambda part: run_child(emu, part, conn_env, args), specs)))
    stats = control.stats()
    polls = control.requests(GET_JOB)  # the log (sized by --request-log-size) for the per-account rates
    account_of = {job["arn"]: job["account"] for job in jobs}
    by_account: dict[str, list[float]] = {}
    for entry in polls:
        account = account_of.get(entry["params"].get("trainedModelInferenceJobArn", ""), "?")
        by_account.setdefault(account, []).append(entry["time"])
    offered_mean, offered_peak = {}, {}
    for account, times in by_account.items():
        times.sort()
        span = max(times[-1] - times[0], 1.0)
        offered_mean[account] = (len(times) - 1) / span  # calls after the first, per second
        # Busiest whole 10-second window (from the account's first call), else the mean.
        windows: dict[int, int] = {}
        for t in times:
            windows[int((t - times[0]) // 10)] = windows.get(int((t - times[0]) // 10), 0) + 1
        whole = [count for window, count in windows.items() if (window + 1) * 10 <= span]
        offered_peak[account] = max(whole) / 10.0 if whole else offered_mean[account]
    requests = stats.requests_by_operation.get(GET_JOB, 0)
    throttled = stats.throttled_by_operation.get(GET_JOB, 0)
    result.update(
        {
            "get_requests": requests,
            "get_requests_logged": len(polls),
            "throttled": throttled,
            "throttled_pct": 100.0 * throttled / requests if requests else 0.0,
            "offered_mean_rps_max_account": max(offered_mean.values(), default=0.0),
            "offered_peak10s_rps_max_account": max(offered_peak.values(), default=0.0),
            "accounts": len(by_account),
            "limit_rps": LIMITED_RATE,
            "latency_bound_s": (args.n / len(TEAMS)) / LIMITED_RATE + args.delay,
            "job_creation_s": creation_s,
        }
    )
    return result


def run_child(
    emu: EmulatorProcess, spec: dict[str, Any], conn_env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Run benchmarks/waits.py on ``spec`` in a fresh process; its JSON result."""
    variant = spec["variant"]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec_file:
        json.dump(spec, spec_file)
    # The child's output (its trigger logs included) goes to a file, not a pipe, so a busy parent
    # can never slow the measured loop down through pipe backpressure.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).with_name("waits.py")), spec_file.name],
                stdout=out,
                stderr=err,
                text=True,
                env=child_env(conn_env),
                cwd=ROOT,
                timeout=args.timeout + 300,
            )
        finally:
            os.unlink(spec_file.name)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{variant} run failed (rc={proc.returncode}):\n{stderr[-3000:]}")
    if os.environ.get("BENCH_CHILD_STDERR"):
        print(stdout[-5000:], stderr[-20000:], sep="\n", file=sys.stderr)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kib = 0
    from importlib.metadata import version

    versions = {
        name: version(name)
        for name in ("apache-airflow", "apache-airflow-providers-amazon", "aiobotocore", "botocore")
    }
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
        **versions,
    }


def _fmt(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value * scale:.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return "-"
    return f"{a / b:.3f}"


MetricRow = tuple[str, str | None, float, int]  # label, result key (None: errors / missing), scale, digits


def _print_metrics(
    results: dict[str, dict[str, Any]],
    rows: list[MetricRow],
    width: int,
    ratio: tuple[str, str] | None = None,
) -> None:
    """One column per variant, one line per metric; with ``ratio`` (a, b) both present, a last column a/b."""
    variants = list(results)
    if ratio is not None and not all(v in results for v in ratio):
        ratio = None
    header = f"{'metric':<{width}}" + "".join(f"{v:>14}" for v in variants)
    if ratio is not None:
        header += f"{f'{ratio[0]}/{ratio[1]}':>14}"
    print(header)
    print("-" * len(header))
    for label, key, scale, digits in rows:
        line = f"{label:<{width}}"
        for v in variants:
            r = results[v]
            if key is None:
                cell = f"{r['errors']} / {r['missing']}"
            elif key == "completed":
                cell = f"{r['completed']}/{r['n']}"
            else:
                cell = _fmt(r.get(key), scale, digits)
            line += f"{cell:>14}"
        if ratio is not None and key not in (None, "completed"):
            line += f"{_ratio(results[ratio[0]].get(key), results[ratio[1]].get(key)):>14}"
        print(line)


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(
        f"\nMachine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, Python {m['python']}, "
        f"Airflow {m['apache-airflow']}, amazon provider {m['apache-airflow-providers-amazon']}, "
        f"aiobotocore {m['aiobotocore']}, botocore {m['botocore']}; load avg at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_avg'])}"
    )
    waits = report.get("waits", {})
    if waits:
        first = next(iter(waits.values()))
        print(
            f"\n{first['n']} concurrent inference-job waits in one event loop, split over "
            f"{len(CONNECTIONS)} connections; poll every {report['args']['delay']} s; jobs turn ACTIVE "
            f"{report['args']['active_after']} s after the start (spread over the "
            f"{first['active_spread_s']:.1f} s their creation took)\n"
        )
        rows = [
            ("completed (success events)", "completed", 1, 0),
            ("error / missing events", None, 1, 0),
            ("max event-loop stall (ms)", "max_stall_s", 1000, 1),
            ("p99 event-loop stall (ms)", "p99_stall_s", 1000, 1),
            ("heartbeats late by > 50 ms", "stalls_over_50ms", 1, 0),
            ("RSS growth per wait (KiB)", "rss_growth_per_wait_bytes", 1 / 1024, 1),
            ("objects promoted to old gen. per wait", "promoted_to_old_generation_per_wait", 1, 1),
            ("full (gen 2) collections in the run", "full_collections", 1, 0),
            ("API calls per job", "api_calls_per_job", 1, 2),
            ("waits streaming container logs", "streaming_waits", 1, 0),
            ("CloudWatch Logs calls", "logs_calls", 1, 0),
            ("first poll after start, median (s)", "first_poll_median_s", 1, 2),
            ("first poll after start, max (s)", "first_poll_max_s", 1, 2),
            ("ACTIVE -> event, median (s)", "latency_p50_s", 1, 2),
            ("ACTIVE -> event, max (s)", "latency_max_s", 1, 2),
            ("total time (s)", "total_s", 1, 2),
            ("waiter process CPU (s)", "cpu_s", 1, 2),
            ("CPU per API call (ms)", "cpu_ms_per_call", 1, 2),
        ]
        variants = list(waits)
        _print_metrics(waits, rows, 36, ratio=("ours", "anchor"))
        clients = "  ".join(
            f"{v}: {waits[v]['clients_per_connection'] or 'one per trigger'}" for v in variants
        )
        print(f"{'clients per connection':<36}{clients}")
        if "ours" in waits:
            print(
                f"{'client shared across connections':<36}"
                f"{'YES (bug)' if waits['ours']['client_shared_across_connections'] else 'no'}"
            )
        for v in variants:
            if waits[v].get("full_collection_ms_at_start") is not None:
                print(
                    f"  {v}: one full collection over the heap at the start "
                    f"({waits[v]['heap_objects_at_start']:,} tracked objects, no wait yet) took "
                    f"{waits[v]['full_collection_ms_at_start']:.0f} ms"
                )
            pauses = waits[v].get("gc_pauses_over_20ms") or []
            if pauses:
                listed = ", ".join(f"{ms:.0f} ms (gen {gen}) at {at:.1f} s" for at, gen, ms in pauses[:4])
                print(f"  {v}: garbage-collector passes over 20 ms: {listed}")
            for sample in waits[v].get("error_samples", []):
                print(f"  {v} error: {sample}")
    limited = report.get("limited", {})
    if limited:
        first = next(iter(limited.values()))
        print(
            f"\n{first['n']} waits spread over {len(TEAMS)} accounts x {MEMBERSHIPS_PER_TEAM} memberships "
            f"(one connection per account) against {first['limit_rps']:g} requests/s per account on "
            f"{GET_JOB} (the emulator's AWS limits on); poll every {report['args']['delay']} s; ours: "
            f"shared rate limiter at its default ({first['limit_rps']:g}/s per account). 'x2 told "
            f"N': ours, the same waits split over 2 triggerer processes with [cleanrooms_ml] triggerers = N "
            f"(their median latency: the larger of the two)\n"
        )
        rows = [
            ("completed (success events)", "completed", 1, 0),
            ("task failures (error / missing events)", None, 1, 0),
            (f"{GET_JOB} calls", "get_requests", 1, 0),
            ("throttled responses", "throttled", 1, 0),
            ("throttled responses (% of calls)", "throttled_pct", 1, 2),
            ("offered req/s, busiest account, mean", "offered_mean_rps_max_account", 1, 2),
            ("offered req/s, busiest acct., peak 10 s", "offered_peak10s_rps_max_account", 1, 2),
            ("ACTIVE -> event, median (s)", "latency_p50_s", 1, 1),
            ("ACTIVE -> event, max (s)", "latency_max_s", 1, 1),
            ("  bound: waits per account / rate + delay", "latency_bound_s", 1, 1),
            ("max event-loop stall (ms)", "max_stall_s", 1000, 1),
            ("total time (s)", "total_s", 1, 1),
            ("waiter process CPU (s)", "cpu_s", 1, 2),
        ]
        variants = list(limited)
        _print_metrics(limited, rows, 42)
        for v in variants:
            for sample in limited[v].get("error_samples", []):
                print(f"  {v} error: {sample}")
            if limited[v].get("rate_limiters"):
                cuts = sum(x["cuts"] for x in limited[v]["rate_limiters"].values())
                print(f"  {v}: {len(limited[v]['rate_limiters'])} rate limiters, {cuts} AIMD cuts")
    parse = report.get("parse")
    if parse:
        med, cpu = parse["median_s"], parse["median_cpu_s"]
        print(f"\nDAG parse cost (fresh interpreters, median of {parse['repeats']}):")
        print(f"  {'':<52}{'wall (s)':>10}{'ratio':>8}{'CPU (s)':>10}{'ratio':>8}")
        rows = [
            ("import airflow.sdk alone", "bare", 1.0, 1.0),
            (
                "+ our operators, sensors and example DAG",
                "ours",
                parse["ratio_ours"],
                parse["cpu_ratio_ours"],
            ),
            (
                "+ amazon SageMaker operators and sensors (anchor)",
                "anchor",
                parse["ratio_anchor"],
                parse["cpu_ratio_anchor"],
            ),
        ]
        for label, kind, ratio, cpu_ratio in rows:
            print(f"  {label:<52}{med[kind]:>10.3f}{ratio:>8.3f}{cpu[kind]:>10.3f}{cpu_ratio:>8.3f}")
        for note in parse["notes"]:
            print(f"  note: {note}")


def quota_resume_table() -> str:
    """benchmarks/quota_resume.py in its own process (it runs operators in-process): its table."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.quota_resume"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("API calls per resume"))
    return "\n".join(lines[start:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, help="concurrent waits (default 1000; --smoke: 20)")
    parser.add_argument("--smoke", action="store_true", help="small and quick (CI): N=20, 1 parse repeat")
    parser.add_argument("--delay", type=int, help="waiter_delay in seconds (default 5; --smoke: 1)")
    parser.add_argument(
        "--active-after",
        type=float,
        help="first job turns ACTIVE this long after the start (default 10; --smoke: 5)",
    )
    parser.add_argument("--max-attempts", type=int, default=200)
    parser.add_argument(
        "--timeout", type=float, help="give up on a run after (s) (default 900; --smoke: 120)"
    )
    parser.add_argument("--variants", default="ours,anchor", help="comma-separated: ours, anchor, ours-aio")
    parser.add_argument(
        "--parse-repeats", type=int, help="fresh interpreters per kind (default 7; --smoke: 1)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() the waiting process after start-up (isolates the collector's full passes)",
    )
    parser.add_argument(
        "--print-log-fraction",
        type=float,
        default=0.0,
        help="fraction of our waits that stream container logs (print_log=True; default 0)",
    )
    parser.add_argument("--skip-waits", action="store_true")
    parser.add_argument("--skip-limited", action="store_true", help="skip the run against AWS's request rate")
    parser.add_argument("--skip-parse", action="store_true")
    parser.add_argument("--skip-quota", action="store_true", help="skip the quota-wait resume calls")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    defaults = (
        {"n": 20, "delay": 1, "active_after": 5.0, "timeout": 120.0, "parse_repeats": 1}
        if args.smoke
        else {"n": 1000, "delay": 5, "active_after": 10.0, "timeout": 900.0, "parse_repeats": 7}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    report: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    if not args.skip_waits:
        report["waits"] = {}
        # N waits on N jobs at once: far beyond AWS's job quotas and 5 requests/s, so these rows are
        # measured with the emulator's limits off (a limited row is a separate measurement).
        with emulator_process("--no-limits") as emu:
            for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
                print(f"running {variant} with N={args.n} ...", file=sys.stderr, flush=True)
                report["waits"][variant] = run_waits(emu, variant, args)
    if not args.skip_limited:
        report["limited"] = {}
        # The emulator's limits on; the request log holds every poll of the run (rates per account).
        with emulator_process("--request-log-size", "400000") as emu:
            for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
                print(
                    f"running {variant} against the request rate, N={args.n} ...", file=sys.stderr, flush=True
                )
                report["limited"][variant] = run_limited_waits(emu, variant, args)
            if "ours" in report["limited"]:
                # Two triggerers (processes) share the waits: told how many they are, and not told.
                for told in (2, 1):
                    print(
                        f"running ours on 2 triggerers told {told}, N={args.n} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    label = f"x2 told {told}"
                    report["limited"][label] = run_limited_waits(emu, "ours", args, triggerers=2, told=told)
    if not args.skip_parse:
        print("measuring DAG parse cost ...", file=sys.stderr, flush=True)
        report["parse"] = measure_parse_cost(args.parse_repeats, child_env())
    if not args.skip_quota:
        print("measuring the API calls of a quota wait's resume ...", file=sys.stderr, flush=True)
        report["quota_resume"] = quota_resume_table()
    print_report(report)
    if "quota_resume" in report:
        print(report["quota_resume"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

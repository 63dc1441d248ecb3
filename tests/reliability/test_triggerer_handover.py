"""
Hand-overs on the distributed topology (CeleryExecutor with 2 workers and a Redis broker, 2
triggerers, PostgreSQL): a trigger handed to another triggerer never cancels its job, a kill
still cancels exactly once, and a task retried after its worker died reconnects to its job.

On Airflow 3.3 a triggerer that stopped heart-beating for ``triggerer_health_check_threshold``
(6 s here) loses its triggers to the other triggerer; when it recovers, it cancels the triggers it
no longer owns as if a user had killed them, so ``on_kill`` runs (apache/airflow#73454). The
provider's triggers then read the task instance's state and cancel only when it is no longer
deferred.

Scenarios, one DAG run each, in one deployment (one emulator; AWS's request rate on, the job
quotas off: 20 running jobs in one membership is the point here, not the quota):

1. **stall**: triggerer 1 holds every wait and is SIGSTOPped past the threshold; triggerer 2 takes
   them over; triggerer 1 is SIGCONTed and drops them. Every wait goes on, no job is cancelled.
2. **kill**: the triggerer holding the waits of a second run is SIGKILLed; the other takes them.
3. **mark failed**: with both triggerers up, one of two deferred tasks is marked failed: its job
   is cancelled exactly once, the other job is not.
4. **worker killed**: the Celery worker running a sync wait is SIGKILLed; the scheduler fails the
   try when its heartbeat stops (20 s here), and the retry, on the other worker, reconnects to the
   job: one start.
5. **quota**: the job-quota proof's 12-segment mapped run (deferrable), with AWS's job quotas back
   on: 12 starts, at most 5 running in the membership.
6. **request rate** (its own test, ``-k request_rate``): ``HANDOVER_MANY_WAITS`` (200) deferred waits
   of one account on both triggerers: the emulator sees at most 5 requests/s over any whole 10 s
   (plus one call per triggerer), under 1 % of the polls are throttled, every task succeeds.

Both triggerers are told they are two (``[cleanrooms_ml] triggerers``), and each run's 20 waits poll
every 2 s (10 requests/s wanted, twice the emulator's rate): no poll of a run may be throttled.

The table is printed (scenario, starts, cancels, run state, throttled polls, time, ok) before the
rows are asserted.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from airflow_cleanrooms.emulator.process import CONN_ID, EmulatorProcess
from airflow_cleanrooms.emulator.pytest_plugin import connection_json
from tests.reliability import test_job_quotas as quotas
from tests.reliability.tables import render_table
from tests.topology import TRIGGERER, AirflowTopology, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
DAG_FILE = HERE / "dags" / "handover_dags.py"
WAITS = int(os.environ.get("HANDOVER_WAITS", "20"))
SECOND = f"{TRIGGERER}-2"
START = "StartTrainedModelInferenceJob"
CANCEL = "CancelTrainedModelInferenceJob"
GET = "GetTrainedModelInferenceJob"
MANY_WAITS = int(os.environ.get("HANDOVER_MANY_WAITS", "200"))
RATE = 5.0  # the emulator's request rate (AWS's default): requests/s per operation and account
TIMEOUT = 240.0
#: What the bound on a run's tasks all reaching a triggerer adds per task. Each task runs in a new
#: process on a Celery worker (12 at once on 2 cores): 13 to 20 s from queued to deferred on a 2-core
#: run without bytecode, so 200 tasks took about 250 s. A bound for failing only: the wait ends on the
#: tasks' state.
SECONDS_PER_DEFERRAL = 1.5
HANDED_OVER = "Trigger handed over: the task is still deferred"
KILLED = "Task killed while deferred"


@dataclass
class Row:
    scenario: str
    starts: int
    expected_starts: int
    cancels: int
    expected_cancels: int
    run_state: str
    expected_state: str
    throttled: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    #: Throttled polls allowed: none, except in the request-rate row (under 1 % of its polls).
    max_throttled: int = 0

    @property
    def ok(self) -> bool:
        got = (self.starts, self.cancels, self.run_state)
        return (
            not self.problems
            and got == (self.expected_starts, self.expected_cancels, self.expected_state)
            and self.throttled <= self.max_throttled
        )


def format_table(rows: list[Row]) -> str:
    header = (
        "scenario",
        "starts (want)",
        "cancels (want)",
        "run state (want)",
        "throttled polls",
        "time",
        "ok",
    )
    body = [
        (
            row.scenario,
            f"{row.starts} ({row.expected_starts})",
            f"{row.cancels} ({row.expected_cancels})",
            f"{row.run_state} ({row.expected_state})",
            f"{row.throttled} ({'0' if not row.max_throttled else f'<= {row.max_throttled}'})",
            f"{row.seconds:.1f}s",
            "yes" if row.ok else "NO",
        )
        for row in rows
    ]
    return render_table(header, body, ((row.scenario, problem) for row in rows for problem in row.problems))


class Handover:
    """The deployment, the emulator, and what the scenarios count and wait for."""

    def __init__(self, topology: AirflowTopology, emulator: EmulatorProcess) -> None:
        self.topology = topology
        self.emulator = emulator
        self.control = emulator.control

    def new_run(self, dag_id: str) -> tuple[str, str]:
        membership = str(uuid.uuid4())
        seeded = self.control.seed_membership(membership, trained_model=True)
        conf = {
            "membership_id": membership,
            "trained_model_arn": seeded["trained_model_arn"],
            "channel_arn": seeded["ml_input_channel_arn"],
        }
        run_id = self.topology.trigger(dag_id, f"{dag_id}__{uuid.uuid4().hex[:8]}", conf)
        return run_id, membership

    def calls(self, operation: str, membership: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.control.requests(operation)
            if r["params"].get("membershipIdentifier") == membership and r.get("status", 200) < 300
        ]

    def holders(self, dag_id: str, run_id: str, count: int) -> dict[int, int]:
        """``{map_index: triggerer job id}`` once all ``count`` waits are deferred and held by a triggerer."""

        def held() -> dict[int, int] | None:
            tis = self.topology.task_instances(dag_id, run_id)
            found = {
                ti["map_index"]: (ti.get("triggerer_job") or {}).get("id")
                for ti in tis
                if ti["state"] == "deferred"
            }
            if len(found) == count and all(found.values()):
                return found
            return None

        bound = TIMEOUT + count * SECONDS_PER_DEFERRAL
        return dict(self.topology.wait_for(f"{count} waits of {run_id} held by a triggerer", held, bound))

    def wait_held_by(self, dag_id: str, run_id: str, count: int, accept: Any, what: str) -> dict[int, int]:
        def moved() -> dict[int, int] | None:
            holders = self.holders(dag_id, run_id, count)
            return holders if all(accept(holder) for holder in holders.values()) else None

        return dict(self.topology.wait_for(what, moved, TIMEOUT))

    def trigger_log(self, dag_id: str, run_id: str, map_index: int, triggerer_id: int) -> str:
        path = self.topology.task_log_dir(dag_id, run_id, "score", map_index)
        log = path / f"attempt=1.log.trigger.{triggerer_id}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def finish(self, dag_id: str, run_id: str, membership: str, except_arns: set[str] = frozenset()) -> str:
        """Let every job still running succeed; return the run's final state."""
        for job in self.jobs(membership):
            if (
                job["trainedModelInferenceJobArn"] not in except_arns
                and job["status"] == "CREATE_IN_PROGRESS"
            ):
                self.control.force_status(job["trainedModelInferenceJobArn"], "ACTIVE")
        return self.topology.wait_run_finished(dag_id, run_id, TIMEOUT)

    def jobs(self, membership: str) -> list[dict[str, Any]]:
        client = self.emulator.client(config=Config(retries={"mode": "standard", "max_attempts": 10}))
        pages = client.get_paginator("list_trained_model_inference_jobs").paginate(
            membershipIdentifier=membership, PaginationConfig={"PageSize": 100}
        )
        return [job for page in pages for job in page["trainedModelInferenceJobs"]]

    def row(
        self,
        scenario: str,
        membership: str,
        run_state: str,
        started: float,
        problems: list[str] | None = None,
        **want: Any,
    ) -> Row:
        """The scenario's row: its membership's start, cancel and throttled calls against ``want``."""
        return Row(
            scenario,
            len(self.calls(START, membership)),
            want["starts"],
            len(self.calls(CANCEL, membership)),
            want["cancels"],
            run_state,
            want["state"],
            sum(
                1
                for r in self.control.requests(GET)
                if r.get("limit") == "rate" and r["params"].get("membershipIdentifier") == membership
            ),
            time.monotonic() - started,
            list(problems or []),
            want.get("max_throttled", 0),
        )


def stall(h: Handover) -> tuple[Row, int, int]:
    """Triggerer 1 (alone) takes every wait; SIGSTOP it past the threshold, start triggerer 2, SIGCONT 1."""
    started = time.monotonic()
    run_id, membership = h.new_run("handover")
    first = set(h.holders("handover", run_id, WAITS).values())
    assert len(first) == 1, f"one triggerer was running, yet the waits are held by {first}"
    (first_id,) = first
    h.topology.start(SECOND)
    h.topology.pause(TRIGGERER)
    try:
        moved = h.wait_held_by(
            "handover", run_id, WAITS, lambda holder: holder != first_id, "triggerer 2 to take every wait"
        )
    finally:
        h.topology.resume(TRIGGERER)
    (second_id,) = set(moved.values())
    problems: list[str] = []
    # The recovered triggerer drops the waits it lost, and (Airflow 3.3) runs on_kill for each.
    logs: dict[int, str] = {}

    def dropped() -> bool:
        logs.update({i: h.trigger_log("handover", run_id, i, first_id) for i in range(WAITS)})
        return all(HANDED_OVER in text or KILLED in text for text in logs.values())

    try:
        wait_until(dropped, 60, "the recovered triggerer to drop its waits", interval=1)
    except TimeoutError:
        problems.append(
            f"{sum(HANDED_OVER in text or KILLED in text for text in logs.values())} of {WAITS} trigger "
            "logs of the recovered triggerer show on_kill"
        )
    said = sum(HANDED_OVER in text for text in logs.values())
    state = h.finish("handover", run_id, membership)
    row = h.row(
        f"triggerer 1 SIGSTOP past the threshold, then SIGCONT ({WAITS} waits; {said} said 'handed over')",
        membership,
        state,
        started,
        problems,
        starts=WAITS,
        cancels=0,
        state="success",
    )
    return row, first_id, second_id


def kill(h: Handover, ids: dict[str, int]) -> tuple[Row, str]:
    """Both triggerers share a run's waits; SIGKILL the one holding more: the other takes them all."""
    started = time.monotonic()
    run_id, membership = h.new_run("handover")
    holders = list(h.holders("handover", run_id, WAITS).values())
    victim = max(ids, key=lambda name: holders.count(ids[name]))
    survivor_id = next(ids[name] for name in ids if name != victim)
    h.topology.kill(victim)
    h.wait_held_by(
        "handover",
        run_id,
        WAITS,
        lambda holder: holder == survivor_id,
        "the other triggerer to hold every wait",
    )
    state = h.finish("handover", run_id, membership)
    row = h.row(
        f"{victim} SIGKILL ({WAITS} waits, {holders.count(ids[victim])} on it)",
        membership,
        state,
        started,
        starts=WAITS,
        cancels=0,
        state="success",
    )
    return row, victim


def mark_failed(h: Handover, killed: str) -> Row:
    """Two triggerers up; one of two deferred tasks is marked failed: its job alone is cancelled, once."""
    started = time.monotonic()
    h.topology.start(killed)
    run_id, membership = h.new_run("handover_kill")
    holders = h.holders("handover_kill", run_id, 2)
    # A trigger cancels on kill only once a triggerer runs it: wait for its log file.
    wait_until(
        lambda: h.trigger_log("handover_kill", run_id, 0, holders[0]),
        TIMEOUT,
        "the trigger to run",
        interval=0.5,
    )
    h.topology.set_task_state("handover_kill", run_id, "score", "failed", map_index=0)
    problems: list[str] = []
    try:
        # The triggerer that ran the trigger says it was killed (its task log), and the cancel call
        # reaches the emulator (the call can outlive the trigger's log file: on_kill is shielded).
        # The row counts the cancel calls after the whole run has finished, so a second one from
        # either triggerer would show.
        wait_until(
            lambda: (
                KILLED in h.trigger_log("handover_kill", run_id, 0, holders[0])
                and h.calls(CANCEL, membership)
            ),
            TIMEOUT,
            "the trigger to cancel its job",
            interval=0.5,
        )
    except TimeoutError as error:
        problems.append(str(error))
    cancelled = {call["params"]["trainedModelInferenceJobArn"] for call in h.calls(CANCEL, membership)}
    state = h.finish("handover_kill", run_id, membership, except_arns=cancelled)
    names = {job["trainedModelInferenceJobArn"]: job["name"] for job in h.jobs(membership)}
    if {names.get(arn) for arn in cancelled} - {"handover_kill-0"}:
        problems.append(f"cancelled the wrong job: {sorted(names.get(arn) or arn for arn in cancelled)}")
    return h.row(
        "mark 1 of 2 deferred tasks failed, 2 triggerers up",
        membership,
        state,
        started,
        problems,
        starts=2,
        cancels=1,
        state="failed",
    )


def worker_killed(h: Handover) -> Row:
    """A Celery worker is SIGKILLed during a sync wait: the retry, on the other worker, reconnects."""
    started = time.monotonic()
    run_id, membership = h.new_run("handover_sync")

    def running() -> dict[str, Any] | None:
        ti = h.topology.task_instance("handover_sync", run_id, "score")
        return ti if ti["state"] == "running" and ti.get("pid") and h.jobs(membership) else None

    ti = h.topology.wait_for("the sync wait to run on a worker with its job started", running, TIMEOUT)
    worker = h.topology.component_of(int(ti["pid"]))
    problems: list[str] = []
    if worker is None:
        problems.append(f"no Celery worker runs the task's pid {ti['pid']}")
    else:
        h.topology.kill(worker)

    def reconnected() -> bool:
        # Through the task state store (Airflow 3.3's message) or, when the kill came before try 1
        # stored the job, through the job's identity tag (ours).
        log = h.topology.task_log("handover_sync", run_id, "score", 2)
        return any(text in log for text in ("Reconnecting to existing job", "started by an earlier try"))

    try:
        wait_until(reconnected, TIMEOUT, "try 2 to reconnect to the job", interval=1)
    except TimeoutError as error:
        problems.append(str(error))
    state = h.finish("handover_sync", run_id, membership)
    tries = h.topology.task_instance("handover_sync", run_id, "score")["try_number"]
    if worker is not None:
        h.topology.start(worker)
    return h.row(
        f"{worker or 'a Celery worker'} SIGKILL during a sync wait (try {tries} reconnected)",
        membership,
        state,
        started,
        problems,
        starts=1,
        cancels=0,
        state="success",
    )


def quota_on_celery(h: Handover) -> Row:
    """The quota proof's 12-segment mapped run (deferrable) on Celery with 2 triggerers: at most 5 run."""
    started = time.monotonic()
    control = h.control
    control.reset_limits()  # AWS's job quotas back on (5 per membership, 10 per account)
    control.set_timings(pending_seconds=quotas.PENDING_SECONDS, running_seconds=quotas.RUNNING_SECONDS)
    quota = quotas.run_scenario(h.topology, h.emulator, "inference", "deferrable", "m1")
    row = Row(
        f"{quota.scenario} (max {quota.max_membership} running, {quota.refused} starts refused)",
        quota.jobs,
        quota.expected_jobs,
        0,
        0,
        quota.outcome,
        "success",
        0,
        time.monotonic() - started,
        list(quota.problems),
    )
    if not quota.ok:
        row.problems.append(f"the quota row is not ok: {quota}")
    return row


def many_waits(h: Handover) -> tuple[Row, dict[str, Any]]:
    """
    ``MANY_WAITS`` deferred waits in one membership (one account) on both triggerers, against the
    emulator's 5 requests/s: the emulator sees at most 5 requests/s and under 1 % throttled answers.
    """
    started = time.monotonic()
    run_id, membership = h.new_run("handover_many")
    holders = h.holders("handover_many", run_id, MANY_WAITS)
    spread = Counter(holders.values())
    problems: list[str] = []
    if len(spread) < 2:
        problems.append(f"every wait is on one triggerer: {dict(spread)}")

    def polled_each() -> bool:
        polled = {call["params"].get("trainedModelInferenceJobArn") for call in h.calls(GET, membership)}
        return len(polled) >= MANY_WAITS

    # Every wait has been polled at least once by a trigger before its job is let succeed.
    h.topology.wait_for(f"each of the {MANY_WAITS} jobs to be polled", polled_each, TIMEOUT)
    state = h.finish("handover_many", run_id, membership)
    polls = [r for r in h.control.requests(GET) if r["params"].get("membershipIdentifier") == membership]
    throttled = sum(1 for r in polls if r.get("limit") == "rate")
    rate = rate_figures([r["time"] for r in polls])
    # Two triggerers, each paced at half the rate with no burst: in 10 s each may make one call more
    # than its share (the window can hold both ends of its pacing).
    bound = RATE * 10 + 2
    if rate["peak_10s_calls"] > bound:
        problems.append(f"{rate['peak_10s_calls']} calls in the busiest 10 s, more than {bound}")
    failed = [
        ti["map_index"]
        for ti in h.topology.task_instances("handover_many", run_id)
        if ti["state"] != "success"
    ]
    if failed:
        problems.append(f"tasks not successful: map indexes {failed[:10]}")
    row = h.row(
        f"{MANY_WAITS} waits on 2 triggerers ({'/'.join(map(str, sorted(spread.values())))}), one account "
        f"at {RATE:g} req/s: peak {rate['peak_10s_calls'] / 10:.2f} req/s (10 s), "
        f"{100 * throttled / max(len(polls), 1):.2f} % throttled",
        membership,
        state,
        started,
        problems,
        starts=MANY_WAITS,
        cancels=0,
        state="success",
        max_throttled=(len(polls) - 1) // 100,  # under 1 % of the polls
    )
    return row, {"polls": len(polls), "throttled": throttled, **rate}


def rate_figures(times: list[float]) -> dict[str, Any]:
    """Calls in the busiest whole 10-second window (from the first call) and the mean rate."""
    times = sorted(times)
    if not times:
        return {"peak_10s_calls": 0, "mean_rps": 0.0}
    span = max(times[-1] - times[0], 1.0)
    windows = Counter(int((t - times[0]) // 10) for t in times)
    whole = [count for window, count in windows.items() if (window + 1) * 10 <= span]
    return {"peak_10s_calls": max(whole, default=len(times)), "mean_rps": (len(times) - 1) / span}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    state = tmp_path_factory.mktemp("handover-emulator") / "state.db"
    # Jobs run until the scenario lets them succeed (force_status), however slow the hand-over.
    with EmulatorProcess(
        state=state, args=["--pending-seconds", "1", "--running-seconds", "3600"]
    ) as process:
        process.control.set_limits(inference_jobs_per_membership=None, inference_jobs_per_account=None)
        yield process


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorProcess
) -> Iterator[AirflowTopology]:
    home = tmp_path_factory.mktemp("handover-airflow")
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": connection_json(emulator.url),
        "RELIABILITY_CONN_ID": CONN_ID,
        "HANDOVER_WAITS": str(WAITS),
        "HANDOVER_MANY_WAITS": str(MANY_WAITS),
        # The quota row's account and where its DAGs write their markers.
        **{
            f"AIRFLOW_CONN_QUOTA_{account}": quotas.account_connection_json(emulator.url, account)
            for account in quotas.ACCOUNTS.values()
        },
        "QUOTA_MARKERS": str(home / "markers"),
        # Each triggerer takes half of the 5 requests/s: 20 waits polling every 2 s stay under it.
        "AIRFLOW__CLEANROOMS_ML__TRIGGERERS": "2",
        # A SIGKILLed worker's task is failed (and retried) after this long without a heartbeat.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    }
    topology = AirflowTopology(
        home, env=env, database="postgres", executor="CeleryExecutor", triggerers=2, workers=2, parallelism=12
    )
    # Triggerer 2 starts inside the first scenario, after triggerer 1 has taken every wait.
    dags = [DAG_FILE, *quotas.DAG_FILES]
    with topology.running(dags, components=[c for c in topology.components if c != SECOND]):
        yield topology


def test_triggerer_handover(
    topology: AirflowTopology, emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    topology.wait_for_dags(
        [
            "handover",
            "handover_kill",
            "handover_many",
            "handover_sync",
            quotas.dag_id("inference", "deferrable", "m1"),
        ]
    )
    h = Handover(topology, emulator)
    stalled, first_id, second_id = stall(h)
    killed_row, killed = kill(h, {TRIGGERER: first_id, SECOND: second_id})
    rows = [stalled, killed_row, mark_failed(h, killed), worker_killed(h), quota_on_celery(h)]
    table = format_table(rows)
    notes = "".join(f"\nnote: {restart}" for restart in topology.restarts)
    with capsys.disabled():
        print(
            "\n\nHand-overs, distributed (CeleryExecutor: 2 workers, Redis; 2 triggerers; PostgreSQL)\n"
            + table
            + notes
            + "\n"
        )
    assert all(row.ok for row in rows), "\n" + table


@pytest.mark.timeout(TIMEOUT + MANY_WAITS * SECONDS_PER_DEFERRAL + 2 * TIMEOUT)  # the waits' own bounds
def test_request_rate_on_two_triggerers(
    topology: AirflowTopology, emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """Row 6: ``MANY_WAITS`` deferred waits on two live triggerers stay within one account's rate."""
    topology.wait_for_dags(["handover_many"])
    for triggerer in (TRIGGERER, SECOND):
        if triggerer not in topology.processes:  # run alone (-k), triggerer 2 is not up yet
            topology.start(triggerer)
    emulator.control.reset_limits()  # the request rate on, the job quotas off again (200 jobs run)
    emulator.control.set_limits(inference_jobs_per_membership=None, inference_jobs_per_account=None)
    emulator.control.set_timings(pending_seconds=1, running_seconds=3600)
    row, figures = many_waits(Handover(topology, emulator))
    table = format_table([row])
    with capsys.disabled():
        print(f"\n\nRequest rate, distributed (2 triggerers told 2; {figures})\n{table}\n")
    assert row.ok, "\n" + table

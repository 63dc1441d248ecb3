"""
The reliability suite: real Airflow task execution against the emulator, with faults injected.

One Airflow deployment (api-server, scheduler with LocalExecutor, dag-processor, triggerer; SQLite)
and one emulator process are shared by every scenario. Each scenario runs a DAG from
``dags/reliability_dags.py`` in its own membership, injects its fault (SIGKILL of the task process at
a chosen moment, SIGKILL of the triggerer, an emulator restart, throttling, 5xx, a failing job, bad
input) and reports how many jobs exist in its membership afterwards and how the task ended.

The suite prints a table (scenario, jobs expected/started, outcome, tries, time) and then asserts
every row: exactly the jobs that should exist (never a duplicate) and the right outcome.
Scenarios that do not disturb shared pieces run concurrently; the fault phases (throttling, 5xx,
emulator restart) run one after another because they affect every caller.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.config import Config

from airflow_cleanrooms.emulator.process import CONN_ID, EmulatorProcess
from airflow_cleanrooms.emulator.pytest_plugin import connection_json
from airflow_cleanrooms.operators.start import IDENTITY_TAG_KEY, task_instance_identity
from tests.reliability.dags.bad_input_corpus import CORPUS
from tests.reliability.dags.reliability_dags import BAD_INPUTS, DAG_IDS
from tests.reliability.tables import render_table
from tests.topology import AirflowTopology, wait_until

#: The main stage installs the OpenLineage provider: job_fails then checks its FAIL events too.
LINEAGE_INSTALLED = importlib.util.find_spec("airflow.providers.openlineage") is not None

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.control import EmulatorControl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
DAG_FILES = [HERE / "dags" / "reliability_dags.py", HERE / "dags" / "bad_input_corpus.py"]
START = "StartTrainedModelInferenceJob"
PENDING_SECONDS = 1.0
RUNNING_SECONDS = 8.0
RUN_TIMEOUT = 240.0


@dataclass
class Row:
    scenario: str
    expected_jobs: int
    jobs: int
    expected_outcome: str
    outcome: str
    tries: str
    expected_tries: str
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.jobs == self.expected_jobs
            and self.outcome == self.expected_outcome
            and self.tries == self.expected_tries
        )


def format_table(rows: list[Row]) -> str:
    header = ("scenario", "jobs (want)", "outcome (want)", "tries (want)", "time", "ok")
    body = [
        (
            row.scenario,
            f"{row.jobs} ({row.expected_jobs})",
            f"{row.outcome} ({row.expected_outcome})",
            f"{row.tries} ({row.expected_tries})",
            f"{row.seconds:.1f}s",
            "yes" if row.ok else "NO",
        )
        for row in rows
    ]
    return render_table(header, body, ((row.scenario, problem) for row in rows for problem in row.problems))


class Suite:
    """What every scenario needs: the deployment, the emulator, and helpers to count and wait."""

    def __init__(self, topology: AirflowTopology, emulator: EmulatorProcess, markers: Path):
        self.topology = topology
        self.emulator = emulator
        self.markers = markers
        self.secrets: list[str] = []
        self.rendered_checks: list[tuple[str, str, str]] = []

    @property
    def control(self) -> EmulatorControl:
        return self.emulator.control

    def client(self) -> Any:
        return self.emulator.client(config=Config(retries={"mode": "standard", "max_attempts": 10}))

    def new_run(self, scenario: str) -> tuple[str, dict[str, Any]]:
        membership = str(uuid.uuid4())
        seeded = self.control.seed_membership(membership, trained_model=True)
        token = f"tok-{uuid.uuid4().hex}"
        self.secrets.append(token)
        conf = {
            "membership_id": membership,
            "trained_model_arn": seeded["trained_model_arn"],
            "channel_arn": seeded["ml_input_channel_arn"],
            "association_arn": seeded["configured_model_algorithm_association_arn"],
            "job_name": f"rel-{scenario[:20]}-{uuid.uuid4().hex[:6]}",
            "instance_type": "ml.m5.xlarge",
            "api_token": token,
        }
        return f"{scenario}__{uuid.uuid4().hex[:8]}", conf

    def jobs(self, membership: str) -> list[dict[str, Any]]:
        client = self.client()
        found: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"membershipIdentifier": membership, "maxResults": 100}
            if token:
                kwargs["nextToken"] = token
            page = client.list_trained_model_inference_jobs(**kwargs)
            found += page["trainedModelInferenceJobs"]
            token = page.get("nextToken")
            if not token:
                return found

    def wait_job(self, membership: str, statuses: set[str], timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        def match() -> dict[str, Any] | None:
            return next((j for j in self.jobs(membership) if j["status"] in statuses), None)

        return dict(wait_until(match, timeout, f"a job in {sorted(statuses)} in {membership}"))

    def marker(self, dag_id: str, run_id: str, task_id: str, try_number: int, suffix: str) -> Path:
        return self.markers / f"{dag_id}__{run_id}__{task_id}__{try_number}.{suffix}"

    def wait_marker(self, path: Path, timeout: float = RUN_TIMEOUT) -> str:
        wait_until(path.exists, timeout, f"marker {path.name}")
        return path.read_text()

    def expect_log(self, row: Row, dag_id: str, run_id: str, try_number: int, text: str) -> None:
        if text not in self.topology.task_log(dag_id, run_id, "start_inference", try_number):
            row.problems.append(f"try {try_number}'s log lacks {text!r}")

    def wait_log(self, dag_id: str, run_id: str, try_number: int, text: str) -> None:
        def logged() -> bool:
            return text in self.topology.task_log(dag_id, run_id, "start_inference", try_number)

        wait_until(logged, RUN_TIMEOUT, f"{text!r} in try {try_number}'s log of {dag_id}", interval=0.5)

    def wait_ti_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        def reached() -> bool:
            return self.topology.task_instance(dag_id, run_id, task_id)["state"] == state

        wait_until(reached, RUN_TIMEOUT, f"{dag_id}.{task_id} to be {state}", interval=0.5)

    def finish(
        self,
        scenario: str,
        dag_id: str,
        run_id: str,
        conf: dict[str, Any],
        started: float,
        expected_jobs: int,
        expected_outcome: str,
        expected_tries: str,
        tasks: tuple[str, ...] = ("start_inference",),
    ) -> Row:
        problems: list[str] = []
        try:
            self.topology.wait_run_finished(dag_id, run_id, RUN_TIMEOUT)
        except TimeoutError as error:
            problems.append(str(error))
        tis = [self.topology.task_instance(dag_id, run_id, task) for task in tasks]
        self.rendered_checks += [(dag_id, run_id, task) for task in tasks]
        outcome = "/".join(sorted({ti["state"] or "none" for ti in tis}))
        tries = "/".join(str(ti["try_number"]) for ti in tis)
        jobs = self.jobs(conf["membership_id"])
        names = sorted(j["name"] for j in jobs)
        if len(set(names)) != len(names) and expected_jobs == len(tasks):
            problems.append(f"duplicate job names: {names}")
        return Row(
            scenario,
            expected_jobs,
            len(jobs),
            expected_outcome,
            outcome,
            tries,
            expected_tries,
            time.monotonic() - started,
            problems,
        )


# ---- scenarios ------------------------------------------------------------------------------


def kill_after_start(suite: Suite) -> Row:
    dag_id, started = "rel_kill_after_start", time.monotonic()
    run_id, conf = suite.new_run("kill_after_start")
    suite.topology.trigger(dag_id, run_id, conf)
    text = suite.wait_marker(suite.marker(dag_id, run_id, "start_inference", 1, "started"))
    os.kill(int(text.split()[0]), signal.SIGKILL)
    row = suite.finish(
        "worker SIGKILL right after the start call", dag_id, run_id, conf, started, 1, "success", "2"
    )
    # Nothing was stored before the kill: only the identity tag can have led try 2 to the job.
    suite.expect_log(row, dag_id, run_id, 2, "started by an earlier try of this task instance")
    return row


def kill_mid_wait(suite: Suite) -> Row:
    dag_id, started = "rel_kill_mid_wait", time.monotonic()
    run_id, conf = suite.new_run("kill_mid_wait")
    suite.topology.trigger(dag_id, run_id, conf)
    pid = int(suite.wait_marker(suite.marker(dag_id, run_id, "start_inference", 1, "pid")))
    job = suite.wait_job(conf["membership_id"], {"CREATE_IN_PROGRESS"})
    # Hold the job running until try 2 has reconnected to it, however slow the retry is.
    suite.control.force_status(job["trainedModelInferenceJobArn"], "CREATE_IN_PROGRESS")
    os.kill(pid, signal.SIGKILL)
    suite.wait_log(dag_id, run_id, 2, "Reconnecting to existing job")
    suite.control.force_status(job["trainedModelInferenceJobArn"], "ACTIVE")
    return suite.finish("worker SIGKILL mid-wait", dag_id, run_id, conf, started, 1, "success", "2")


def kill_after_active(suite: Suite) -> Row:
    dag_id, started = "rel_kill_after_active", time.monotonic()
    run_id, conf = suite.new_run("kill_after_active")
    suite.topology.trigger(dag_id, run_id, conf)
    pid = int(suite.wait_marker(suite.marker(dag_id, run_id, "start_inference", 1, "pid")))
    suite.wait_job(conf["membership_id"], {"ACTIVE"})
    os.kill(pid, signal.SIGKILL)
    row = suite.finish(
        "worker SIGKILL after the job turned ACTIVE", dag_id, run_id, conf, started, 1, "success", "2"
    )
    suite.expect_log(row, dag_id, run_id, 2, "Job already completed successfully")
    return row


def triggerer_restart(suite: Suite) -> Row:
    dag_id, started = "rel_triggerer_restart", time.monotonic()
    run_id, conf = suite.new_run("triggerer_restart")
    suite.topology.trigger(dag_id, run_id, conf)
    suite.wait_ti_state(dag_id, run_id, "start_inference", "deferred")
    job = suite.wait_job(conf["membership_id"], {"CREATE_PENDING", "CREATE_IN_PROGRESS"})
    # Hold the job running until a trigger re-created by the new triggerer is polling it.
    suite.control.force_status(job["trainedModelInferenceJobArn"], "CREATE_IN_PROGRESS")
    logs = suite.topology.task_log_dir(dag_id, run_id, "start_inference")
    before = set(logs.glob("attempt=1.log.trigger.*.log"))
    suite.topology.kill("triggerer")
    time.sleep(2)
    suite.topology.start("triggerer")
    # Each triggerer writes its own trigger log file: a new one means the trigger was re-created.
    wait_until(
        lambda: set(logs.glob("attempt=1.log.trigger.*.log")) - before, RUN_TIMEOUT, "the new triggerer"
    )
    suite.control.force_status(job["trainedModelInferenceJobArn"], "ACTIVE")
    return suite.finish(
        "triggerer SIGKILL + restart mid-deferral", dag_id, run_id, conf, started, 1, "success", "1"
    )


CANCELLED = {"CANCEL_PENDING", "CANCEL_IN_PROGRESS", "INACTIVE"}


def mark_failed(suite: Suite) -> Row:
    """Mark failed in the UI while the job runs: the sync task's on_kill and the trigger cancel it."""
    dag_id, started = "rel_mark_failed", time.monotonic()
    run_id, conf = suite.new_run("mark_failed")
    membership = conf["membership_id"]
    suite.topology.trigger(dag_id, run_id, conf)
    suite.wait_ti_state(
        dag_id,
        run_id,
        "start_deferred",
        "deferred",
    )
    suite.wait_ti_state(dag_id, run_id, "start_sync", "running")
    jobs = wait_until(
        lambda: len(suite.jobs(membership)) == 2 and suite.jobs(membership), RUN_TIMEOUT, "2 jobs"
    )
    for job in jobs:  # keep both running until the cancel arrives
        suite.control.force_status(job["trainedModelInferenceJobArn"], "CREATE_IN_PROGRESS")
    # Only a trigger that is running can cancel on kill: wait until a triggerer runs it (its log
    # file appears). A deferred task marked failed before that leaves its job running.
    logs = suite.topology.task_log_dir(dag_id, run_id, "start_deferred")
    wait_until(lambda: list(logs.glob("attempt=1.log.trigger.*.log")), RUN_TIMEOUT, "the trigger to run")
    for task_id in ("start_sync", "start_deferred"):
        suite.topology.set_task_state(dag_id, run_id, task_id, "failed")
    problems: list[str] = []
    try:
        wait_until(
            lambda: all(j["status"] in CANCELLED for j in suite.jobs(membership)),
            RUN_TIMEOUT,
            "both jobs cancelled",
        )
    except TimeoutError as error:
        statuses = {j["name"]: j["status"] for j in suite.jobs(membership)}
        problems.append(f"{error}: {statuses}")
    row = suite.finish(
        "marked failed while waiting: job cancelled (sync, deferred)",
        dag_id,
        run_id,
        conf,
        started,
        2,
        "failed",
        "1/1",
        tasks=("start_sync", "start_deferred"),
    )
    row.problems += problems
    return row


def job_fails(suite: Suite) -> Row:
    dag_id, started = "rel_job_fails", time.monotonic()
    run_id, conf = suite.new_run("job_fails")
    name = f"{conf['job_name']}-start-inference"
    suite.control.fail_job(name, "ModelCrashed", "the inference container exited with code 137")
    suite.topology.trigger(dag_id, run_id, conf)
    # retries=1: the failed job is not reused, the retry starts a fresh one (which fails too).
    row = suite.finish("job fails with status details", dag_id, run_id, conf, started, 2, "failed", "2")
    for try_number in (1, 2):
        log = suite.topology.task_log(dag_id, run_id, "start_inference", try_number)
        if "ModelCrashed: the inference container exited with code 137" not in log:
            row.problems.append(f"try {try_number}'s log lacks the status details")
    if LINEAGE_INSTALLED:
        row.problems += failed_job_lineage_problems(
            suite.topology.home / "openlineage", f"{dag_id}.start_inference"
        )
    return row


def failed_job_lineage_problems(folder: Path, job_name: str) -> list[str]:
    """The task's OpenLineage FAIL events (one per try) carry the job's ARN and ``statusDetails``."""
    details = {"statusCode": "ModelCrashed", "message": "the inference container exited with code 137"}

    def fails() -> list[dict[str, Any]] | None:
        found = [json.loads(path.read_text()) for path in folder.glob("ol-*.json")]
        failed = [e for e in found if e["job"]["name"] == job_name and e["eventType"] == "FAIL"]
        return failed if len(failed) == 2 else None

    try:  # the listener emits from the task's process as it ends; the run's state can come first
        failed = wait_until(fails, 60, f"2 OpenLineage FAIL events of {job_name}", interval=0.5)
    except TimeoutError as error:
        return [str(error)]
    problems = []
    for event in failed:
        job = event["run"]["facets"].get("cleanroomsMLJob") or {}
        if job.get("statusDetails") != details or job.get("status") != "CREATE_FAILED" or not job.get("arn"):
            problems.append(f"a FAIL event's cleanroomsMLJob facet is {job}")
    return problems


def bad_input(suite: Suite) -> Row:
    dag_id, started = "rel_bad_input", time.monotonic()
    run_id, conf = suite.new_run("bad_input")
    membership = conf["membership_id"]
    # A running job of another task instance holds the name the collision entry uses.
    conf["taken_name"] = f"taken-{uuid.uuid4().hex[:8]}"
    blocker = suite.client().start_trained_model_inference_job(
        membershipIdentifier=membership,
        name=conf["taken_name"],
        trainedModelArn=conf["trained_model_arn"],
        resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        outputConfiguration={"members": [{"accountId": "111122223333"}]},
        dataSource={"mlInputChannelArn": conf["channel_arn"]},
        tags={IDENTITY_TAG_KEY: task_instance_identity("other_dag", "other_task", "other_run", -1)},
    )["trainedModelInferenceJobArn"]
    suite.control.force_status(blocker, "CREATE_IN_PROGRESS")
    suite.topology.trigger(dag_id, run_id, conf)
    problems: list[str] = []
    try:
        suite.topology.wait_run_finished(dag_id, run_id, RUN_TIMEOUT)
    except TimeoutError as error:
        problems.append(str(error))
    tis = sorted(suite.topology.task_instances(dag_id, run_id), key=lambda ti: ti["map_index"])
    states = {ti["state"] for ti in tis}
    tries = {ti["try_number"] for ti in tis}
    if len(tis) != len(BAD_INPUTS):
        problems.append(f"{len(tis)} mapped task instances, expected {len(BAD_INPUTS)}")
    for ti, entry in zip(tis, BAD_INPUTS, strict=False):
        log = suite.topology.task_log(dag_id, run_id, "bad_input", 1, ti["map_index"])
        if entry.names not in log:
            problems.append(f"{entry.id}: the log does not name {entry.names!r}")
    starts = [
        r
        for r in suite.control.requests(START)
        if r["params"].get("membershipIdentifier") == membership
        and r["params"].get("name") != conf["taken_name"]
    ]
    if starts:
        problems.append(f"{len(starts)} start request(s) reached the emulator")
    jobs = suite.jobs(membership)
    return Row(
        f"bad input: {len(BAD_INPUTS)} kinds mapped (all {len(CORPUS)} in-process)",
        1,
        len(jobs),
        "failed",
        "/".join(sorted(s or "none" for s in states)),
        "/".join(str(t) for t in sorted(tries)),
        "1",
        time.monotonic() - started,
        problems,
    )


def under_faults(label: str, scenario: str, **faults: Any) -> Callable[[Suite], Row]:
    def run(suite: Suite) -> Row:
        dag_id, started = "rel_faults", time.monotonic()
        run_id, conf = suite.new_run(scenario)
        suite.control.set_faults(replace=True, **faults)
        try:
            suite.topology.trigger(dag_id, run_id, conf)
            suite.topology.wait_run_finished(dag_id, run_id, RUN_TIMEOUT)
        finally:
            faulted = [r for r in suite.control.requests() if r.get("fault")]
            suite.control.clear_faults()
        row = suite.finish(
            label, dag_id, run_id, conf, started, 2, "success", "1/1", tasks=("start_sync", "start_deferred")
        )
        if not faulted:
            row.problems.append("no request was faulted")
        row.scenario += f" [{len(faulted)} faulted]"
        return row

    return run


def emulator_restart(suite: Suite) -> Row:
    dag_id, started = "rel_emulator_restart", time.monotonic()
    run_id, conf = suite.new_run("emulator_restart")
    suite.topology.trigger(dag_id, run_id, conf)
    suite.wait_marker(suite.marker(dag_id, run_id, "start_inference", 1, "pid"))
    suite.wait_job(conf["membership_id"], {"CREATE_IN_PROGRESS"})
    suite.emulator.kill()
    time.sleep(3)
    suite.emulator.start()
    return suite.finish(
        "emulator SIGKILL + restart mid-wait", dag_id, run_id, conf, started, 1, "success", "1"
    )


def check_secrets(suite: Suite) -> Row:
    """No task log holds an API_TOKEN value; the rendered-template view shows it masked."""
    started = time.monotonic()
    problems: list[str] = []
    logs = list((suite.topology.home / "logs").rglob("*.log"))
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in suite.secrets:
            if secret in text:
                problems.append(f"{path.name} under {path.parent.name} shows an API_TOKEN value")
    masked = 0
    for dag_id, run_id, task_id in suite.rendered_checks:
        rendered = suite.topology.task_instance(dag_id, run_id, task_id).get("rendered_fields") or {}
        environment = rendered.get("environment") or {}
        value = environment.get("API_TOKEN") if isinstance(environment, dict) else str(environment)
        if value is None or any(secret in str(value) for secret in suite.secrets):
            problems.append(f"{dag_id}.{task_id}: rendered environment shows {value!r}")
        else:
            masked += 1
    return Row(
        f"secrets: API_TOKEN in {len(logs)} logs, {masked} rendered views",
        0,
        0,
        "masked",
        "masked" if not problems else "LEAKED",
        "-",
        "-",
        time.monotonic() - started,
        problems,
    )


# ---- the suite ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    state = tmp_path_factory.mktemp("reliability-emulator") / "state.db"
    with EmulatorProcess(
        state=state,
        args=["--pending-seconds", str(PENDING_SECONDS), "--running-seconds", str(RUNNING_SECONDS)],
    ) as process:
        yield process


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorProcess
) -> Iterator[AirflowTopology]:
    home = tmp_path_factory.mktemp("reliability-airflow")
    markers = home / "markers"
    env = {
        f"AIRFLOW_CONN_{CONN_ID.upper()}": connection_json(emulator.url),
        "RELIABILITY_MARKERS": str(markers),
        "RELIABILITY_CONN_ID": CONN_ID,
    }
    if LINEAGE_INSTALLED:  # the OpenLineage listener writes each event to a file (job_fails reads them)
        (home / "openlineage").mkdir()
        transport = {"type": "file", "log_file_path": str(home / "openlineage" / "ol")}
        env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(transport)
    with AirflowTopology(home, env=env).running(DAG_FILES) as topology:
        yield topology


def test_reliability_suite(
    topology: AirflowTopology, emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    topology.wait_for_dags(DAG_IDS)
    suite = Suite(topology, emulator, topology.home / "markers")
    rows: list[Row] = []

    # Phase 1: scenarios that disturb only their own task (or only deferred tasks), concurrently.
    concurrent = [
        kill_after_start,
        kill_mid_wait,
        kill_after_active,
        triggerer_restart,
        job_fails,
        bad_input,
    ]
    with ThreadPoolExecutor(max_workers=len(concurrent)) as pool:
        futures = [pool.submit(scenario, suite) for scenario in concurrent]
        rows += [future.result() for future in futures]

    # Phase 2: one at a time. Marking a deferred task failed needs a live triggerer to cancel its
    # job (phase 1 restarts it); faults hit every caller.
    rows.append(mark_failed(suite))
    rows.append(under_faults("30% of requests throttled", "throttle_30", throttle_rate=0.3)(suite))
    rows.append(under_faults("5% of requests answered 500", "errors_5", error_rate=0.05)(suite))
    rows.append(emulator_restart(suite))
    rows.append(check_secrets(suite))

    table = format_table(rows)
    notes = "".join(f"\nnote: {restart}" for restart in topology.restarts)
    with capsys.disabled():
        print("\n\nReliability suite (real Airflow + emulator)\n" + table + notes + "\n")
    assert all(row.ok for row in rows), "\n" + table

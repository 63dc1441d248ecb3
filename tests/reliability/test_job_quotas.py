"""
Job quotas in a real Airflow: mapped starts that meet AWS's quotas wait for a slot instead of failing.

One Airflow deployment (api-server, scheduler with LocalExecutor, dag-processor, triggerer; SQLite)
and one emulator process with AWS's limits on, at their defaults (5 pending/in-progress jobs per
membership, 10 per account, for inference and for training; 5 requests per second per operation).
Each scenario runs one DAG of ``dags/quota_dags.py`` with no task retries, in its own account (the
connection's 12-digit access key, so no scenario counts another's jobs), one scenario at a time:

* ``m1``: the operator mapped over 12 segments of one membership;
* ``m2``: 8 segments in each of two memberships of one account, at once.

Each row says whether the run succeeded with every task on its first try, how many jobs the emulator
started (exactly one per segment), the most it ever had pending or in progress at once per
membership and per account (from its status histories), and how many starts it refused with
``ServiceQuotaExceededException``: refusals > 0 shows that the quota was met and waited out.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_cleanrooms.emulator.process import EmulatorProcess
from tests.reliability.dags.quota_dags import DAG_IDS, DURABLE_DAG_IDS, KINDS, MODES, SHAPES, dag_id
from tests.reliability.tables import render_table
from tests.topology import AirflowTopology, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
DAG_FILES = [HERE / "dags" / "quota_dags.py"]
PENDING_SECONDS = 1.0
RUNNING_SECONDS = 10.0
RUN_TIMEOUT = 900.0
MEMBERSHIP_QUOTA, ACCOUNT_QUOTA = 5, 10
START = {"inference": "StartTrainedModelInferenceJob", "training": "CreateTrainedModel"}
STATS = {"inference": "inference_jobs", "training": "trained_models"}


@dataclass
class QuotaRow:
    scenario: str
    expected_jobs: int
    jobs: int
    max_membership: int
    max_account: int
    refused: int
    outcome: str
    tries: str
    seconds: float
    problems: list[str] = field(default_factory=list)
    expected_tries: str = "1"

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.jobs == self.expected_jobs
            and self.outcome == "success"
            and self.tries == self.expected_tries
            and self.max_membership <= MEMBERSHIP_QUOTA
            and self.max_account <= ACCOUNT_QUOTA
            and self.refused > 0
        )


def format_table(rows: list[QuotaRow]) -> str:
    header = (
        "scenario",
        "jobs (want)",
        f"max/membership (<= {MEMBERSHIP_QUOTA})",
        f"max/account (<= {ACCOUNT_QUOTA})",
        "refused starts (> 0)",
        "outcome (want)",
        "tries (want)",
        "time",
        "ok",
    )
    body = [
        (
            row.scenario,
            f"{row.jobs} ({row.expected_jobs})",
            str(row.max_membership),
            str(row.max_account),
            str(row.refused),
            f"{row.outcome} (success)",
            f"{row.tries} ({row.expected_tries})",
            f"{row.seconds:.1f}s",
            "yes" if row.ok else "NO",
        )
        for row in rows
    ]
    return render_table(header, body, ((row.scenario, problem) for row in rows for problem in row.problems))


def account_connection_json(url: str, account: str) -> str:
    # A 12-digit access key is the emulator's caller account: one account per scenario.
    extra = {"region_name": "us-east-1", "endpoint_url": url}
    return json.dumps({"conn_type": "aws", "login": account, "password": "testing", "extra": extra})


SCENARIOS = [(kind, mode, shape) for kind in KINDS for shape in SHAPES for mode in MODES]
ACCOUNTS = {scenario: f"{210000000000 + index:012d}" for index, scenario in enumerate(SCENARIOS)}
DURABLE_ACCOUNTS = {mode: f"{220000000000 + index:012d}" for index, mode in enumerate(MODES)}


def run_scenario(
    topology: AirflowTopology, emulator: EmulatorProcess, kind: str, mode: str, shape: str
) -> QuotaRow:
    control = emulator.control
    account = ACCOUNTS[(kind, mode, shape)]
    memberships = {name: str(uuid.uuid4()) for name in SHAPES[shape]}
    conf: dict[str, Any] = {"conn_id": f"quota_{account}"}
    for name, membership in memberships.items():
        seeded = control.seed_membership(membership, trained_model=True)
        conf[f"membership_{name}"] = membership
        conf[f"trained_model_arn_{name}"] = seeded["trained_model_arn"]
        conf[f"channel_arn_{name}"] = seeded["ml_input_channel_arn"]
        conf[f"association_arn_{name}"] = seeded["configured_model_algorithm_association_arn"]
    dag = dag_id(kind, mode, shape)
    run_id = f"{dag}__{uuid.uuid4().hex[:8]}"
    segments = sum(SHAPES[shape].values())
    label = f"{kind}: {segments} segments in {len(memberships)} membership(s), {mode}"
    problems: list[str] = []
    started = time.monotonic()
    topology.trigger(dag, run_id, conf)
    try:
        topology.wait_run_finished(dag, run_id, RUN_TIMEOUT)
    except TimeoutError as error:
        problems.append(str(error))
    seconds = time.monotonic() - started
    tis = topology.task_instances(dag, run_id)
    if len(tis) != segments:
        problems.append(f"{len(tis)} task instances, want {segments}")
    outcome = "/".join(sorted({ti["state"] or "none" for ti in tis})) or "none"
    tries = "/".join(sorted({str(ti["try_number"]) for ti in tis})) or "-"
    stats = getattr(control.stats(), STATS[kind])
    start_calls = [
        call
        for call in control.requests(START[kind])
        if call["params"].get("membershipIdentifier") in memberships.values()
    ]
    created = [call for call in start_calls if call["status"] == 200]
    refused = [call for call in start_calls if call["error"] == "ServiceQuotaExceededException"]
    names = sorted(call["params"].get("name") for call in created)
    if len(set(names)) != len(names):
        problems.append(f"a segment was started twice: {names}")
    if not any("refused by the service quota" in _task_logs(topology, dag, run_id, ti) for ti in tis):
        problems.append("no task log says why it waited")
    return QuotaRow(
        label,
        segments,
        len(created),
        max(stats.max_running(membership_id=m) for m in memberships.values()),
        stats.max_running(account_id=account),
        len(refused),
        outcome,
        tries,
        seconds,
        problems,
    )


def _task_logs(topology: AirflowTopology, dag: str, run_id: str, ti: dict[str, Any]) -> str:
    return topology.task_log(dag, run_id, ti["task_id"], int(ti["try_number"] or 1), int(ti["map_index"]))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    state = tmp_path_factory.mktemp("quota-emulator") / "state.db"
    timings = ["--pending-seconds", str(PENDING_SECONDS), "--running-seconds", str(RUNNING_SECONDS)]
    with EmulatorProcess(state=state, args=[*timings, "--training-seconds", str(RUNNING_SECONDS)]) as process:
        yield process


@pytest.fixture(scope="module")
def topology(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorProcess
) -> Iterator[AirflowTopology]:
    home = tmp_path_factory.mktemp("quota-airflow")
    accounts = [*ACCOUNTS.values(), *DURABLE_ACCOUNTS.values()]
    env = {
        f"AIRFLOW_CONN_QUOTA_{account}": account_connection_json(emulator.url, account)
        for account in accounts
    }
    env["QUOTA_MARKERS"] = str(home / "markers")
    # Enough worker slots for 16 sync tasks at once, so that the account quota is met in sync mode too.
    with AirflowTopology(home, env=env, parallelism=16).running(DAG_FILES) as topology:
        yield topology


@pytest.mark.parametrize("kind", KINDS)
def test_mapped_starts_wait_for_quota_slots(
    kind: str, topology: AirflowTopology, emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    topology.wait_for_dags([*DAG_IDS, *DURABLE_DAG_IDS.values()])
    # One scenario at a time: each has all of the executor's slots, so its tasks start together and
    # meet the quota (side by side, a sync run got half the slots and never met it).
    rows = [run_scenario(topology, emulator, kind, mode, shape) for shape in SHAPES for mode in MODES]
    table = format_table(rows)
    notes = "".join(f"\nnote: {restart}" for restart in topology.restarts)
    with capsys.disabled():
        print(f"\n\nJob quotas, {kind} (real Airflow + emulator with AWS's limits)\n" + table + notes + "\n")
    assert all(row.ok for row in rows), "\n" + table


# ---- durable execution: a task killed while it waits for a slot ---------------------------------


def run_durable(topology: AirflowTopology, emulator: EmulatorProcess, mode: str) -> QuotaRow:
    """
    Five jobs held in progress fill the membership's quota; the task waits; its worker process (sync)
    or the triggerer (deferrable) is SIGKILLed mid-wait; then the slots free. The task must end with
    exactly one job of its own.
    """
    control = emulator.control
    account = DURABLE_ACCOUNTS[mode]
    membership = str(uuid.uuid4())
    seeded = control.seed_membership(membership, trained_model=True)
    client = emulator.client(aws_access_key_id=account)
    blockers = [
        client.start_trained_model_inference_job(
            membershipIdentifier=membership,
            name=f"blocker-{index}",
            trainedModelArn=seeded["trained_model_arn"],
            resourceConfig={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            outputConfiguration={"members": [{"accountId": "111122223333"}]},
            dataSource={"mlInputChannelArn": seeded["ml_input_channel_arn"]},
        )["trainedModelInferenceJobArn"]
        for index in range(MEMBERSHIP_QUOTA)
    ]
    for arn in blockers:
        control.force_status(arn, "CREATE_IN_PROGRESS")  # held until the test lets them end
    conf = {
        "conn_id": f"quota_{account}",
        "membership_a": membership,
        "trained_model_arn_a": seeded["trained_model_arn"],
        "channel_arn_a": seeded["ml_input_channel_arn"],
    }
    dag = DURABLE_DAG_IDS[mode]
    run_id = f"{dag}__{uuid.uuid4().hex[:8]}"
    problems: list[str] = []
    started = time.monotonic()
    topology.trigger(dag, run_id, conf)

    def waiting(try_number: int) -> bool:
        return "refused by the service quota" in topology.task_log(dag, run_id, "inference", try_number)

    wait_until(lambda: waiting(1), RUN_TIMEOUT, "try 1 to wait for a slot", interval=0.5)
    if mode == "sync":
        marker = topology.home / "markers" / f"{dag}__{run_id}__1.pid"
        os.kill(int(marker.read_text()), signal.SIGKILL)
        label = "inference: worker SIGKILL during a quota wait, sync"
        wait_until(lambda: waiting(2), RUN_TIMEOUT, "try 2 to wait for a slot", interval=0.5)
        expected_tries = "2"
    else:
        wait_until(
            lambda: topology.task_instance(dag, run_id, "inference")["state"] == "deferred",
            RUN_TIMEOUT,
            "the task to defer on the quota",
            interval=0.5,
        )
        logs = topology.task_log_dir(dag, run_id, "inference")
        before = set(logs.glob("attempt=1.log.trigger.*.log"))
        topology.kill("triggerer")
        time.sleep(2)
        topology.start("triggerer")
        wait_until(
            lambda: set(logs.glob("attempt=1.log.trigger.*.log")) - before, RUN_TIMEOUT, "the new triggerer"
        )
        label = "inference: triggerer SIGKILL during a quota wait, deferrable"
        expected_tries = "1"
    for arn in blockers:
        control.force_status(arn, "ACTIVE")
    try:
        topology.wait_run_finished(dag, run_id, RUN_TIMEOUT)
    except TimeoutError as error:
        problems.append(str(error))
    ti = topology.task_instance(dag, run_id, "inference")
    jobs = client.list_trained_model_inference_jobs(membershipIdentifier=membership)[
        "trainedModelInferenceJobs"
    ]
    own = [job for job in jobs if not job["name"].startswith("blocker-")]
    refused = [
        call
        for call in control.requests(START["inference"])
        if call["params"].get("membershipIdentifier") == membership
        and call["error"] == "ServiceQuotaExceededException"
    ]
    stats = control.stats().inference_jobs
    return QuotaRow(
        label,
        1,
        len(own),
        stats.max_running(membership_id=membership),
        stats.max_running(account_id=account),
        len(refused),
        ti["state"] or "none",
        str(ti["try_number"]),
        time.monotonic() - started,
        problems,
        expected_tries,
    )


def test_a_task_killed_during_its_quota_wait_starts_one_job(
    topology: AirflowTopology, emulator: EmulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    topology.wait_for_dags(DURABLE_DAG_IDS.values())
    rows = [run_durable(topology, emulator, mode) for mode in MODES]
    table = format_table(rows)
    with capsys.disabled():
        print(
            "\n\nJob quotas, durable execution (real Airflow + emulator with AWS's limits)\n" + table + "\n"
        )
    assert all(row.ok for row in rows), "\n" + table

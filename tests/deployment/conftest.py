"""Shared helpers for the deployment checks (docker/ lint, plain-process topology, browser).

These checks need tools from Debian's packages (``scripts/ci-system-deps`` installs them). On a
developer box without them they skip with the reason; under CI (``CI=true``) a missing tool is a
failure, so a green CI run always means the checks really ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from airflow_cleanrooms.emulator.process import EmulatorProcess
from tests.topology import AirflowTopology, TopologyUnavailable, emulator_env

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"


def missing_tool(reason: str) -> NoReturn:
    """Skip on a developer box; fail in CI, where scripts/ci-system-deps must have installed it."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason} (CI must run this check: call scripts/ci-system-deps first)")
    pytest.skip(f"{reason}; run scripts/ci-system-deps (as root) to install it")


def venv_tool(name: str) -> str | None:
    """A console script of the running interpreter's environment, else one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


# ----------------------------------------------------------------------------- the deployment
# One topology for every deployment and browser test (package scope: it stops once they are done,
# so its services do not load the rest of the suite); starting Airflow's four
# services costs most of the suite's time on a 2-core machine.

TIMINGS: dict[str, float] = {}
ARTIFACTS = REPO_ROOT / "artifacts"
MEMBERSHIP_ID = "3f2b8c1e-5d4a-4e6f-9b7c-1a2d3e4f5a6b"
# Sensor poke / trigger poll interval of the example DAGs here. Not 1 s: with LocalExecutor on a
# loaded machine, Airflow 3.3 can fail a sensor whose next poke (reschedule mode) or resumed run
# (deferrable) starts before the scheduler drained the previous worker's exit event ("finished with
# state success, but the task instance's state attribute is running"; apache/airflow#71172 and
# #72716, open). Seen here with 1 s; 10 s leaves the scheduler time to drain it.
POLL_SECONDS = 10
EXAMPLE_DAGS = (
    "example_cleanrooms_ml_inference",
    "example_cleanrooms_ml_inference_deferrable",
    "example_cleanrooms_ml_train_and_infer",
    "example_cleanrooms_ml_train_and_infer_deferrable",
)


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    TIMINGS[phase] = time.monotonic() - started


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("deployment timings (seconds)")
        for phase, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{phase:<45} {seconds:7.1f}")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "deployment-timings.json").write_text(json.dumps(TIMINGS, indent=2))


@pytest.fixture(scope="package")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """The emulator the deployment's ``aws_default`` connection points at."""
    state = tmp_path_factory.mktemp("deployment-emulator") / "state.db"
    # A job is ACTIVE about 13 s after it starts: long enough that a deferred sensor's trigger
    # rarely fires within seconds of the deferral (see POLL_SECONDS), short for a CI run.
    args = ["--pending-seconds", "1", "--running-seconds", "12", "--log-level", "WARNING"]
    with EmulatorProcess(state=state, args=args) as process:
        yield process


@pytest.fixture(scope="package")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorProcess
) -> Iterator[AirflowTopology]:
    """PostgreSQL + api-server + scheduler + dag-processor + triggerer (LocalExecutor), as processes."""
    logs = ARTIFACTS / "deployment-logs"
    shutil.rmtree(logs, ignore_errors=True)
    try:
        topology = AirflowTopology(
            tmp_path_factory.mktemp("deployment-airflow"),
            env={**emulator_env(emulator.url), "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS": str(POLL_SECONDS)},
            parallelism=8,
            database="postgres",
            dags_folder=REPO_ROOT / "dags",
        )
    except TopologyUnavailable as err:
        missing_tool(str(err))
    try:
        with timed("topology start (total)"):
            topology.up()
        for phase, seconds in topology.timings.items():
            TIMINGS[f"  start: {phase}"] = seconds
        yield topology
    finally:  # the logs reach artifacts/ also when the start failed
        with timed("topology stop"):
            topology.stop()
        topology.copy_logs(logs)


@dataclass
class ExampleRun:
    dag_id: str
    run_id: str
    conf: dict[str, Any]
    state: str
    task_states: dict[str, str]
    failure_logs: dict[str, str] = field(default_factory=dict)


def _conf(dag_id: str, seeded: dict[str, str], prefix: str) -> dict[str, Any]:
    if "train_and_infer" in dag_id:
        return {
            "membership_id": MEMBERSHIP_ID,
            "configured_model_algorithm_association_arn": seeded[
                "configured_model_algorithm_association_arn"
            ],
            "training_channel_arn": seeded["ml_input_channel_arn"],
            "inference_channel_arn": seeded["ml_input_channel_arn"],
            "name_prefix": prefix,
        }
    return {
        "membership_id": MEMBERSHIP_ID,
        "trained_model_arn": seeded["trained_model_arn"],
        "ml_input_channel_arn": seeded["ml_input_channel_arn"],
        "name_prefix": prefix,
        "environment": {"SCORE_THRESHOLD": "0.7", "RUN_KIND": "deployment-test"},
        "tags": {"team": "growth", "suite": "deployment"},
    }


def name_prefix(dag_id: str) -> str:
    """A job-name prefix unique to each example DAG, so the emulator's jobs map to runs."""
    return "dt-" + "".join(word[0] for word in dag_id.removeprefix("example_cleanrooms_ml_").split("_"))


@pytest.fixture(scope="package")
def seeded(emulator: EmulatorProcess) -> dict[str, str]:
    return emulator.control.seed_membership(MEMBERSHIP_ID, trained_model=True)


@pytest.fixture(scope="package")
def example_runs(deployment: AirflowTopology, seeded: dict[str, str]) -> dict[str, ExampleRun]:
    """Unpause and trigger every example DAG through the REST API (all at once), wait for the end."""
    with timed("DAGs parsed (visible in the API)"):
        deployment.wait_for_dags(EXAMPLE_DAGS, timeout=180)
    runs: dict[str, ExampleRun] = {}
    with timed("example runs: trigger -> all finished"):
        for dag_id in EXAMPLE_DAGS:
            deployment.unpause(dag_id)
            conf = _conf(dag_id, seeded, name_prefix(dag_id))
            runs[dag_id] = ExampleRun(dag_id, deployment.trigger(dag_id, conf=conf), conf, "queued", {})

        def all_finished() -> bool | None:
            for run in runs.values():
                if run.state not in ("success", "failed"):
                    run.state = deployment.dag_run_state(run.dag_id, run.run_id)
            return all(r.state in ("success", "failed") for r in runs.values()) or None

        deployment.wait_for("example runs finished", all_finished, timeout=420, interval=2)
    for run in runs.values():
        tis = deployment.task_instances(run.dag_id, run.run_id)
        run.task_states = {ti["task_id"]: ti["state"] for ti in tis}
        for ti in tis:
            if ti["state"] != "success":
                log = deployment.ui_task_log(run.dag_id, run.run_id, ti["task_id"], ti["try_number"])
                run.failure_logs[ti["task_id"]] = log
    return runs

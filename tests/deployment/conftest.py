"""Shared helpers for the deployment checks (docker/ lint, plain-process topology, browser).

These checks need tools from Debian's packages (``scripts/ci-system-deps`` installs them). On a
developer box without them they skip with the reason; under CI (``CI=true``) a missing tool is a
failure, so a green CI run always means the checks really ran.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import pytest

from airflow_cleanrooms.compat import has_model_versions
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
# Each CI stage its own folder (scripts/test names the stage), since stages run side by side.
ARTIFACTS = REPO_ROOT / "artifacts" / os.environ.get("CLEANROOMS_ML_CI_STAGE", "main")
MEMBERSHIP_ID = "3f2b8c1e-5d4a-4e6f-9b7c-1a2d3e4f5a6b"
# Sensor poke / trigger poll interval of the example DAGs here. Not 1 s: with LocalExecutor on a
# loaded machine, Airflow 3.3 can fail a sensor whose next poke (reschedule mode) or resumed run
# (deferrable) starts before the scheduler drained the previous worker's exit event ("finished with
# state success, but the task instance's state attribute is running"; apache/airflow#71172 and
# #72716, open). Seen here with 1 s; 10 s leaves the scheduler time to drain it.
POLL_SECONDS = 10
# PostgreSQL, as MWAA and the Helm chart run, where the stage installs its driver (the main stage);
# SQLite in the stages whose locks hold only what MWAA's constraints and the provider's extras pin.
DATABASE: Literal["sqlite", "postgres"] = (
    "postgres" if importlib.util.find_spec("psycopg2") is not None else "sqlite"
)
RETRAIN_DAG = "example_cleanrooms_ml_retrain"
SCORE_DAG = "example_cleanrooms_ml_score_new_model"
EXAMPLE_DAGS = (
    "example_cleanrooms_ml_inference",
    "example_cleanrooms_ml_inference_deferrable",
    "example_cleanrooms_ml_train_and_infer",
    "example_cleanrooms_ml_train_and_infer_deferrable",
)


#: Whether the installed botocore model has trained model versions (the lowest stage's 1.37 has not):
#: without them the training operator pushes no version and the lineage names none.
MODEL_VERSIONS = has_model_versions()


def trained_model_version(deployment: AirflowTopology, dag_id: str, run_id: str) -> str | None:
    """The version the run's training task pushed (``None`` where the model has no versions)."""
    if not MODEL_VERSIONS:
        return None
    key = "trained_model_version_identifier"
    return str(deployment.xcom(dag_id, run_id, "create_trained_model", key))


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


#: The membership's default output location (PutMLConfiguration): the inference tasks' lineage output.
OUTPUT_LOCATION = "s3://deployment-scores/churn/"


@pytest.fixture(scope="package")
def lineage_events(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """
    Where the deployment's OpenLineage file transport writes one JSON file per event (``ol-*.json``);
    None where the OpenLineage provider is not installed.
    """
    if importlib.util.find_spec("airflow.providers.openlineage") is None:
        return None
    return tmp_path_factory.mktemp("openlineage")


@pytest.fixture(scope="package")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, emulator: EmulatorProcess, lineage_events: Path | None
) -> Iterator[AirflowTopology]:
    """DATABASE + api-server + scheduler + dag-processor + triggerer (LocalExecutor), as processes."""
    logs = ARTIFACTS / "deployment-logs"
    shutil.rmtree(logs, ignore_errors=True)
    lineage = (
        {
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(lineage_events / "ol")}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "cleanrooms-deployment",
        }
        if lineage_events is not None
        else {}
    )
    try:
        topology = AirflowTopology(
            tmp_path_factory.mktemp("deployment-airflow"),
            env={
                **emulator_env(emulator.url),
                "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS": str(POLL_SECONDS),
                "CLEANROOMS_ML_EXAMPLE_MEMBERSHIP_ID": MEMBERSHIP_ID,  # the asset pair's membership
                **lineage,
            },
            parallelism=8,
            database=DATABASE,
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
    """The membership's objects, and its ML configuration (where inference results go)."""
    seeded = emulator.control.seed_membership(MEMBERSHIP_ID, trained_model=True)
    emulator.client().put_ml_configuration(
        membershipIdentifier=MEMBERSHIP_ID,
        defaultOutputLocation={
            "destination": {"s3Destination": {"s3Uri": OUTPUT_LOCATION}},
            "roleArn": "arn:aws:iam::123456789012:role/cleanrooms-ml-results",
        },
    )
    return seeded


@dataclass
class RetrainRun:
    """The asset pair's retraining run (``dags/example_cleanrooms_ml_assets.py``), triggered, not awaited."""

    run_id: str
    scoring_channel_arn: str
    #: Filled in by ``example_runs`` once the run finished: its state, and the scoring DAG run it started.
    state: str = "queued"
    scoring: dict[str, Any] | None = None


@pytest.fixture(scope="package")
def retrain_run(deployment: AirflowTopology, seeded: dict[str, str]) -> RetrainRun:
    """
    Set the scoring DAG's Variable, unpause both asset DAGs and trigger a retraining run (it runs
    alongside the other example runs; ``example_runs`` waits for it and the scoring run it starts).
    """
    deployment.wait_for_dags([RETRAIN_DAG, SCORE_DAG], timeout=180)
    channel = seeded["ml_input_channel_arn"]
    deployment.api("POST", "variables", {"key": "cleanrooms_ml_scoring_channel_arn", "value": channel})
    deployment.unpause(SCORE_DAG)
    deployment.unpause(RETRAIN_DAG)
    conf = {
        "configured_model_algorithm_association_arn": seeded["configured_model_algorithm_association_arn"],
        "training_channel_arn": channel,
    }
    return RetrainRun(deployment.trigger(RETRAIN_DAG, conf=conf), channel)


@pytest.fixture(scope="package")
def example_runs(
    deployment: AirflowTopology, seeded: dict[str, str], retrain_run: RetrainRun
) -> dict[str, ExampleRun]:
    """
    Unpause and trigger every example DAG through the REST API (all at once), wait for the end.
    (The asset pair's retraining run was triggered just before, to run alongside.)
    """
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
    with timed("asset pair: retraining run and the scoring run it started finished"):
        retrain_run.state = deployment.wait_run_finished(RETRAIN_DAG, retrain_run.run_id, 300)

        def scoring_finished() -> dict[str, Any] | None:
            found = deployment.dag_runs(SCORE_DAG)
            return found[0] if found and found[0]["state"] in ("success", "failed") else None

        if retrain_run.state == "success":  # else no asset event: no scoring run to wait for
            retrain_run.scoring = deployment.wait_for(
                "the asset-scheduled scoring run", scoring_finished, 300
            )
    for run in runs.values():
        tis = deployment.task_instances(run.dag_id, run.run_id)
        run.task_states = {ti["task_id"]: ti["state"] for ti in tis}
        for ti in tis:
            if ti["state"] != "success":
                log = deployment.ui_task_log(run.dag_id, run.run_id, ti["task_id"], ti["try_number"])
                run.failure_logs[ti["task_id"]] = log
    return runs

"""
The one-command demo: train a model and run an inference job through Airflow, with no AWS account.

``make demo`` (``scripts/demo``) sets up ``.venv`` and runs ``python -m airflow_cleanrooms.demo``,
which:

1. makes a temporary ``AIRFLOW_HOME`` (SQLite metadata database, the example DAGs copied into its
   dags folder) and runs ``airflow db migrate`` there;
2. starts the Clean Rooms ML emulator as a subprocess on a free port, with jobs that take seconds;
3. seeds a membership through the emulator's API: configured model algorithm, its association and
   an ML input channel;
4. points the ``aws_default`` connection at the emulator (``AIRFLOW_CONN_AWS_DEFAULT``) and runs
   ``airflow dags test example_cleanrooms_ml_train_and_infer --conf '{...seeded ARNs...}'``;
5. prints the trained model and inference job ARNs with their final statuses (read back from the
   emulator with boto3) and the state of each task, stops the emulator, and exits non-zero if
   anything failed.

The DAG is the unmodified example: pointed at AWS through ``aws_default`` it runs the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DAG_ID = "example_cleanrooms_ml_train_and_infer"
TASK_ORDER = ("create_trained_model", "wait_trained_model", "start_inference", "wait_inference")
REGION = "us-east-1"
RECEIVER_ACCOUNT = "111122223333"
LISTENING = re.compile(r"listening on (http://\S+)")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DAGS_DIR = REPO_ROOT / "dags"


class DemoError(RuntimeError):
    """A demo step failed before the DAG could run."""


@dataclass
class DemoResult:
    """What the demo observed: task states, the resources the run created and their statuses."""

    dag_id: str
    run_id: str | None = None
    dag_run_state: str | None = None
    task_states: dict[str, str | None] = field(default_factory=dict)
    trained_model_arn: str | None = None
    trained_model_status: str | None = None
    inference_job_arn: str | None = None
    inference_job_status: str | None = None
    inference_job_name: str | None = None
    status_details: dict[str, Any] = field(default_factory=dict)
    #: The last lines each job's container logged (CloudWatch Logs on the emulator).
    container_logs: dict[str, list[str]] = field(default_factory=dict)
    exit_code: int | None = None
    log_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return (
            self.exit_code == 0
            and self.dag_run_state == "success"
            and all(self.task_states.get(task) == "success" for task in TASK_ORDER)
            and self.trained_model_status == "ACTIVE"
            and self.inference_job_status == "ACTIVE"
        )


# --------------------------------------------------------------------------------------------------
# Processes


def _drain(stream: IO[str], sink: IO[str], lines: queue.Queue[str] | None) -> None:
    for line in stream:
        sink.write(line)
        sink.flush()
        if lines is not None:
            lines.put(line)


@contextlib.contextmanager
def running_emulator(
    log_path: Path,
    *,
    pending_seconds: float,
    running_seconds: float,
    startup_timeout: float = 60.0,
) -> Iterator[str]:
    """Start ``python -m airflow_cleanrooms.emulator`` on a free port; yield its URL; stop it."""
    command = [
        sys.executable,
        "-m",
        "airflow_cleanrooms.emulator",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--state",
        ":memory:",
        "--pending-seconds",
        str(pending_seconds),
        "--running-seconds",
        str(running_seconds),
        "--training-seconds",
        str(running_seconds),
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        drain = threading.Thread(target=_drain, args=(process.stdout, log, lines), daemon=True)
        drain.start()
        try:
            deadline = time.monotonic() + startup_timeout
            url = None
            while url is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or process.poll() is not None:
                    raise DemoError(
                        f"The emulator did not start (exit code {process.poll()}); see {log_path}:\n"
                        + _tail(log_path)
                    )
                with contextlib.suppress(queue.Empty):
                    match = LISTENING.search(lines.get(timeout=min(remaining, 0.5)))
                    if match:
                        url = match.group(1).rstrip("/")
            yield url
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            drain.join(timeout=5)  # its last lines reach the log before the log is closed


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, *, echo: bool, timeout: float
) -> int:
    """Run a command, its output going to ``log_path`` (and the terminal when ``echo``)."""
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env)
        )
        assert process.stdout is not None
        sink: IO[str] = _Tee(log, sys.stdout) if echo else log  # type: ignore[assignment]
        drain = threading.Thread(target=_drain, args=(process.stdout, sink, None), daemon=True)
        drain.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -9
        drain.join(timeout=5)
        return code


class _Tee:
    def __init__(self, *streams: IO[str]):
        self.streams = streams

    def write(self, text: str) -> None:
        for stream in self.streams:
            stream.write(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


# --------------------------------------------------------------------------------------------------
# Environment


def airflow_environment(home: Path, emulator_url: str | None, poll_seconds: int) -> dict[str, str]:
    """Environment of the Airflow commands: the temporary home, SQLite, aws_default -> emulator."""
    env = dict(os.environ)
    for key in [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
        del env[key]
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS": str(poll_seconds),
            # Local credentials for the emulator; never reach AWS.
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    if emulator_url is not None:
        env["AIRFLOW_CONN_AWS_DEFAULT"] = emulator_connection(emulator_url)
    return env


def emulator_connection(url: str) -> str:
    """The ``aws_default`` connection (JSON form) that sends every call to the emulator."""
    return json.dumps({"conn_type": "aws", "extra": {"endpoint_url": url, "region_name": REGION}})


def prepare_home(home: Path, dags_dir: Path) -> None:
    """Create the Airflow home with the example DAG files in its dags folder."""
    dag_files = sorted(dags_dir.glob("example_cleanrooms_ml_*.py"))
    if not dag_files:
        raise DemoError(f"no example DAG files in {dags_dir} (run from a checkout, or pass --dags-dir)")
    (home / "dags").mkdir(parents=True, exist_ok=True)
    for dag_file in dag_files:
        shutil.copy2(dag_file, home / "dags" / dag_file.name)


def seed(url: str, membership_id: str) -> dict[str, str]:
    """Create the membership's algorithm, association and ML input channel in the emulator."""
    from airflow_cleanrooms.emulator.control import EmulatorControl

    return dict(EmulatorControl(url).seed_membership(membership_id))


def run_conf(membership_id: str, seeded: Mapping[str, str]) -> dict[str, Any]:
    """The DAG run's conf: the seeded objects in place of the DAG's placeholder params."""
    try:
        association = seeded["configured_model_algorithm_association_arn"]
        channel = seeded["ml_input_channel_arn"]
    except KeyError as missing:
        raise DemoError(f"seed_membership returned no {missing}: {dict(seeded)}") from None
    return {
        "membership_id": membership_id,
        "configured_model_algorithm_association_arn": association,
        "training_channel_arn": channel,
        "inference_channel_arn": channel,
        "receiver_account": RECEIVER_ACCOUNT,
        "name_prefix": "demo",
        "team": "demo",
    }


# --------------------------------------------------------------------------------------------------
# Reading the outcome back


def read_run(db_path: Path, dag_id: str, result: DemoResult) -> None:
    """Fill the run id, run state, task states and XComs of the latest run from the SQLite DB."""
    if not db_path.exists():
        return
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        row = db.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        if row is None:
            return
        result.run_id, result.dag_run_state = row
        result.task_states = {task: None for task in TASK_ORDER}
        for task_id, state in db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            (dag_id, result.run_id),
        ):
            result.task_states[task_id] = state
        xcoms = dict(
            db.execute(
                "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value'",
                (dag_id, result.run_id),
            ).fetchall()
        )
    result.trained_model_arn = _xcom_string(xcoms.get("create_trained_model"))
    result.inference_job_arn = _xcom_string(xcoms.get("start_inference"))


def _xcom_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return str(value)
    return decoded if isinstance(decoded, str) else None


def read_resources(url: str, membership_id: str, result: DemoResult) -> None:
    """Read the final statuses of the trained model and the inference job from the emulator."""
    import boto3

    client = boto3.client(
        "cleanroomsml",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )
    if result.trained_model_arn is None:
        models = client.list_trained_models(membershipIdentifier=membership_id).get("trainedModels", [])
        if models:
            result.trained_model_arn = models[0]["trainedModelArn"]
    if result.trained_model_arn:
        model = client.get_trained_model(
            membershipIdentifier=membership_id, trainedModelArn=result.trained_model_arn
        )
        result.trained_model_status = model["status"]
        if model.get("statusDetails"):
            result.status_details["trained_model"] = model["statusDetails"]
    if result.inference_job_arn is None:
        jobs = client.list_trained_model_inference_jobs(membershipIdentifier=membership_id).get(
            "trainedModelInferenceJobs", []
        )
        if jobs:
            result.inference_job_arn = jobs[0]["trainedModelInferenceJobArn"]
    if result.inference_job_arn:
        job = client.get_trained_model_inference_job(
            membershipIdentifier=membership_id, trainedModelInferenceJobArn=result.inference_job_arn
        )
        result.inference_job_status = job["status"]
        result.inference_job_name = job.get("name")
        if job.get("statusDetails"):
            result.status_details["inference_job"] = job["statusDetails"]
    read_container_logs(client, result)


def read_container_logs(client: Any, result: DemoResult) -> None:
    """The last lines of each job's container logs (never fails the demo)."""
    import boto3

    from airflow_cleanrooms.container_logs import last_lines
    from airflow_cleanrooms.wait_semantics import TRAINED_MODEL, TRAINED_MODEL_INFERENCE_JOB

    logs = boto3.client(
        "logs",
        endpoint_url=client.meta.endpoint_url,
        region_name=REGION,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )
    for what, kind, arn in (
        ("trained model", TRAINED_MODEL, result.trained_model_arn),
        ("inference job", TRAINED_MODEL_INFERENCE_JOB, result.inference_job_arn),
    ):
        if arn:
            try:
                result.container_logs[what] = last_lines(logs, kind, arn)
            except Exception as error:
                result.container_logs[what] = [f"(could not read its container logs: {error})"]


def format_report(result: DemoResult) -> str:
    """The summary the demo prints at the end."""
    width = max(len(task) for task in TASK_ORDER)
    lines = [
        "",
        "=" * 72,
        f"DAG {result.dag_id}  run {result.run_id or '-'}  ->  {result.dag_run_state or 'not run'}",
        "-" * 72,
        f"Trained model   {result.trained_model_arn or '(none)'}",
        f"                status {result.trained_model_status or '-'}",
        f"Inference job   {result.inference_job_arn or '(none)'}",
        f"                status {result.inference_job_status or '-'}"
        + (f", name {result.inference_job_name}" if result.inference_job_name else ""),
    ]
    for what, details in result.status_details.items():
        lines.append(f"Status details of the {what.replace('_', ' ')}: {json.dumps(details)}")
    for what, container_lines in result.container_logs.items():
        lines.append(f"Last container log lines of the {what}:")
        lines += [f"  | {line}" for line in container_lines] or ["  (none)"]
    lines.append("-" * 72)
    for task in TASK_ORDER:
        lines.append(f"  {task:<{width}}  {result.task_states.get(task) or 'not run'}")
    lines.append("-" * 72)
    if result.timings:
        lines.append("Timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    if result.log_path:
        lines.append(f"Airflow output: {result.log_path}")
    lines.append("DEMO " + ("SUCCEEDED" if result.succeeded else "FAILED"))
    lines.append("=" * 72)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The demo


def run_demo(
    *,
    home: Path,
    dags_dir: Path = DEFAULT_DAGS_DIR,
    dag_id: str = DAG_ID,
    pending_seconds: float = 1.0,
    running_seconds: float = 2.0,
    poll_seconds: int = 1,
    echo: bool = False,
    timeout: float = 300.0,
    out: IO[str] | None = None,
) -> DemoResult:
    """Run the demo in ``home`` (which must be writable); return what it observed."""
    out = out or sys.stdout
    result = DemoResult(dag_id=dag_id)
    started = time.monotonic()

    def step(message: str) -> None:
        print(f"[demo {time.monotonic() - started:5.1f}s] {message}", file=out, flush=True)

    prepare_home(home, dags_dir)
    log_path = home / "airflow-output.log"
    result.log_path = log_path
    airflow = [sys.executable, "-m", "airflow"]

    step(f"AIRFLOW_HOME={home} (SQLite); migrating the metadata database")
    with open(home / "db-migrate.log", "w") as migrate_log:
        migrate = subprocess.Popen(
            [*airflow, "db", "migrate"],
            env=airflow_environment(home, None, poll_seconds),
            stdout=migrate_log,
            stderr=subprocess.STDOUT,
        )
    try:
        step("starting the Clean Rooms ML emulator")
        with running_emulator(
            home / "emulator.log", pending_seconds=pending_seconds, running_seconds=running_seconds
        ) as url:
            step(f"emulator listening on {url}")
            membership_id = str(uuid.uuid4())
            seeded = seed(url, membership_id)
            conf = run_conf(membership_id, seeded)
            step(f"seeded membership {membership_id} through the emulator's API:")
            for key in ("configured_model_algorithm_association_arn", "ml_input_channel_arn"):
                step(f"  {key} = {seeded.get(key)}")
            code = migrate.wait(timeout=timeout)
            if code != 0:
                raise DemoError(f"airflow db migrate failed ({code}):\n" + _tail(home / "db-migrate.log"))
            result.timings["setup"] = time.monotonic() - started
            step(f"running: airflow dags test {dag_id} --conf '{json.dumps(conf)}'")
            dag_started = time.monotonic()
            result.exit_code = _run(
                [*airflow, "dags", "test", dag_id, "--conf", json.dumps(conf)],
                airflow_environment(home, url, poll_seconds),
                log_path,
                echo=echo,
                timeout=timeout,
            )
            result.timings["dag run"] = time.monotonic() - dag_started
            read_run(home / "airflow.db", dag_id, result)
            read_resources(url, membership_id, result)
            step("stopping the emulator")
    finally:
        if migrate.poll() is None:
            migrate.kill()
            migrate.wait()
    result.timings["total"] = time.monotonic() - started
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_cleanrooms.demo",
        description="Run the train-and-infer example DAG end to end against the local emulator.",
    )
    parser.add_argument(
        "--airflow-home",
        type=Path,
        help="use this AIRFLOW_HOME (default: a temporary folder, removed after a successful run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    parser.add_argument("--deferrable", action="store_true", help="run the deferrable variant of the DAG")
    parser.add_argument("--dags-dir", type=Path, default=DEFAULT_DAGS_DIR, help="where the DAG files are")
    parser.add_argument("--pending-seconds", type=float, default=1.0, help="emulator: time in *_PENDING")
    parser.add_argument("--running-seconds", type=float, default=2.0, help="emulator: time running")
    parser.add_argument("--verbose", "-v", action="store_true", help="show Airflow's output as it runs")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    dag_id = f"{DAG_ID}_deferrable" if args.deferrable else DAG_ID
    temporary = args.airflow_home is None
    home = Path(tempfile.mkdtemp(prefix="cleanrooms-demo-")) if temporary else args.airflow_home.resolve()
    result: DemoResult | None = None
    try:
        result = run_demo(
            home=home,
            dags_dir=args.dags_dir,
            dag_id=dag_id,
            pending_seconds=args.pending_seconds,
            running_seconds=args.running_seconds,
            echo=args.verbose,
            timeout=args.timeout,
        )
    except DemoError as error:
        print(f"DEMO FAILED: {error}", file=sys.stderr)
    finally:
        succeeded = result is not None and result.succeeded
        if temporary and succeeded and not args.keep:
            shutil.rmtree(home, ignore_errors=True)
            if result is not None:
                result.log_path = None
        elif temporary:
            print(f"Kept AIRFLOW_HOME for inspection: {home}", file=sys.stderr)
    if result is None:
        return 1
    if not result.succeeded and result.log_path and result.log_path.exists():
        print("\nLast lines of the Airflow output:\n" + _tail(result.log_path, 60))
    print(format_report(result))
    if result.succeeded:
        print(
            f"The same DAG ({dag_id}) runs on AWS unchanged: give it an aws_default connection without\n"
            "endpoint_url and your membership's ARNs as params (see the DAG's docs)."
        )
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())

"""
The one-command demo: train a model and run an inference job through Airflow, with no AWS account.

``make demo`` (``scripts/demo``) sets up ``.venv`` and runs ``python -m demo.run``, which:

1. makes a temporary ``AIRFLOW_HOME`` (SQLite, the example DAGs copied into its dags folder) and
   runs ``airflow db migrate`` there;
2. starts the Clean Rooms ML emulator (:class:`~airflow_cleanrooms.emulator.process.EmulatorProcess`)
   with jobs that take seconds, and seeds a membership through its API;
3. points ``aws_default`` at the emulator and runs ``airflow dags test <dag> --conf '{...ARNs...}'``;
4. reads the run back with the Airflow CLI's JSON output (``dags list-runs``,
   ``tasks states-for-dag-run``) and the trained model and inference job from the emulator, prints
   a summary and exits non-zero if anything failed.

The DAG is the unmodified example: pointed at AWS through ``aws_default`` it runs the same way.
It lives outside the wheel because it needs a checkout's ``dags/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_cleanrooms.emulator.process import EmulatorProcess

if TYPE_CHECKING:
    from airflow_cleanrooms.wait_semantics import ResourceKind

DAG_ID = "example_cleanrooms_ml_train_and_infer"
DEMO_OUTPUT_LOCATION = "s3://demo-cleanrooms-ml-results/scores/"
DEMO_RESULTS_ROLE = "arn:aws:iam::123456789012:role/cleanrooms-ml-results"
TASK_ORDER = ("create_trained_model", "wait_trained_model", "start_inference", "wait_inference")
REGION = "us-east-1"
RECEIVER_ACCOUNT = "111122223333"
DEFAULT_DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"
AIRFLOW = (sys.executable, "-m", "airflow")


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


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def airflow_environment(home: Path, emulator_url: str | None, poll_seconds: int) -> dict[str, str]:
    """Environment of the Airflow commands: the temporary home, SQLite, aws_default -> emulator."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))
        and k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN")
    }
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
# Reading the outcome back: Airflow's CLI (JSON output) and the emulator's API


def airflow_json(args: Sequence[str], env: Mapping[str, str]) -> list[dict[str, Any]]:
    """Run ``airflow <args> -o json`` and decode its output (the last line that is a JSON list)."""
    done = subprocess.run(
        [*AIRFLOW, *args, "-o", "json"], env=dict(env), capture_output=True, text=True, check=False
    )
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("["):
            return list(json.loads(line))
    raise DemoError(
        f"airflow {' '.join(args)} printed no JSON (exit {done.returncode}):\n{done.stderr[-2000:]}"
    )


def read_run(env: Mapping[str, str], dag_id: str, result: DemoResult) -> None:
    """Fill the run id, run state and task states of the DAG's latest run."""
    runs = airflow_json(["dags", "list-runs", dag_id], env)
    if not runs:
        return
    latest = max(runs, key=lambda run: str(run.get("run_after") or run.get("start_date") or ""))
    result.run_id, result.dag_run_state = latest["run_id"], latest["state"]
    result.task_states = dict.fromkeys(TASK_ORDER)
    for ti in airflow_json(["tasks", "states-for-dag-run", dag_id, latest["run_id"]], env):
        result.task_states[ti["task_id"]] = ti["state"]


def read_resources(emulator: EmulatorProcess, membership_id: str, result: DemoResult) -> None:
    """The trained model and inference job of the demo's membership (it holds only the run's)."""
    import boto3

    client = boto3.client(
        "cleanroomsml",
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )
    for model in client.list_trained_models(membershipIdentifier=membership_id)["trainedModels"][:1]:
        result.trained_model_arn, result.trained_model_status = model["trainedModelArn"], model["status"]
        details = client.get_trained_model(
            membershipIdentifier=membership_id, trainedModelArn=model["trainedModelArn"]
        ).get("statusDetails")
        if details:
            result.status_details["trained_model"] = details
    jobs = client.list_trained_model_inference_jobs(membershipIdentifier=membership_id)
    for job in jobs["trainedModelInferenceJobs"][:1]:
        result.inference_job_arn = job["trainedModelInferenceJobArn"]
        result.inference_job_status, result.inference_job_name = job["status"], job["name"]
        details = client.get_trained_model_inference_job(
            membershipIdentifier=membership_id, trainedModelInferenceJobArn=result.inference_job_arn
        ).get("statusDetails")
        if details:
            result.status_details["inference_job"] = details
    read_container_logs(client, result)


def read_container_logs(client: Any, result: DemoResult) -> None:
    """The last lines of each job's container logs (never fails the demo)."""
    import boto3

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
    result = DemoResult(dag_id=dag_id, log_path=home / "airflow-output.log")
    started = time.monotonic()

    def step(message: str) -> None:
        print(f"[demo {time.monotonic() - started:5.1f}s] {message}", file=out, flush=True)

    prepare_home(home, dags_dir)
    step(f"AIRFLOW_HOME={home} (SQLite); migrating the metadata database")
    with open(home / "db-migrate.log", "w") as migrate_log:  # runs while the emulator starts
        migrate = subprocess.Popen(
            [*AIRFLOW, "db", "migrate"],
            env=airflow_environment(home, None, poll_seconds),
            stdout=migrate_log,
            stderr=subprocess.STDOUT,
        )
    step("starting the Clean Rooms ML emulator")
    seconds = [str(pending_seconds), str(running_seconds)]
    emulator = EmulatorProcess(
        state=":memory:",
        args=[
            "--pending-seconds",
            seconds[0],
            "--running-seconds",
            seconds[1],
            "--training-seconds",
            seconds[1],
        ],
    )
    try:
        try:
            emulator.start()
        except RuntimeError as err:
            raise DemoError(str(err)) from None
        step(f"emulator listening on {emulator.url}")
        membership_id = str(uuid.uuid4())
        seeded = emulator.control.seed_membership(membership_id)
        # Where the membership's inference results go (PutMLConfiguration): OpenLineage, when
        # installed, names this S3 location as the inference task's output.
        emulator.client().put_ml_configuration(
            membershipIdentifier=membership_id,
            defaultOutputLocation={
                "destination": {"s3Destination": {"s3Uri": DEMO_OUTPUT_LOCATION}},
                "roleArn": DEMO_RESULTS_ROLE,
            },
        )
        conf = run_conf(membership_id, seeded)
        step(f"seeded membership {membership_id} through the emulator's API:")
        for key in ("configured_model_algorithm_association_arn", "ml_input_channel_arn"):
            step(f"  {key} = {seeded.get(key)}")
        step(f"  ML configuration: results to {DEMO_OUTPUT_LOCATION}")
        if migrate.wait(timeout=timeout) != 0:
            raise DemoError("airflow db migrate failed:\n" + _tail(home / "db-migrate.log"))
        result.timings["setup"] = time.monotonic() - started
        step(f"running: airflow dags test {dag_id} --conf '{json.dumps(conf)}'")
        env = airflow_environment(home, emulator.url, poll_seconds)
        dag_started = time.monotonic()
        with open(home / "airflow-output.log", "w") as log:
            try:
                result.exit_code = subprocess.run(
                    [*AIRFLOW, "dags", "test", dag_id, "--conf", json.dumps(conf)],
                    env=env,
                    stdout=None if echo else log,
                    stderr=None if echo else subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                result.exit_code = -9
        result.timings["dag run"] = time.monotonic() - dag_started
        step("reading the run back (airflow dags list-runs / tasks states-for-dag-run -o json)")
        read_run(env, dag_id, result)
        read_resources(emulator, membership_id, result)
        step("stopping the emulator")
    finally:
        emulator.stop()
        (home / "emulator.log").write_text("\n".join(emulator.output) + "\n")
        if migrate.poll() is None:
            migrate.kill()
            migrate.wait()
    result.timings["total"] = time.monotonic() - started
    return result


def last_lines(client: Any, kind: ResourceKind, arn: str, count: int = 5) -> list[str]:
    """
    The last ``count`` lines the job's container logged (all its streams, in time order), read with a
    ``logs`` client; ``[]`` when there are none (or no log group yet).
    """
    from airflow_cleanrooms.container_logs import Fetched, LogFollower, default_stream_prefix, log_group
    from airflow_cleanrooms.wait_semantics import error_code

    group = log_group(kind)
    if group is None:
        return []
    follower = LogFollower(group, default_stream_prefix(arn))
    try:
        streams = follower.new_streams(client.describe_log_streams(**follower.describe_request()))
    except Exception as error:
        if error_code(error) == "ResourceNotFoundException":
            return []
        raise
    fetched = Fetched(streams, {})
    for stream in streams:
        page = client.get_log_events(
            logGroupName=group, logStreamName=stream, limit=count, startFromHead=False
        )
        fetched.events[stream] = (page.get("events") or [], None)
    return [str(event.get("message", "")).rstrip("\n") for _, event in follower.apply(fetched)][-count:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
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

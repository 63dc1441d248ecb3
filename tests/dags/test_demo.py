"""
The demo (``make demo`` -> ``scripts/demo`` -> ``python -m demo.run``), the README's first
command: run for real once, end to end, and its pieces (conf, report, exit code) checked in isolation.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_cleanrooms.param_schemas import member_schema
from demo import run as demo

SEEDED = {
    "membership_id": "5f0c2d4e-1111-4222-8333-444455556666",
    "configured_model_algorithm_arn": "arn:aws:cleanrooms-ml:us-east-1:1234:configured-model-algorithm/a",
    "configured_model_algorithm_association_arn": (
        "arn:aws:cleanrooms-ml:us-east-1:123456789012:membership/5f0c2d4e-1111-4222-8333-444455556666"
        "/configured-model-algorithm-association/b"
    ),
    "ml_input_channel_arn": (
        "arn:aws:cleanrooms-ml:us-east-1:123456789012:membership/5f0c2d4e-1111-4222-8333-444455556666"
        "/ml-input-channel/c"
    ),
}


def _matches(operation: str, value: str, *path: str) -> bool:
    return re.fullmatch(member_schema(operation, *path)["pattern"], value) is not None


@pytest.mark.integration
@pytest.mark.slow
def test_demo_runs_the_dag_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "airflow-home"
    # The README's command with shorter emulator phases (the demo's own are a few seconds).
    exit_code = demo.main(
        ["--airflow-home", str(home), "--pending-seconds", "0.2", "--running-seconds", "0.5"]
    )
    out = capsys.readouterr().out

    assert exit_code == 0, out
    assert "DEMO SUCCEEDED" in out
    for task in demo.TASK_ORDER:
        assert re.search(rf"^\s+{task}\s+success$", out, re.MULTILINE), task
    model_arn = re.search(r"^Trained model\s+(\S+)\n\s+status ACTIVE$", out, re.MULTILINE)
    job_arn = re.search(r"^Inference job\s+(\S+)\n\s+status ACTIVE, name demo-scores-\d{8}T\d{6}$", out, re.M)
    assert model_arn and _matches("StartTrainedModelInferenceJob", model_arn.group(1), "trainedModelArn")
    assert job_arn and "/trained-model-inference-job/" in job_arn.group(1)
    # It ran in the home it was given (SQLite), with the example DAGs copied in, and stopped the emulator.
    assert (home / "airflow.db").exists()
    assert (home / "dags" / "example_cleanrooms_ml_train_and_infer.py").exists()
    assert "stopping the emulator" in out
    # The last lines each job's container logged (the emulator's CloudWatch Logs).
    assert "Last container log lines of the trained model:" in out
    assert "Last container log lines of the inference job:" in out
    assert "  | Scored 1000 of 1000 records; output written. Exiting with code 0" in out


def test_run_conf_replaces_every_placeholder_the_dag_needs() -> None:
    conf = demo.run_conf(SEEDED["membership_id"], SEEDED)
    assert conf["membership_id"] == SEEDED["membership_id"]
    assert (
        conf["configured_model_algorithm_association_arn"]
        == SEEDED["configured_model_algorithm_association_arn"]
    )
    assert conf["training_channel_arn"] == conf["inference_channel_arn"] == SEEDED["ml_input_channel_arn"]
    assert _matches(
        "StartTrainedModelInferenceJob", conf["receiver_account"], "mlModelInferencePayerAccountId"
    )


def test_run_conf_is_valid_for_the_dag(repo_dag_bag: Any) -> None:
    params = copy.deepcopy(repo_dag_bag.dags[demo.DAG_ID].params)
    params.update(demo.run_conf(SEEDED["membership_id"], SEEDED))
    assert params.validate()["membership_id"] == SEEDED["membership_id"]


def test_run_conf_refuses_an_incomplete_seed() -> None:
    with pytest.raises(demo.DemoError, match="ml_input_channel_arn"):
        demo.run_conf(SEEDED["membership_id"], {"configured_model_algorithm_association_arn": "x"})


def test_emulator_connection_points_aws_default_at_the_emulator() -> None:
    connection = json.loads(demo.emulator_connection("http://127.0.0.1:5555"))
    assert connection == {
        "conn_type": "aws",
        "extra": {"endpoint_url": "http://127.0.0.1:5555", "region_name": "us-east-1"},
    }
    env = demo.airflow_environment(Path("/tmp/h"), "http://127.0.0.1:5555", poll_seconds=1)
    assert env["AIRFLOW_CONN_AWS_DEFAULT"] == demo.emulator_connection("http://127.0.0.1:5555")
    assert env["AIRFLOW_HOME"] == "/tmp/h"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "sqlite:////tmp/h/airflow.db"
    # Nothing from the caller's Airflow setup leaks into the demo's.
    assert not [key for key in env if key.startswith("AIRFLOW__CORE__UNIT")]


def _result(**overrides: object) -> demo.DemoResult:
    result = demo.DemoResult(
        dag_id=demo.DAG_ID,
        run_id="manual__x",
        dag_run_state="success",
        task_states=dict.fromkeys(demo.TASK_ORDER, "success"),
        trained_model_arn="arn:model",
        trained_model_status="ACTIVE",
        inference_job_arn="arn:job",
        inference_job_status="ACTIVE",
        exit_code=0,
    )
    for name, value in overrides.items():
        setattr(result, name, value)
    return result


def test_report_of_a_successful_run() -> None:
    report = demo.format_report(_result())
    assert _result().succeeded
    assert "arn:model" in report and "arn:job" in report
    assert report.count("success") >= len(demo.TASK_ORDER)
    assert "DEMO SUCCEEDED" in report


@pytest.mark.parametrize(
    "overrides",
    [
        {"exit_code": 1},
        {"dag_run_state": "failed"},
        {"task_states": {**dict.fromkeys(demo.TASK_ORDER, "success"), "wait_inference": "failed"}},
        {"task_states": dict.fromkeys(demo.TASK_ORDER[:2], "success")},
        {"inference_job_status": "CREATE_FAILED", "status_details": {"inference_job": {"statusCode": "X"}}},
        {"trained_model_status": None},
    ],
)
def test_anything_failed_means_a_failed_demo(overrides: dict[str, object]) -> None:
    result = _result(**overrides)
    assert not result.succeeded
    report = demo.format_report(result)
    assert "DEMO FAILED" in report
    if "status_details" in overrides:
        assert '"statusCode": "X"' in report


def test_exits_non_zero_when_it_cannot_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--airflow-home", str(tmp_path), "--dags-dir", str(tmp_path / "nowhere")]) == 1
    assert "no example DAG files" in capsys.readouterr().err

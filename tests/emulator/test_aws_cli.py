"""
The real AWS CLI (``awscli`` v1 from PyPI) against the emulator.

The CLI lives in its own virtual environment (``.venv-awscli`` in the repository root, git-ignored,
built on first use and reused after), so its botocore never meets the project's pinned one. The
seed page's ``start-trained-model-inference-job`` runs with every option, then ``get-``, ``list-``
and ``cancel-trained-model-inference-job``; the test checks what the CLI prints and what the
emulator received.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from airflow_cleanrooms.service_model import service_model

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("CLEANROOMS_AWSCLI_VENV", ROOT / ".venv-awscli"))
ACCOUNT = "123456789012"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def aws_cli() -> Path:
    """The ``aws`` executable of the cached CLI environment, built (under a lock) if missing."""
    aws = VENV / "bin" / "aws"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f"{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if aws.exists():
            return aws
        shutil.rmtree(VENV, ignore_errors=True)
        uv = Path(sys.executable).parent / "uv"
        try:
            if uv.exists():
                subprocess.run([str(uv), "venv", "-q", str(VENV), "--python", sys.executable], check=True)
                install = [
                    str(uv),
                    "pip",
                    "install",
                    "-q",
                    "--python",
                    str(VENV / "bin" / "python"),
                    "awscli",
                ]
            else:
                subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
                install = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "awscli"]
            subprocess.run(install, check=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            shutil.rmtree(VENV, ignore_errors=True)
            pytest.skip(f"could not install awscli from PyPI: {error}")
    return aws


@pytest.fixture(scope="module")
def aws() -> Path:
    return aws_cli()


@pytest.fixture
def run_aws(aws: Path, cleanrooms_emulator: EmulatorHandle, tmp_path: Path) -> Any:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    def run(*args: str, check: bool = True, endpoint: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(aws), "cleanroomsml", *args]
        if endpoint:
            command += ["--endpoint-url", cleanrooms_emulator.url]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args[:1])} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


def cli_input_members(aws: Path, operation: str) -> set[str]:
    """Input members the installed CLI's own botocore model has for ``operation`` (from its files)."""
    venv = aws.parent.parent
    files = sorted(venv.glob("lib/python*/site-packages/**/botocore/data/cleanroomsml/*/service-2.json*"))
    assert files, f"no cleanroomsml model in {venv}"
    raw = files[-1].read_bytes()
    model = json.loads(gzip.decompress(raw) if files[-1].suffix == ".gz" else raw)
    input_shape = model["operations"][operation]["input"]["shape"]
    return set(model["shapes"][input_shape]["members"])


def test_cli_knows_every_member_of_our_model(aws: Path) -> None:
    """Which members the installed awscli's model lacks (the main test sends what the CLI has)."""
    ours = set(service_model().operation_model("StartTrainedModelInferenceJob").input_shape.members)
    theirs = cli_input_members(aws, "StartTrainedModelInferenceJob")
    assert theirs <= ours
    if ours - theirs:
        pytest.skip(f"awscli's model predates {sorted(ours - theirs)}; the CLI test leaves them out")


def test_seed_page_command_with_every_option(
    cleanrooms_emulator: EmulatorHandle, aws: Path, run_aws: Any, tmp_path: Path
) -> None:
    control = cleanrooms_emulator.control
    membership = "7d3f6a54-9b1c-4e2f-8a7d-0c1b2a3d4e5f"
    seed = control.seed_membership(membership, trained_model=True)
    control.set_timings(pending_seconds=600, cancel_seconds=600)

    # 1. Every option of the seed page (and any newer one the CLI knows) on the command line, in
    #    shorthand and JSON syntax, with the global options that shape the call.
    known = cli_input_members(aws, "StartTrainedModelInferenceJob")
    output_configuration = {"accept": "text/csv", "members": [{"accountId": ACCOUNT}]}
    # member: (flag, value on the command line, value the service must receive)
    options: dict[str, tuple[str, str, Any]] = {
        "membershipIdentifier": ("--membership-identifier", membership, membership),
        "name": ("--name", "cli-scoring", "cli-scoring"),
        "trainedModelArn": ("--trained-model-arn", seed["trained_model_arn"], seed["trained_model_arn"]),
        "trainedModelVersionIdentifier": (
            "--trained-model-version-identifier",
            seed["trained_model_version_identifier"],
            seed["trained_model_version_identifier"],
        ),
        "configuredModelAlgorithmAssociationArn": (
            "--configured-model-algorithm-association-arn",
            seed["configured_model_algorithm_association_arn"],
            seed["configured_model_algorithm_association_arn"],
        ),
        "resourceConfig": (
            "--resource-config",
            "instanceType=ml.m5.xlarge,instanceCount=2",
            {"instanceType": "ml.m5.xlarge", "instanceCount": 2},
        ),
        "outputConfiguration": (
            "--output-configuration",
            json.dumps(output_configuration),
            output_configuration,
        ),
        "dataSource": (
            "--data-source",
            f"mlInputChannelArn={seed['ml_input_channel_arn']}",
            {"mlInputChannelArn": seed["ml_input_channel_arn"]},
        ),
        "description": ("--description", "scored by the CLI", "scored by the CLI"),
        "containerExecutionParameters": (
            "--container-execution-parameters",
            "maxPayloadInMB=12",
            {"maxPayloadInMB": 12},
        ),
        "environment": ("--environment", "MODE=batch,RUN_ID=cli-1", {"MODE": "batch", "RUN_ID": "cli-1"}),
        "kmsKeyArn": ("--kms-key-arn", KMS, KMS),
        "tags": ("--tags", "team=ads,source=cli", {"team": "ads", "source": "cli"}),
        "mlModelInferencePayerAccountId": ("--ml-model-inference-payer-account-id", ACCOUNT, ACCOUNT),
    }
    seed_page = set(options) - {"trainedModelVersionIdentifier", "mlModelInferencePayerAccountId"}
    assert seed_page <= known, "the CLI must know every option of the seed page"
    assert known <= set(options), f"members this test does not cover yet: {known - set(options)}"
    arguments = [part for member in sorted(known) for part in options[member][:2]]
    started = run_aws(
        "start-trained-model-inference-job",
        *arguments,
        "--region", "us-east-1",
        "--output", "json",
        "--cli-read-timeout", "30",
        "--cli-connect-timeout", "10",
    )  # fmt: skip
    arn = json.loads(started.stdout)["trainedModelInferenceJobArn"]
    assert re.fullmatch(service_model().shape_for("TrainedModelInferenceJobArn").metadata["pattern"], arn)
    (received,) = control.requests("StartTrainedModelInferenceJob")
    assert received["params"] == {member: options[member][2] for member in known}

    # 2. --cli-input-json (from a file), with --name on the command line overriding the JSON's.
    request = {k: v for k, v in received["params"].items() if k != "trainedModelVersionIdentifier"}
    request["name"] = "from-json"
    input_file = tmp_path / "start.json"
    input_file.write_text(json.dumps(request))
    started = run_aws(
        "start-trained-model-inference-job",
        "--cli-input-json", f"file://{input_file}",
        "--name", "from-flag",
        "--query", "trainedModelInferenceJobArn",
        "--output", "text",
    )  # fmt: skip
    second_arn = started.stdout.strip()
    assert second_arn.startswith(f"arn:aws:cleanrooms-ml:us-east-1:{ACCOUNT}:membership/{membership}/")
    second_call = control.requests("StartTrainedModelInferenceJob")[-1]["params"]
    assert second_call == {**request, "name": "from-flag"}

    # 3. get: the CLI prints the job, timestamps as ISO 8601.
    got = json.loads(
        run_aws(
            "get-trained-model-inference-job",
            "--membership-identifier", membership,
            "--trained-model-inference-job-arn", arn,
        ).stdout
    )  # fmt: skip
    assert got["status"] == "CREATE_PENDING"
    assert got["name"] == "cli-scoring"
    assert got["environment"] == {"MODE": "batch", "RUN_ID": "cli-1"}
    assert got["tags"] == {"team": "ads", "source": "cli"}
    assert datetime.fromisoformat(got["createTime"]).tzinfo is not None

    # 4. list: all of them; a page of one (--max-items) comes with a NextToken.
    listed = json.loads(
        run_aws("list-trained-model-inference-jobs", "--membership-identifier", membership).stdout
    )
    assert {j["trainedModelInferenceJobArn"] for j in listed["trainedModelInferenceJobs"]} == {
        arn,
        second_arn,
    }
    page = json.loads(
        run_aws(
            "list-trained-model-inference-jobs", "--membership-identifier", membership, "--max-items", "1"
        ).stdout
    )
    assert len(page["trainedModelInferenceJobs"]) == 1 and "NextToken" in page

    # 5. cancel: the CLI prints nothing; the job moves to CANCEL_PENDING.
    cancelled = run_aws(
        "cancel-trained-model-inference-job",
        "--membership-identifier", membership,
        "--trained-model-inference-job-arn", arn,
    )  # fmt: skip
    assert cancelled.stdout.strip() == ""
    (cancel_call,) = control.requests("CancelTrainedModelInferenceJob")
    assert cancel_call["params"] == {"membershipIdentifier": membership, "trainedModelInferenceJobArn": arn}
    job = cleanrooms_emulator.client().get_trained_model_inference_job(
        membershipIdentifier=membership, trainedModelInferenceJobArn=arn
    )
    assert job["status"] == "CANCEL_PENDING"


def test_cli_prints_service_errors(cleanrooms_emulator: EmulatorHandle, run_aws: Any) -> None:
    membership = "7d3f6a54-9b1c-4e2f-8a7d-0c1b2a3d4e5f"
    unsigned = run_aws(
        "list-trained-models", "--membership-identifier", membership, "--no-sign-request", check=False
    )
    assert unsigned.returncode != 0
    expected = "An error occurred (AccessDeniedException) when calling the ListTrainedModels operation"
    assert expected in unsigned.stderr

"""
The emulator's AWS limits, through unmodified boto3: job quotas (402), request rates (429), STS
credentials that expire (403), their switches (flags, environment, control, marker) and the stats.

Clocks are controlled, never slept on: jobs are held in flight by long phase timings and finished
by advancing the emulator's clock (which also refills request-rate buckets and expires tokens).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from airflow_cleanrooms.emulator.__main__ import build_parser, limits_from
from airflow_cleanrooms.emulator.control import EmulatorControlError
from airflow_cleanrooms.emulator.limits import Limits
from airflow_cleanrooms.emulator.pytest_plugin import connection_json, connection_uri_env
from airflow_cleanrooms.emulator.quotas import JOB_QUOTAS
from airflow_cleanrooms.emulator.sts import sts_model

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle

ACCOUNT = "123456789012"  # the emulator's default account (access key "testing")
OTHER_ACCOUNT = "210987654321"
ROLE_ARN = f"arn:aws:iam::{OTHER_ACCOUNT}:role/airflow-cleanrooms"
NO_RETRIES = Config(retries={"total_max_attempts": 1})
INFERENCE = JOB_QUOTAS["trained-model-inference-job"]
TRAINING = JOB_QUOTAS["trained-model"]


def boto(handle: EmulatorHandle, service: str = "cleanroomsml", **credentials: str) -> Any:
    keys = credentials or {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client(
        service, endpoint_url=handle.url, region_name=handle.region, config=NO_RETRIES, **keys
    )


def session_keys(credentials: dict[str, Any]) -> dict[str, str]:
    return {
        "aws_access_key_id": credentials["AccessKeyId"],
        "aws_secret_access_key": credentials["SecretAccessKey"],
        "aws_session_token": credentials["SessionToken"],
    }


def inference_request(seed: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "membershipIdentifier": seed["membership_id"],
        "name": name,
        "trainedModelArn": seed["trained_model_arn"],
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "outputConfiguration": {"accept": "text/csv", "members": [{"accountId": ACCOUNT}]},
        "dataSource": {"mlInputChannelArn": seed["ml_input_channel_arn"]},
    }


def training_request(seed: dict[str, str], name: str) -> dict[str, Any]:
    return {
        "membershipIdentifier": seed["membership_id"],
        "name": name,
        "configuredModelAlgorithmAssociationArn": seed["configured_model_algorithm_association_arn"],
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "volumeSizeInGB": 1},
        "dataChannels": [{"mlInputChannelArn": seed["ml_input_channel_arn"], "channelName": "train"}],
    }


@pytest.fixture
def held(cleanrooms_emulator: EmulatorHandle) -> EmulatorHandle:
    """Jobs started from now on stay pending/in progress until the clock is advanced 200 s."""
    cleanrooms_emulator.control.set_timings(pending_seconds=100, running_seconds=100, training_seconds=100)
    return cleanrooms_emulator


def seed(handle: EmulatorHandle) -> dict[str, str]:
    return handle.control.seed_membership(str(uuid.uuid4()), trained_model=True)


def quota_error(excinfo: pytest.ExceptionInfo[Any]) -> tuple[int, str, float, str]:
    response = excinfo.value.response
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["quotaName"],
        response["quotaValue"],
        response["Error"]["Message"],
    )


# -- defaults ----------------------------------------------------------------------------------------


def test_the_fixture_is_as_strict_as_aws_by_default(cleanrooms_emulator: EmulatorHandle) -> None:
    assert cleanrooms_emulator.control.limits() == Limits().as_dict()
    assert Limits().as_dict() == {
        "inference_jobs_per_membership": 5,
        "inference_jobs_per_account": 10,
        "training_jobs_per_membership": 5,
        "training_jobs_per_account": 10,
        "request_rate": 5.0,
        "request_burst": 5,
        "credential_seconds": None,
        "token_expiry": True,
    }


def test_the_quota_error_carries_the_models_members() -> None:
    from airflow_cleanrooms.service_model import service_model

    shape = service_model().shape_for("ServiceQuotaExceededException")
    assert {"message", "quotaName", "quotaValue"} <= set(shape.members)
    assert shape.metadata["error"]["httpStatusCode"] == 402


# -- job quotas --------------------------------------------------------------------------------------


@pytest.mark.emulator_limits(request_rate="off", reason="starts jobs back to back; the quota is under test")
def test_sixth_inference_job_in_a_membership_is_refused(held: EmulatorHandle) -> None:
    client, membership = boto(held), seed(held)
    for index in range(5):
        client.start_trained_model_inference_job(**inference_request(membership, f"job-{index}"))
    with pytest.raises(client.exceptions.ServiceQuotaExceededException) as excinfo:
        client.start_trained_model_inference_job(**inference_request(membership, "job-5"))
    status, name, value, message = quota_error(excinfo)
    assert (status, name, value) == (402, INFERENCE.membership_quota_name, 5.0)
    assert name in message
    # Refused: no sixth job exists, and the refusal is logged as a quota refusal.
    listed = client.list_trained_model_inference_jobs(membershipIdentifier=membership["membership_id"])
    assert len(listed["trainedModelInferenceJobs"]) == 5
    refused = held.control.requests("StartTrainedModelInferenceJob")[-1]
    assert (refused["status"], refused["error"], refused["limit"]) == (
        402,
        "ServiceQuotaExceededException",
        "quota",
    )


@pytest.mark.emulator_limits(request_rate="off", reason="starts jobs back to back; the quota is under test")
def test_eleventh_inference_job_across_two_memberships_of_one_account_is_refused(
    held: EmulatorHandle,
) -> None:
    client, first, second = boto(held), seed(held), seed(held)
    for index in range(5):
        client.start_trained_model_inference_job(**inference_request(first, f"a-{index}"))
        client.start_trained_model_inference_job(**inference_request(second, f"b-{index}"))
    third = seed(held)  # a membership with room, in the same account
    with pytest.raises(client.exceptions.ServiceQuotaExceededException) as excinfo:
        client.start_trained_model_inference_job(**inference_request(third, "c-0"))
    assert quota_error(excinfo)[:3] == (402, INFERENCE.account_quota_name, 10.0)
    # Another account has its own quota.
    other = boto(held, aws_access_key_id=OTHER_ACCOUNT, aws_secret_access_key="testing")
    arn = other.start_trained_model_inference_job(**inference_request(third, "c-0"))[
        "trainedModelInferenceJobArn"
    ]
    assert arn.split(":")[4] == OTHER_ACCOUNT


@pytest.mark.emulator_limits(request_rate="off", reason="starts jobs back to back; the quota is under test")
def test_a_finished_inference_job_frees_its_slot(held: EmulatorHandle) -> None:
    client, membership = boto(held), seed(held)
    arns = [
        client.start_trained_model_inference_job(**inference_request(membership, f"job-{index}"))[
            "trainedModelInferenceJobArn"
        ]
        for index in range(5)
    ]
    with pytest.raises(client.exceptions.ServiceQuotaExceededException):
        client.start_trained_model_inference_job(**inference_request(membership, "late"))
    held.control.force_status(arns[0], "ACTIVE")  # one job ends
    client.start_trained_model_inference_job(**inference_request(membership, "late"))
    with pytest.raises(client.exceptions.ServiceQuotaExceededException):
        client.start_trained_model_inference_job(**inference_request(membership, "later"))
    held.control.advance_clock(200)  # every job ends
    for index in range(5):
        client.start_trained_model_inference_job(**inference_request(membership, f"next-{index}"))


@pytest.mark.emulator_limits(
    request_rate="off", reason="creates models back to back; the quota is under test"
)
def test_training_quotas_per_membership_and_account(held: EmulatorHandle) -> None:
    client, first, second = boto(held), seed(held), seed(held)  # each seed holds one ACTIVE model
    for index in range(5):
        client.create_trained_model(**training_request(first, f"a-{index}"))
    with pytest.raises(client.exceptions.ServiceQuotaExceededException) as excinfo:
        client.create_trained_model(**training_request(first, "a-5"))
    assert quota_error(excinfo)[:3] == (402, TRAINING.membership_quota_name, 5.0)
    for index in range(5):
        client.create_trained_model(**training_request(second, f"b-{index}"))
    with pytest.raises(client.exceptions.ServiceQuotaExceededException) as excinfo:
        client.create_trained_model(**training_request(seed(held), "c-0"))
    assert quota_error(excinfo)[:3] == (402, TRAINING.account_quota_name, 10.0)
    held.control.advance_clock(200)  # training ends: the slots are free
    client.create_trained_model(**training_request(first, "a-5"))


@pytest.mark.emulator_limits(request_rate="off", reason="starts jobs back to back; the quota is under test")
def test_a_quota_of_zero_refuses_every_start_and_off_refuses_none(held: EmulatorHandle) -> None:
    client, membership = boto(held), seed(held)
    held.control.set_limits(inference_jobs_per_account=0)
    with pytest.raises(client.exceptions.ServiceQuotaExceededException) as excinfo:
        client.start_trained_model_inference_job(**inference_request(membership, "none"))
    assert quota_error(excinfo)[:3] == (402, INFERENCE.account_quota_name, 0.0)
    held.control.set_limits(inference_jobs_per_membership=None, inference_jobs_per_account="off")
    for index in range(7):
        client.start_trained_model_inference_job(**inference_request(membership, f"job-{index}"))
    assert held.control.max_running_inference_jobs(membership["membership_id"]) == 7


def test_a_bad_limit_changes_nothing(cleanrooms_emulator: EmulatorHandle) -> None:
    before = cleanrooms_emulator.control.limits()
    for bad in ({"inference_jobs_per_membership": -1}, {"request_rate": "fast"}, {"quota": 3}):
        with pytest.raises(EmulatorControlError) as excinfo:
            cleanrooms_emulator.control.set_limits(request_burst=9, **bad)
        assert excinfo.value.status == 400
    assert cleanrooms_emulator.control.limits() == before


# -- stats -------------------------------------------------------------------------------------------


@pytest.mark.emulator_limits(request_rate="off", reason="starts jobs back to back; the stats are under test")
def test_stats_report_the_most_jobs_running_at_once(held: EmulatorHandle) -> None:
    client, first, second = boto(held), seed(held), seed(held)
    for index in range(3):
        client.start_trained_model_inference_job(**inference_request(first, f"a-{index}"))
    for index in range(2):
        client.start_trained_model_inference_job(**inference_request(second, f"b-{index}"))
    held.control.advance_clock(200)  # all five end
    client.start_trained_model_inference_job(**inference_request(first, "a-late"))
    client.create_trained_model(**training_request(second, "model"))
    stats = held.control.stats()
    jobs = stats.inference_jobs
    assert jobs.max_running_per_membership == {first["membership_id"]: 3, second["membership_id"]: 2}
    assert jobs.max_running_per_account == {ACCOUNT: 5}
    assert jobs.running_per_membership == {first["membership_id"]: 1}
    assert jobs.running_per_account == {ACCOUNT: 1}
    assert held.control.max_running_inference_jobs(account_id=ACCOUNT) == 5
    # Seeded models are forced ACTIVE at once; each was pending for an instant, so it counts 1.
    assert held.control.max_running_trained_models(second["membership_id"]) == 1
    assert stats.trained_models.running_per_membership == {second["membership_id"]: 1}
    assert stats.requests_by_operation["StartTrainedModelInferenceJob"] == 6
    assert stats.throttled_total == 0
    held.control.reset()
    assert held.control.stats().inference_jobs.max_running_per_account == {}


# -- request rates -----------------------------------------------------------------------------------


def test_a_burst_above_the_rate_is_throttled_and_admitted_after_a_refill(
    cleanrooms_emulator: EmulatorHandle,
) -> None:
    control = cleanrooms_emulator.control
    client, membership = boto(cleanrooms_emulator), seed(cleanrooms_emulator)["membership_id"]
    outcomes = []
    for _ in range(8):
        try:
            client.list_trained_models(membershipIdentifier=membership)
            outcomes.append("ok")
        except client.exceptions.ThrottlingException as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            outcomes.append("throttled")
    # A full bucket admits the burst (5); the calls right after find it empty (unless the machine
    # was slow enough for the bucket to refill a token in between: then at most that many more).
    assert outcomes[:5] == ["ok"] * 5
    assert outcomes.count("throttled") >= 1
    throttled = outcomes.count("throttled")
    assert control.throttled_count("ListTrainedModels") == throttled
    assert control.throttled_count() == throttled
    assert control.stats().requests_by_operation["ListTrainedModels"] == 8
    logged = [r for r in control.requests("ListTrainedModels") if r["limit"] == "rate"]
    assert len(logged) == throttled and {r["error"] for r in logged} == {"ThrottlingException"}
    # Other operations and other accounts have their own buckets; control calls are never limited.
    client.list_trained_model_inference_jobs(membershipIdentifier=membership)
    other = boto(cleanrooms_emulator, aws_access_key_id=OTHER_ACCOUNT, aws_secret_access_key="testing")
    other.list_trained_models(membershipIdentifier=membership)
    for _ in range(20):
        control.health()
    # One second later (on the emulator's clock) the bucket holds five tokens again.
    control.advance_clock(1)
    for _ in range(5):
        client.list_trained_models(membershipIdentifier=membership)
    assert control.throttled_count("ListTrainedModels") == throttled


def test_the_request_rate_and_burst_are_settable(cleanrooms_emulator: EmulatorHandle) -> None:
    control = cleanrooms_emulator.control
    client, membership = boto(cleanrooms_emulator), seed(cleanrooms_emulator)["membership_id"]
    control.set_limits(request_rate=0.001, request_burst=2)
    client.list_trained_models(membershipIdentifier=membership)
    client.list_trained_models(membershipIdentifier=membership)
    with pytest.raises(client.exceptions.ThrottlingException):
        client.list_trained_models(membershipIdentifier=membership)
    control.set_limits(request_rate="off")
    for _ in range(10):
        client.list_trained_models(membershipIdentifier=membership)
    assert control.throttled_count() == 1


# -- STS and expiring credentials --------------------------------------------------------------------


def emulator_time(handle: EmulatorHandle) -> float:
    return datetime.now(timezone.utc).timestamp() + float(handle.control.health()["clockOffset"])


def test_assume_role_mints_credentials_of_the_set_lifetime(cleanrooms_emulator: EmulatorHandle) -> None:
    sts = boto(cleanrooms_emulator, "sts")
    lifetimes = {}
    for kwargs in ({}, {"DurationSeconds": 900}, {"DurationSeconds": 43200}):
        before = emulator_time(cleanrooms_emulator)
        answer = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="airflow", **kwargs)
        lifetimes[kwargs.get("DurationSeconds")] = answer["Credentials"]["Expiration"].timestamp() - before
        assert (
            answer["AssumedRoleUser"]["Arn"]
            == f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/airflow-cleanrooms/airflow"
        )
    assert lifetimes[None] == pytest.approx(3600, abs=5)  # AWS's default without DurationSeconds
    assert lifetimes[900] == pytest.approx(900, abs=5)
    assert lifetimes[43200] == pytest.approx(43200, abs=5)
    cleanrooms_emulator.control.set_limits(credential_seconds=20)
    answer = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="airflow", DurationSeconds=3600)
    lifetime = answer["Credentials"]["Expiration"].timestamp() - emulator_time(cleanrooms_emulator)
    assert lifetime == pytest.approx(20, abs=5)


def test_duration_seconds_outside_the_models_range_is_refused(cleanrooms_emulator: EmulatorHandle) -> None:
    low, high = (sts_model().shape_for("roleDurationSecondsType").metadata[k] for k in ("min", "max"))
    assert (low, high) == (900, 43200)
    sts = boto3.client(
        "sts",
        endpoint_url=cleanrooms_emulator.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}),
    )
    for seconds in (low - 1, high + 1):
        with pytest.raises(sts.exceptions.ClientError) as excinfo:
            sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="airflow", DurationSeconds=seconds)
        assert excinfo.value.response["Error"]["Code"] == "ValidationError"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_get_caller_identity_names_the_role_or_the_keys_account(cleanrooms_emulator: EmulatorHandle) -> None:
    sts = boto(cleanrooms_emulator, "sts")
    plain = sts.get_caller_identity()
    assert (plain["Account"], plain["Arn"]) == (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:user/testing")
    credentials = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="airflow")["Credentials"]
    assumed = boto(cleanrooms_emulator, "sts", **session_keys(credentials)).get_caller_identity()
    assert assumed["Account"] == OTHER_ACCOUNT
    assert assumed["Arn"] == f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/airflow-cleanrooms/airflow"
    assert assumed["UserId"].startswith("AROA") and assumed["UserId"].endswith(":airflow")
    # Jobs started with the role's credentials belong to the role's account.
    membership = seed(cleanrooms_emulator)
    client = boto(cleanrooms_emulator, **session_keys(credentials))
    arn = client.start_trained_model_inference_job(**inference_request(membership, "as-role"))[
        "trainedModelInferenceJobArn"
    ]
    assert arn.split(":")[4] == OTHER_ACCOUNT
    assert [r["operation"] for r in cleanrooms_emulator.control.requests()][:3] == [
        "GetCallerIdentity",
        "AssumeRole",
        "GetCallerIdentity",
    ]


def test_a_request_with_an_expired_session_token_is_refused(cleanrooms_emulator: EmulatorHandle) -> None:
    control = cleanrooms_emulator.control
    control.set_limits(credential_seconds=30)
    membership = seed(cleanrooms_emulator)["membership_id"]
    credentials = boto(cleanrooms_emulator, "sts").assume_role(RoleArn=ROLE_ARN, RoleSessionName="airflow")[
        "Credentials"
    ]
    client = boto(cleanrooms_emulator, **session_keys(credentials))
    sts = boto(cleanrooms_emulator, "sts", **session_keys(credentials))
    client.list_trained_models(membershipIdentifier=membership)
    control.advance_clock(31)
    with pytest.raises(client.exceptions.ClientError) as excinfo:
        client.list_trained_models(membershipIdentifier=membership)
    response = excinfo.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ExpiredTokenException",
        403,
    )
    assert response["Error"]["Message"] == "The security token included in the request is expired"
    with pytest.raises(sts.exceptions.ClientError) as excinfo:
        sts.get_caller_identity()
    assert (
        excinfo.value.response["Error"]["Code"],
        excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"],
    ) == (
        "ExpiredToken",
        403,
    )
    # Long-term keys never expire; fresh credentials work again.
    boto(cleanrooms_emulator).list_trained_models(membershipIdentifier=membership)
    fresh = boto(cleanrooms_emulator, "sts").assume_role(RoleArn=ROLE_ARN, RoleSessionName="airflow")
    boto(cleanrooms_emulator, **session_keys(fresh["Credentials"])).list_trained_models(
        membershipIdentifier=membership
    )
    # With token expiry off the old credentials are accepted again.
    control.set_limits(token_expiry=False)
    client.list_trained_models(membershipIdentifier=membership)
    assert [r["limit"] for r in control.requests("ListTrainedModels")].count("token") == 1


def test_a_role_arn_connection_assumes_the_role_through_the_emulators_sts(
    cleanrooms_emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    conn_id = "cleanrooms_emulator_role"
    monkeypatch.setenv(
        connection_uri_env(conn_id),
        connection_json(
            cleanrooms_emulator.url, role_arn=ROLE_ARN, assume_role_kwargs={"DurationSeconds": 900}
        ),
    )
    extra = json.loads(os.environ[connection_uri_env(conn_id)])["extra"]
    assert extra["service_config"] == {"sts": {"endpoint_url": cleanrooms_emulator.url}}
    identity = AwsBaseHook(aws_conn_id=conn_id, client_type="sts").conn.get_caller_identity()
    assert identity["Arn"].startswith(f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/airflow-cleanrooms/")
    assumed = cleanrooms_emulator.control.requests("AssumeRole")
    # botocore refreshes credentials with under 15 minutes left (its advisory refresh), so a 900 s
    # credential is assumed again on first use: the provider calls AssumeRole more than once here.
    assert assumed and {r["params"]["DurationSeconds"] for r in assumed} == {900}


# -- switching limits off ----------------------------------------------------------------------------


@pytest.mark.emulator_limits("off", reason="the marker under test")
def test_the_marker_switches_every_limit_off(held: EmulatorHandle) -> None:
    assert held.control.limits() == Limits.off().as_dict()
    client, membership = boto(held), seed(held)
    for index in range(12):
        client.start_trained_model_inference_job(**inference_request(membership, f"job-{index}"))
    assert held.control.stats().throttled_total == 0


FLAG_CASES = [
    (["--inference-jobs-per-membership", "off"], "inference_jobs_per_membership", None),
    (["--inference-jobs-per-account", "0"], "inference_jobs_per_account", 0),
    (["--training-jobs-per-membership", "none"], "training_jobs_per_membership", None),
    (["--training-jobs-per-account", "20"], "training_jobs_per_account", 20),
    (["--request-rate", "off"], "request_rate", None),
    (["--request-burst", "9"], "request_burst", 9),
    (["--credential-seconds", "20"], "credential_seconds", 20.0),
    (["--token-expiry", "off"], "token_expiry", False),
]


@pytest.mark.parametrize(("argv", "field", "value"), FLAG_CASES)
def test_each_limit_is_set_by_flag_and_by_environment(
    argv: list[str], field: str, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert getattr(limits_from(build_parser().parse_args(argv)), field) == value
    env = "CLEANROOMS_EMULATOR_" + argv[0][2:].replace("-", "_").upper()
    monkeypatch.setenv(env, argv[1])
    assert getattr(limits_from(build_parser().parse_args([])), field) == value
    # Everything else stays at AWS's default.
    others = {k: v for k, v in limits_from(build_parser().parse_args([])).as_dict().items() if k != field}
    assert others == {k: v for k, v in Limits().as_dict().items() if k != field}


def test_no_limits_by_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert limits_from(build_parser().parse_args(["--no-limits"])) == Limits.off()
    monkeypatch.setenv("CLEANROOMS_EMULATOR_NO_LIMITS", "1")
    assert limits_from(build_parser().parse_args([])) == Limits.off()
    # A limit flag given as well still sets that limit.
    both = limits_from(build_parser().parse_args(["--request-rate", "2"]))
    assert (both.request_rate, both.inference_jobs_per_membership) == (2.0, None)


def test_a_bad_limit_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from airflow_cleanrooms.emulator.__main__ import main

    with pytest.raises(SystemExit) as excinfo:
        main(["--inference-jobs-per-membership", "lots"])
    assert excinfo.value.code == 2
    assert "--inference-jobs-per-membership" in capsys.readouterr().err


@pytest.mark.slow
def test_limits_off_by_flag_and_by_env_in_a_process(cleanrooms_emulator_process: Any) -> None:
    by_flag = cleanrooms_emulator_process(
        "--inference-jobs-per-membership", "off", "--request-rate", "off", set_connection=False
    )
    by_env = cleanrooms_emulator_process(
        env={
            "CLEANROOMS_EMULATOR_INFERENCE_JOBS_PER_MEMBERSHIP": "2",
            "CLEANROOMS_EMULATOR_REQUEST_RATE": "off",
        },
        set_connection=False,
    )
    assert by_flag.control.limits()["inference_jobs_per_membership"] is None
    assert by_env.control.limits()["inference_jobs_per_membership"] == 2
    for proc, expected_started in ((by_flag, 7), (by_env, 2)):
        proc.control.set_timings(pending_seconds=100, running_seconds=100)
        membership = proc.control.seed_membership(str(uuid.uuid4()), trained_model=True)
        client = boto3.client(
            "cleanroomsml",
            endpoint_url=proc.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=NO_RETRIES,
        )
        started = 0
        for index in range(7):
            try:
                client.start_trained_model_inference_job(**inference_request(membership, f"job-{index}"))
                started += 1
            except client.exceptions.ServiceQuotaExceededException as error:
                assert error.response["quotaValue"] == 2.0
        assert started == expected_started
        assert proc.control.stats().throttled_total == 0


def test_marker_limits_become_process_flags() -> None:
    from airflow_cleanrooms.emulator.pytest_plugin import limit_flags

    assert limit_flags({"off": True}) == ["--no-limits"]
    assert limit_flags({"request_rate": None, "inference_jobs_per_membership": 0, "token_expiry": False}) == [
        "--request-rate",
        "off",
        "--inference-jobs-per-membership",
        "0",
        "--token-expiry",
        "off",
    ]
    flags = limit_flags({"training_jobs_per_account": 3})
    assert limits_from(build_parser().parse_args(flags)).training_jobs_per_account == 3


@pytest.mark.slow
@pytest.mark.emulator_limits(request_rate="off", reason="the marker reaching a process under test")
def test_the_marker_reaches_the_process_fixture(cleanrooms_emulator_process: Any) -> None:
    proc = cleanrooms_emulator_process(set_connection=False)
    limits = proc.control.limits()
    assert limits["request_rate"] is None
    assert limits["inference_jobs_per_membership"] == 5  # the rest stay at AWS's defaults

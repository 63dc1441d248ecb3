"""Each error class boto3 knows, the reference checks, and the faults the control endpoint injects."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import pytest
from botocore import UNSIGNED
from botocore.config import Config

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.pytest_plugin import EmulatorHandle


def error_of(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_validation_exception_lists_every_problem(client: Any, make_inference_request: Any) -> None:
    request = make_inference_request(
        name="",
        resourceConfig={"instanceType": "ml.nope.xlarge", "instanceCount": 99},
        tags={"aws:reserved": "x"},
    )
    with pytest.raises(client.exceptions.ValidationException) as excinfo:
        client.start_trained_model_inference_job(**request)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("5 validation errors detected")  # name: length and pattern
    for fragment in ("name", "instanceType", "instanceCount", "aws:"):
        assert fragment in message


def test_validation_of_uri_and_query_members(client: Any, seeded: dict[str, str]) -> None:
    with pytest.raises(client.exceptions.ValidationException) as excinfo:
        client.list_trained_model_inference_jobs(membershipIdentifier="not-a-uuid", maxResults=1000)
    message = error_of(excinfo)[2]
    assert "membershipIdentifier" in message and "maxResults" in message
    with pytest.raises(client.exceptions.ValidationException):
        client.list_trained_models(membershipIdentifier=seeded["membership_id"], nextToken="garbage")


def test_resource_not_found(client: Any, seeded: dict[str, str], make_inference_request: Any) -> None:
    membership = seeded["membership_id"]
    other_model = seeded["trained_model_arn"].rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
    with pytest.raises(client.exceptions.ResourceNotFoundException) as excinfo:
        client.start_trained_model_inference_job(**make_inference_request(trainedModelArn=other_model))
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)
    other_channel = seeded["ml_input_channel_arn"].rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.start_trained_model_inference_job(
            **make_inference_request(dataSource={"mlInputChannelArn": other_channel})
        )
    # A real job looked up under another membership is not found either.
    arn = client.start_trained_model_inference_job(**make_inference_request())["trainedModelInferenceJobArn"]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_trained_model_inference_job(
            membershipIdentifier=str(uuid.uuid4()), trainedModelInferenceJobArn=arn
        )
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_trained_model(membershipIdentifier=membership, trainedModelArn=other_model)


def test_conflicts(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str], make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    control.force_status(seeded["trained_model_arn"], "CREATE_IN_PROGRESS")
    with pytest.raises(client.exceptions.ConflictException) as excinfo:
        client.start_trained_model_inference_job(**make_inference_request())
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ConflictException", 409)
    assert "CREATE_IN_PROGRESS" in message

    control.force_status(seeded["trained_model_arn"], "ACTIVE")
    control.set_timings(pending_seconds=100)
    client.start_trained_model_inference_job(**make_inference_request(name="daily"))
    # The name is taken while that job is in flight...
    with pytest.raises(client.exceptions.ConflictException):
        client.start_trained_model_inference_job(**make_inference_request(name="daily"))
    # ...and free again once it has finished.
    control.advance_clock(1000)
    client.start_trained_model_inference_job(**make_inference_request(name="daily"))


def test_unsigned_request_is_refused(cleanrooms_emulator: EmulatorHandle, seeded: dict[str, str]) -> None:
    unsigned = cleanrooms_emulator.client(config=Config(signature_version=UNSIGNED))
    with pytest.raises(unsigned.exceptions.AccessDeniedException) as excinfo:
        unsigned.list_trained_models(membershipIdentifier=seeded["membership_id"])
    assert error_of(excinfo)[:2] == ("AccessDeniedException", 403)


def test_arns_follow_the_credential_scope(cleanrooms_emulator: EmulatorHandle, membership: str) -> None:
    client = cleanrooms_emulator.client(region_name="eu-west-2", aws_access_key_id="210987654321")
    arn = client.create_configured_model_algorithm(name="a", roleArn="arn:aws:iam::210987654321:role/r")[
        "configuredModelAlgorithmArn"
    ]
    assert arn.startswith("arn:aws:cleanrooms-ml:eu-west-2:210987654321:configured-model-algorithm/")


def test_unknown_path_is_refused(cleanrooms_emulator: EmulatorHandle) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(f"{cleanrooms_emulator.url}/no/such/path")
    assert excinfo.value.code == 404
    assert excinfo.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_throttling_then_recovery_with_botocore_retries(
    cleanrooms_emulator: EmulatorHandle, seeded: dict[str, str]
) -> None:
    control = cleanrooms_emulator.control
    control.set_faults(throttle_next=2, operations=["ListTrainedModels"])
    retrying = cleanrooms_emulator.client(
        config=Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5)
    )
    # botocore retries the two throttled calls and succeeds on the third.
    retrying.list_trained_models(membershipIdentifier=seeded["membership_id"])
    calls = control.requests("ListTrainedModels")
    assert [(c["status"], c["error"], c["fault"]) for c in calls] == [
        (429, "ThrottlingException", "throttle"),
        (429, "ThrottlingException", "throttle"),
        (200, None, None),
    ]


@pytest.mark.emulator_limits(
    request_rate="off", reason="8 back-to-back calls: only the injected throttles are counted here"
)
def test_throttle_rate_is_an_exact_fraction(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]
) -> None:
    cleanrooms_emulator.control.set_faults(throttle_rate=0.25)
    outcomes = []
    for _ in range(8):
        try:
            client.list_trained_models(membershipIdentifier=seeded["membership_id"])
            outcomes.append("ok")
        except client.exceptions.ThrottlingException:
            outcomes.append("throttled")
    assert outcomes.count("throttled") == 2


def test_internal_error(cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]) -> None:
    cleanrooms_emulator.control.set_faults(error_next=1)
    with pytest.raises(client.exceptions.InternalServiceException) as excinfo:
        client.list_trained_models(membershipIdentifier=seeded["membership_id"])
    assert error_of(excinfo)[:2] == ("InternalServiceException", 500)
    client.list_trained_models(membershipIdentifier=seeded["membership_id"])


def test_dropped_connection(cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]) -> None:
    cleanrooms_emulator.control.set_faults(drop_next=1)
    with pytest.raises(
        (botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError)
    ):
        client.list_trained_models(membershipIdentifier=seeded["membership_id"])
    client.list_trained_models(membershipIdentifier=seeded["membership_id"])
    calls = cleanrooms_emulator.control.requests("ListTrainedModels")
    assert [(c["status"], c["fault"]) for c in calls] == [(0, "drop"), (200, None)]


def test_latency_is_flagged_in_the_request_log(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]
) -> None:
    cleanrooms_emulator.control.set_faults(latency_seconds=0.05, operations=["ListTrainedModels"])
    client.list_trained_models(membershipIdentifier=seeded["membership_id"])
    client.list_ml_input_channels(membershipIdentifier=seeded["membership_id"])
    flags = {c["operation"]: c["fault"] for c in cleanrooms_emulator.control.requests()}
    assert flags == {"ListTrainedModels": "latency", "ListMLInputChannels": None}


@pytest.mark.parametrize("before_start", [True, False])
def test_fail_job_ends_in_create_failed_with_status_details(
    cleanrooms_emulator: EmulatorHandle,
    client: Any,
    seeded: dict[str, str],
    make_inference_request: Any,
    before_start: bool,
) -> None:
    control = cleanrooms_emulator.control
    control.set_timings(pending_seconds=10, running_seconds=10)
    if before_start:
        control.fail_job("doomed", code="AlgorithmError", message="container exited with 137")
    arn = client.start_trained_model_inference_job(**make_inference_request(name="doomed"))[
        "trainedModelInferenceJobArn"
    ]
    healthy = client.start_trained_model_inference_job(**make_inference_request(name="healthy"))[
        "trainedModelInferenceJobArn"
    ]
    if not before_start:
        assert (
            control.fail_job("doomed", code="AlgorithmError", message="container exited with 137")[
                "inFlightChanged"
            ]
            == 1
        )
    key = {"membershipIdentifier": seeded["membership_id"]}
    assert "statusDetails" not in client.get_trained_model_inference_job(
        **key, trainedModelInferenceJobArn=arn
    )
    control.advance_clock(30)
    job = client.get_trained_model_inference_job(**key, trainedModelInferenceJobArn=arn)
    assert job["status"] == "CREATE_FAILED"
    assert job["statusDetails"] == {"statusCode": "AlgorithmError", "message": "container exited with 137"}
    assert (
        client.get_trained_model_inference_job(**key, trainedModelInferenceJobArn=healthy)["status"]
        == "ACTIVE"
    )


def test_fail_trained_model(cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]) -> None:
    cleanrooms_emulator.control.fail_job("bad-model", message="out of memory")
    arn = client.create_trained_model(
        membershipIdentifier=seeded["membership_id"],
        name="bad-model",
        configuredModelAlgorithmAssociationArn=seeded["configured_model_algorithm_association_arn"],
        resourceConfig={"instanceType": "ml.m5.xlarge", "volumeSizeInGB": 1},
        dataChannels=[{"mlInputChannelArn": seeded["ml_input_channel_arn"], "channelName": "train"}],
    )["trainedModelArn"]
    cleanrooms_emulator.control.advance_clock(1000)
    model = client.get_trained_model(membershipIdentifier=seeded["membership_id"], trainedModelArn=arn)
    assert model["status"] == "CREATE_FAILED"
    assert model["statusDetails"]["message"] == "out of memory"


def test_request_log_records_rendered_params(
    cleanrooms_emulator: EmulatorHandle, client: Any, make_inference_request: Any
) -> None:
    control = cleanrooms_emulator.control
    assert control.requests("StartTrainedModelInferenceJob") == []
    client.start_trained_model_inference_job(
        **make_inference_request(name="run-2026", environment={"DATE": "2026-11-28"}, tags={"dag": "d"})
    )
    (call,) = control.requests("StartTrainedModelInferenceJob")
    assert call["params"]["name"] == "run-2026"
    assert call["params"]["environment"] == {"DATE": "2026-11-28"}
    assert call["params"]["tags"] == {"dag": "d"}
    assert call["status"] == 200
    control.clear_requests()
    assert control.requests() == []


def test_reset_restores_startup_settings(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]
) -> None:
    control = cleanrooms_emulator.control
    startup = control.timings()
    control.set_timings(pending_seconds=99)
    control.set_faults(throttle_rate=1.0)
    control.fail_job("x")
    control.reset()
    assert control.timings() == startup
    assert control.faults()["throttle_rate"] == 0
    assert control.health()["clockOffset"] == 0
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_trained_model(
            membershipIdentifier=seeded["membership_id"], trainedModelArn=seeded["trained_model_arn"]
        )


def test_control_rejects_bad_settings(cleanrooms_emulator: EmulatorHandle) -> None:
    from airflow_cleanrooms.emulator.control import EmulatorControlError

    with pytest.raises(EmulatorControlError, match="fraction"):
        cleanrooms_emulator.control.set_faults(throttle_rate=2)
    with pytest.raises(EmulatorControlError, match="unknown timing"):
        cleanrooms_emulator.control._call("PUT", "timings", {"bogus_seconds": 1})
    with pytest.raises(EmulatorControlError) as excinfo:
        cleanrooms_emulator.control.seed_membership("not-a-uuid")
    assert excinfo.value.status == 400


def test_force_status_accepts_only_the_kinds_statuses(
    cleanrooms_emulator: EmulatorHandle, client: Any, seeded: dict[str, str]
) -> None:
    from airflow_cleanrooms.emulator.control import EmulatorControlError

    control = cleanrooms_emulator.control
    with pytest.raises(EmulatorControlError, match="not a status"):
        control.force_status(seeded["trained_model_arn"], "FINISHED")
    control.force_status(
        seeded["trained_model_arn"], "DELETE_FAILED", status_details={"statusCode": "X", "message": "stuck"}
    )
    model = client.get_trained_model(
        membershipIdentifier=seeded["membership_id"], trainedModelArn=seeded["trained_model_arn"]
    )
    assert (model["status"], model["statusDetails"]["message"]) == ("DELETE_FAILED", "stuck")


def test_logs_carry_no_credentials_headers_or_values(
    cleanrooms_emulator: EmulatorHandle,
    seeded: dict[str, str],
    make_inference_request: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret_key = "AKIASECRETSHOULDNOTLOG"
    secret_value = "hunter2-do-not-log"
    client = cleanrooms_emulator.client(
        aws_access_key_id=secret_key,
        aws_secret_access_key="s3cr3t-key-material",
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}),
    )
    cleanrooms_emulator.control.set_faults(throttle_next=1, latency_seconds=0.01)
    with caplog.at_level("DEBUG"):
        with pytest.raises(client.exceptions.ThrottlingException):
            client.start_trained_model_inference_job(
                **make_inference_request(environment={"TOKEN": secret_value})
            )
        client.start_trained_model_inference_job(
            **make_inference_request(environment={"TOKEN": secret_value})
        )
        with pytest.raises(client.exceptions.ValidationException):
            client.start_trained_model_inference_job(
                **make_inference_request(name="other", environment={"TOKEN": secret_value}, kmsKeyArn="bad")
            )
    emulator_lines = [
        r.getMessage() for r in caplog.records if r.name.startswith("airflow_cleanrooms.emulator")
    ]
    assert emulator_lines, "the emulator logs its errors and faults"
    # What the server side logged (the boto3 client in this process logs its own requests at DEBUG).
    server_loggers = ("airflow_cleanrooms", "aiohttp", "asyncio")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(server_loggers))
    for secret in (secret_key, "s3cr3t-key-material", secret_value, "Signature=", "Authorization"):
        assert secret not in logged

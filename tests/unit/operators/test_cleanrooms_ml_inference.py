"""The inference-job operator against botocore's Stubber (the real service model checks each request)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS, AirflowException, TaskDeferred, model_has_member
from airflow_cleanrooms.exceptions import (
    CleanRoomsMLJobFailedError,
    CleanRoomsMLRequestError,
    CleanRoomsMLWaitTimeoutError,
)
from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
from airflow_cleanrooms.service_model import camel_to_snake, input_members
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobCompleteTrigger
from airflow_cleanrooms.wait_semantics import TRAINED_MODEL_INFERENCE_JOB
from tests.unit.unit_support import (
    GET_JOB,
    INFERENCE_ARGS,
    INFERENCE_REQUEST,
    JOB_ARN,
    MEMBERSHIP,
    MODEL_ARN,
    expect_durable_start,
    job_response,
    make_operator,
)

OP = "StartTrainedModelInferenceJob"
FAILURE_STATUSES = sorted(TRAINED_MODEL_INFERENCE_JOB.failure_statuses)
DETAILS = {"statusCode": "ContainerError", "message": "exit code 137"}


def make(**overrides: Any) -> CleanRoomsMLStartTrainedModelInferenceJobOperator:
    return make_operator(
        CleanRoomsMLStartTrainedModelInferenceJobOperator, task_id="start_inference", **overrides
    )


def start_response() -> dict[str, Any]:
    return {"trainedModelInferenceJobArn": JOB_ARN}


class TestArguments:
    def test_every_model_member_is_an_argument_and_a_template_field(self) -> None:
        op = make()
        members = [camel_to_snake(m) for m in input_members(OP)]
        for name in members:
            assert hasattr(op, name), name
            assert name in op.template_fields, name
        assert {"aws_conn_id", "region_name", "verify", "cli_input_json"} <= set(op.template_fields)

    def test_dict_arguments_render_as_json(self) -> None:
        renderers = CleanRoomsMLStartTrainedModelInferenceJobOperator.template_fields_renderers
        for name in ("resource_config", "output_configuration", "data_source", "environment", "tags"):
            assert renderers[name] == "json"
        assert "name" not in renderers

    def test_defaults(self) -> None:
        op = CleanRoomsMLStartTrainedModelInferenceJobOperator(task_id="t", **INFERENCE_ARGS)
        assert op.wait_for_completion is True
        assert op.deferrable is False
        assert op.cancel_on_kill is True
        assert op.aws_conn_id == "aws_default"


class TestSyncExecution:
    def test_starts_waits_and_returns_the_job_arn(self, stub_for, context, ti) -> None:
        op = make(environment={"MODEL_THRESHOLD": "0.7"}, tags={"team": "growth"})
        stubber = stub_for(op)
        expect_durable_start(
            stubber,
            context["ti"],
            {**INFERENCE_REQUEST, "environment": {"MODEL_THRESHOLD": "0.7"}, "tags": {"team": "growth"}},
            start_response(),
        )
        for status in ("CREATE_PENDING", "CREATE_IN_PROGRESS", "ACTIVE"):
            stubber.add_response("get_trained_model_inference_job", job_response(status), GET_JOB)
        assert op.execute(context) == JOB_ARN
        assert ti.xcoms["trained_model_inference_job_arn"] == JOB_ARN
        link = ti.xcoms["cleanrooms_ml_trained_model_inference_job"]
        assert link["region_name"] == "us-east-1"
        assert link["arn"] == JOB_ARN

    def test_logs_each_status_change_with_time_spent(self, stub_for, context, capsys) -> None:
        op = make()
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        for status in ("CREATE_PENDING", "CREATE_PENDING", "CREATE_IN_PROGRESS", "ACTIVE"):
            stubber.add_response("get_trained_model_inference_job", job_response(status), GET_JOB)
        op.execute(context)
        changes = [line for line in capsys.readouterr().out.splitlines() if "of waiting" in line]
        assert len(changes) == 3, changes
        assert "CREATE_IN_PROGRESS (was CREATE_PENDING)" in changes[1]
        assert "ACTIVE (was CREATE_IN_PROGRESS)" in changes[2]

    @pytest.mark.parametrize("status", FAILURE_STATUSES)
    def test_each_failure_status_fails_with_status_details(self, stub_for, context, status) -> None:
        op = make()
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        stubber.add_response("get_trained_model_inference_job", job_response("CREATE_IN_PROGRESS"), GET_JOB)
        stubber.add_response("get_trained_model_inference_job", job_response(status, DETAILS), GET_JOB)
        with pytest.raises(CleanRoomsMLJobFailedError) as raised:
            op.execute(context)
        assert raised.value.status == status
        assert raised.value.status_details == DETAILS
        assert "ContainerError: exit code 137" in str(raised.value)
        assert status in str(raised.value)

    def test_max_attempts_exhausted_cancels_and_fails(self, stub_for, context) -> None:
        op = make(waiter_max_attempts=3)
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        for _ in range(3):
            stubber.add_response(
                "get_trained_model_inference_job", job_response("CREATE_IN_PROGRESS"), GET_JOB
            )
        stubber.add_response("cancel_trained_model_inference_job", {}, GET_JOB)
        with pytest.raises(CleanRoomsMLWaitTimeoutError, match="still CREATE_IN_PROGRESS after 3 checks"):
            op.execute(context)

    def test_max_attempts_exhausted_without_cancel_on_kill(self, stub_for, context) -> None:
        op = make(waiter_max_attempts=2, cancel_on_kill=False)
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        for _ in range(2):
            stubber.add_response("get_trained_model_inference_job", job_response("CREATE_PENDING"), GET_JOB)
        with pytest.raises(CleanRoomsMLWaitTimeoutError):
            op.execute(context)  # no cancel stubbed: a cancel call would fail the Stubber

    def test_no_wait(self, stub_for, context) -> None:
        op = make(wait_for_completion=False)
        expect_durable_start(stub_for(op), context["ti"], INFERENCE_REQUEST, start_response())
        assert op.execute(context) == JOB_ARN

    def test_transient_errors_while_waiting_are_tolerated(self, stub_for, context) -> None:
        op = make()
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        stubber.add_client_error(
            "get_trained_model_inference_job",
            "ThrottlingException",
            "slow down",
            400,
            expected_params=GET_JOB,
        )
        stubber.add_client_error(
            "get_trained_model_inference_job", "InternalServerException", "oops", 500, expected_params=GET_JOB
        )
        stubber.add_response("get_trained_model_inference_job", job_response("ACTIVE"), GET_JOB)
        assert op.execute(context) == JOB_ARN

    def test_not_found_while_waiting_is_raised(self, stub_for, context) -> None:
        op = make()
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        stubber.add_client_error(
            "get_trained_model_inference_job",
            "ResourceNotFoundException",
            "gone",
            404,
            expected_params=GET_JOB,
        )
        with pytest.raises(Exception, match="ResourceNotFoundException"):
            op.execute(context)


class TestCancelOnKill:
    def test_on_kill_cancels_the_started_job(self, stub_for, context) -> None:
        op = make(wait_for_completion=False)
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        op.execute(context)
        stubber.add_response("cancel_trained_model_inference_job", {}, GET_JOB)
        op.on_kill()

    def test_on_kill_respects_opt_out(self, stub_for, context) -> None:
        op = make(wait_for_completion=False, cancel_on_kill=False)
        expect_durable_start(stub_for(op), context["ti"], INFERENCE_REQUEST, start_response())
        op.execute(context)
        op.on_kill()  # a cancel call would hit the Stubber with nothing queued and raise

    def test_on_kill_before_start_does_nothing(self, stub_for) -> None:
        op = make()
        stub_for(op)
        op.on_kill()

    def test_cancel_failure_is_logged_not_raised(self, stub_for, context, capsys) -> None:
        op = make(wait_for_completion=False)
        stubber = stub_for(op)
        expect_durable_start(stubber, context["ti"], INFERENCE_REQUEST, start_response())
        op.execute(context)
        stubber.add_client_error(
            "cancel_trained_model_inference_job",
            "ConflictException",
            "already done",
            409,
            expected_params=GET_JOB,
        )
        op.on_kill()
        assert "Could not cancel trained model inference job" in capsys.readouterr().out


class TestCliInputJson:
    SKELETON = {
        "membershipIdentifier": MEMBERSHIP,
        "name": "from-json",
        "trainedModelArn": MODEL_ARN,
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 2},
        "outputConfiguration": {"members": [{"accountId": "123456789012"}]},
        "dataSource": {"mlInputChannelArn": INFERENCE_REQUEST["dataSource"]["mlInputChannelArn"]},
        "environment": {"A": "1"},
    }

    @pytest.mark.parametrize("as_string", [False, True])
    def test_cli_json_alone_is_a_whole_request(self, stub_for, context, as_string) -> None:
        document: Any = json.dumps(self.SKELETON) if as_string else self.SKELETON
        op = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="t",
            cli_input_json=document,
            aws_conn_id=None,
            region_name="us-east-1",
            wait_for_completion=False,
        )
        expect_durable_start(stub_for(op), context["ti"], self.SKELETON, start_response())
        assert op.execute(context) == JOB_ARN

    def test_explicit_arguments_override_json_members_whole(self, stub_for, context) -> None:
        op = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="t",
            cli_input_json=self.SKELETON,
            name="explicit",
            resource_config={"instanceType": "ml.c5.xlarge"},
            aws_conn_id=None,
            region_name="us-east-1",
            wait_for_completion=False,
        )
        expected = {**self.SKELETON, "name": "explicit", "resourceConfig": {"instanceType": "ml.c5.xlarge"}}
        expect_durable_start(stub_for(op), context["ti"], expected, start_response())
        op.execute(context)

    def test_cli_input_yaml(self, stub_for, context) -> None:
        import yaml

        op = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="t",
            cli_input_yaml=yaml.safe_dump(self.SKELETON),
            name="explicit",
            aws_conn_id=None,
            region_name="us-east-1",
            wait_for_completion=False,
        )
        assert "cli_input_yaml" in op.template_fields
        expect_durable_start(
            stub_for(op), context["ti"], {**self.SKELETON, "name": "explicit"}, start_response()
        )
        op.execute(context)

    def test_yaml_and_json_together_are_refused(self, stub_for, context) -> None:
        op = make(cli_input_json={"name": "a"}, cli_input_yaml="name: b")
        stub_for(op)
        with pytest.raises(
            CleanRoomsMLRequestError, match="cli_input_yaml: may not be given along with cli_input_json"
        ):
            op.execute(context)

    def test_invalid_yaml(self, stub_for, context) -> None:
        op = make(cli_input_yaml="name: [unclosed")
        stub_for(op)
        with pytest.raises(CleanRoomsMLRequestError, match="cli_input_yaml: is not valid YAML"):
            op.execute(context)

    def test_misspelled_json_key_fails_before_any_call(self, stub_for, context) -> None:
        op = make(cli_input_json={"resourceConfg": {}})
        stub_for(op)  # no responses queued: any API call would raise UnStubbedResponseError
        with pytest.raises(
            CleanRoomsMLRequestError, match=r"cli_input_json\.resourceConfg.*did you mean 'resourceConfig'"
        ):
            op.execute(context)

    def test_invalid_json_string(self, stub_for, context) -> None:
        op = make(cli_input_json="{not json")
        stub_for(op)
        with pytest.raises(CleanRoomsMLRequestError, match="cli_input_json: is not valid JSON"):
            op.execute(context)

    def test_problems_in_json_members_name_the_json_path(self, stub_for, context) -> None:
        document = {**self.SKELETON, "resourceConfig": {"instanceType": "ml.nope", "instanceCount": 1}}
        op = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="t", cli_input_json=document, aws_conn_id=None, region_name="us-east-1"
        )
        stub_for(op)
        with pytest.raises(CleanRoomsMLRequestError, match=r"cli_input_json\.resourceConfig\.instanceType"):
            op.execute(context)


class TestValidationBeforeAnyCall:
    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            ({"membership_identifier": "not-a-uuid"}, r"membership_identifier: 'not-a-uuid' does not match"),
            ({"name": ""}, r"name: has 0 characters"),
            (
                {"resource_config": {"instanceType": "ml.m5.xlarge", "instanceCount": 11}},
                r"resource_config\.instanceCount",
            ),
            ({"resource_config": {"instanceType": "ml.m5.xlarg"}}, r"did you mean 'ml\.m5\.xlarge'"),
            ({"resource_config": {"instancetype": "ml.m5.xlarge"}}, r"did you mean 'instanceType'"),
            ({"output_configuration": {"members": []}}, r"output_configuration\.members: has 0 items"),
            ({"tags": {"AWS:team": "x"}}, r"tags\['AWS:team'\] \(key\): must not start with 'aws:'"),
            ({"environment": {f"K{i}": "v" for i in range(17)}}, r"environment: has 17 entries; at most 16"),
            ({"trained_model_arn": None}, r"trained_model_arn: is required"),
            ({"resource_config": "ml.m5.xlarge"}, r"resource_config: rendered to a string, but an object"),
            ({"kms_key_arn": "arn:aws:s3:::bucket"}, r"kms_key_arn"),
        ],
    )
    def test_bad_input_fails_naming_the_argument(self, stub_for, context, overrides, expected) -> None:
        op = make(**overrides)
        stub_for(op)
        with pytest.raises(CleanRoomsMLRequestError, match=expected):
            op.execute(context)

    def test_rendered_json_strings_and_numbers_are_accepted(self, stub_for, context) -> None:
        op = make(
            resource_config='{"instanceType": "ml.m5.xlarge", "instanceCount": "2"}',
            container_execution_parameters={"maxPayloadInMB": "10"},
        )
        expected = {
            **INFERENCE_REQUEST,
            "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 2},
            "containerExecutionParameters": {"maxPayloadInMB": 10},
        }
        expect_durable_start(stub_for(op), context["ti"], expected, start_response())
        op.wait_for_completion = False
        op.execute(context)

    def test_sensitive_environment_values_are_never_echoed(self, stub_for, context) -> None:
        secret = "hunter2-very-secret"
        op = make(environment={"DB_PASSWORD": 12345, "API_TOKEN": secret, "PLAIN": 7})
        stub_for(op)
        with pytest.raises(CleanRoomsMLRequestError) as raised:
            op.execute(context)
        text = str(raised.value)
        assert "12345" not in text
        assert "environment['DB_PASSWORD']: must be a string" in text
        assert "<redacted>" in text
        assert "environment['PLAIN']: must be a string, got int 7" in text

    def test_sensitive_environment_values_are_masked_in_logs(self, stub_for, context, monkeypatch) -> None:
        masked: list[tuple[Any, Any]] = []
        import airflow_cleanrooms.operators.request as request_module

        monkeypatch.setattr(request_module, "mask_secret", lambda value, name: masked.append((name, value)))
        op = make(
            environment={"DB_PASSWORD": "s3cr3t-value", "MODEL_THRESHOLD": "0.7"}, wait_for_completion=False
        )
        expect_durable_start(
            stub_for(op),
            context["ti"],
            {**INFERENCE_REQUEST, "environment": {"DB_PASSWORD": "s3cr3t-value", "MODEL_THRESHOLD": "0.7"}},
            start_response(),
        )
        op.execute(context)
        assert masked == [("DB_PASSWORD", "s3cr3t-value")]

    def test_the_secrets_masker_learns_sensitive_values(self, stub_for, context, capsys) -> None:
        from airflow_cleanrooms.compat import redact

        op = make(
            environment={"API_TOKEN": "tok-98765-abcdef", "MODEL_THRESHOLD": "0.7"}, wait_for_completion=False
        )
        expect_durable_start(
            stub_for(op),
            context["ti"],
            {**INFERENCE_REQUEST, "environment": {"API_TOKEN": "tok-98765-abcdef", "MODEL_THRESHOLD": "0.7"}},
            start_response(),
        )
        op.execute(context)
        assert "tok-98765-abcdef" not in redact("value is tok-98765-abcdef here")
        out = capsys.readouterr().out
        assert '"API_TOKEN": "***"' in out
        assert '"MODEL_THRESHOLD": "0.7"' in out
        assert "tok-98765-abcdef" not in out


class TestDeferrable:
    def test_defers_with_the_job_trigger(self, stub_for, context, ti) -> None:
        op = make(deferrable=True, waiter_delay=7, waiter_max_attempts=9)
        expect_durable_start(stub_for(op), context["ti"], INFERENCE_REQUEST, start_response())
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)
        trigger = deferred.value.trigger
        assert isinstance(trigger, CleanRoomsMLTrainedModelInferenceJobCompleteTrigger)
        assert deferred.value.method_name == "execute_complete"
        _, kwargs = trigger.serialize()
        assert kwargs["membership_identifier"] == MEMBERSHIP
        assert kwargs["trained_model_inference_job_arn"] == JOB_ARN
        assert kwargs["waiter_delay"] == 7
        assert kwargs["waiter_max_attempts"] == 9
        assert kwargs["cancel_on_kill"] is True
        assert ti.xcoms["trained_model_inference_job_arn"] == JOB_ARN
        assert deferred.value.timeout is None

    def test_deferral_carries_the_execution_timeout(self, stub_for, context) -> None:
        from datetime import timedelta

        op = make(deferrable=True, execution_timeout=timedelta(minutes=30))
        expect_durable_start(stub_for(op), context["ti"], INFERENCE_REQUEST, start_response())
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(context)
        assert deferred.value.timeout == timedelta(minutes=30)

    def test_resume_finds_the_membership_in_cli_input_json(self, stub_for, context, ti) -> None:
        document = {
            "membershipIdentifier": MEMBERSHIP,
            "name": "n",
            "trainedModelArn": MODEL_ARN,
            "resourceConfig": {"instanceType": "ml.m5.xlarge"},
            "outputConfiguration": {"members": [{"accountId": "123456789012"}]},
            "dataSource": INFERENCE_REQUEST["dataSource"],
        }
        op = CleanRoomsMLStartTrainedModelInferenceJobOperator(
            task_id="t", cli_input_json=document, aws_conn_id=None, region_name="us-east-1", deferrable=True
        )
        stub_for(op).add_response(
            "get_trained_model_inference_job", job_response("CREATE_FAILED", DETAILS), GET_JOB
        )
        event = {"status": "error", "message": "m", "trained_model_inference_job_arn": JOB_ARN}
        with pytest.raises(CleanRoomsMLJobFailedError):
            op.execute_complete(context, event)

    def test_success_event_returns_the_arn(self, stub_for, context) -> None:
        op = make(deferrable=True)
        stub_for(op)
        event = {"status": "success", "trained_model_inference_job_arn": JOB_ARN}
        assert op.execute_complete(context, event) == JOB_ARN

    def test_rich_error_event_fails_with_status_details(self, stub_for, context) -> None:
        op = make(deferrable=True)
        stub_for(op)
        event = {
            "status": "error",
            "message": "failed",
            "trained_model_inference_job_arn": JOB_ARN,
            "job_status": "CREATE_FAILED",
            "status_details": DETAILS,
        }
        with pytest.raises(CleanRoomsMLJobFailedError, match="CREATE_FAILED: ContainerError: exit code 137"):
            op.execute_complete(context, event)

    def test_plain_error_event_reads_the_status_once(self, stub_for, context) -> None:
        op = make(deferrable=True)
        stub_for(op).add_response(
            "get_trained_model_inference_job", job_response("INACTIVE", DETAILS), GET_JOB
        )
        event = {"status": "error", "message": "Waiter failed", "trained_model_inference_job_arn": JOB_ARN}
        with pytest.raises(CleanRoomsMLJobFailedError) as raised:
            op.execute_complete(context, event)
        assert raised.value.status == "INACTIVE"
        assert raised.value.status_details == DETAILS

    def test_error_event_while_still_running_is_a_timeout_and_cancels(self, stub_for, context) -> None:
        op = make(deferrable=True)
        stubber = stub_for(op)
        stubber.add_response("get_trained_model_inference_job", job_response("CREATE_IN_PROGRESS"), GET_JOB)
        stubber.add_response("cancel_trained_model_inference_job", {}, GET_JOB)
        event = {
            "status": "error",
            "message": "max attempts reached",
            "trained_model_inference_job_arn": JOB_ARN,
        }
        with pytest.raises(CleanRoomsMLWaitTimeoutError, match="max attempts reached"):
            op.execute_complete(context, event)

    def test_deferral_timeout_cancels_the_job(self, stub_for, context, ti) -> None:
        expected: type[Exception]
        if AIRFLOW_V_3_0_PLUS:
            from airflow.sdk.bases.operator import TriggerFailureReason

            try:
                from airflow.sdk.exceptions import TaskDeferralTimeout as expected
            except ImportError:  # Airflow 3.0
                from airflow.exceptions import TaskDeferralTimeout as expected  # type: ignore[no-redef]
            error: Any = TriggerFailureReason.TRIGGER_TIMEOUT
        else:  # Airflow 2.11: what its scheduler sets on a deferral that timed out
            from airflow.exceptions import TaskDeferralError as expected  # type: ignore[no-redef]

            error = "Trigger/execution timeout"

        op = make(deferrable=True)
        ti.xcoms["trained_model_inference_job_arn"] = JOB_ARN
        stub_for(op).add_response("cancel_trained_model_inference_job", {}, GET_JOB)
        with pytest.raises(expected):
            op.resume_execution("__fail__", {"error": error}, context)

    def test_resume_calls_execute_complete(self, stub_for, context) -> None:
        op = make(deferrable=True)
        stub_for(op)
        result = op.resume_execution(
            "execute_complete",
            {"event": {"status": "success", "trained_model_inference_job_arn": JOB_ARN}},
            context,
        )
        assert result == JOB_ARN


def test_trained_model_arn_from_upstream_xcom_is_used_as_is(stub_for, context) -> None:
    op = make(trained_model_arn=MODEL_ARN, wait_for_completion=False)
    expect_durable_start(stub_for(op), context["ti"], INFERENCE_REQUEST, start_response())
    assert op.execute(context) == JOB_ARN


@pytest.mark.skipif(
    not model_has_member("StartTrainedModelInferenceJobRequest", "mlModelInferencePayerAccountId"),
    reason="the installed botocore model has no mlModelInferencePayerAccountId (botocore 1.43.13 added it)",
)
def test_a_member_without_an_explicit_parameter_is_still_accepted(stub_for, context) -> None:
    """What a newer botocore member looks like: not in the signature, accepted by its snake_case name."""
    from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLBaseOperator

    class MinimalOperator(CleanRoomsMLBaseOperator):
        operation_name = "StartTrainedModelInferenceJob"
        kind = TRAINED_MODEL_INFERENCE_JOB
        link = CleanRoomsMLStartTrainedModelInferenceJobOperator.link
        template_fields = CleanRoomsMLStartTrainedModelInferenceJobOperator.template_fields

        def __init__(self, *, membership_identifier: str, **kwargs: Any) -> None:
            super().__init__(api_arguments={"membership_identifier": membership_identifier}, **kwargs)

    arguments = {k: v for k, v in INFERENCE_ARGS.items() if k != "membership_identifier"}
    op = MinimalOperator(
        task_id="t",
        membership_identifier=MEMBERSHIP,
        ml_model_inference_payer_account_id="123456789012",
        aws_conn_id=None,
        region_name="us-east-1",
        wait_for_completion=False,
        **arguments,
    )
    assert op.ml_model_inference_payer_account_id == "123456789012"
    # Not durable (no CleanRoomsMLDurableMixin): the plain start call, no lookup.
    stub_for(op).add_response(
        "start_trained_model_inference_job",
        start_response(),
        {**INFERENCE_REQUEST, "mlModelInferencePayerAccountId": "123456789012"},
    )
    assert op.execute(context) == JOB_ARN


def test_an_unknown_argument_is_still_rejected() -> None:
    # Airflow 3: BaseOperator's TypeError; Airflow 2.11: its AirflowException naming the argument.
    with pytest.raises((TypeError, AirflowException), match="instance_type"):
        make(instance_type="ml.m5.xlarge")


@pytest.mark.parametrize(
    ("wrong", "meant"),
    [
        ("resource_configuration", "resource_config"),
        ("membershipidentifier", "membership_identifier"),
        ("tag", "tags"),
    ],
)
def test_a_misspelled_argument_fails_at_parse_time_with_a_suggestion(wrong, meant) -> None:
    with pytest.raises(TypeError, match=f"unexpected argument '{wrong}'; did you mean '{meant}'"):
        make(**{wrong: "x"})


def test_empty_optional_values_mean_not_given(stub_for, context) -> None:
    """``description="{{ params.description }}"`` with an empty param leaves the member out."""
    op = make(description="", kms_key_arn="", wait_for_completion=False)
    expect_durable_start(stub_for(op), context["ti"], INFERENCE_REQUEST, start_response())
    op.execute(context)


def test_empty_required_value_is_reported() -> None:
    op = make(name="")
    with pytest.raises(CleanRoomsMLRequestError, match="name: has 0 characters"):
        op.build_request()

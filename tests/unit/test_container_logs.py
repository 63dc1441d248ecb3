"""Container logs: the console link per case, the follower (order, no repeats), the sync streamer."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from botocore.stub import Stubber

from airflow_cleanrooms.compat import sensitive_values
from airflow_cleanrooms.container_logs import (
    ContainerLogStreamer,
    Fetched,
    LogFollower,
    default_stream_prefix,
    log_group,
)
from airflow_cleanrooms.links.cleanrooms_ml import CleanRoomsMLContainerLogsLink, console_hash_value
from airflow_cleanrooms.wait_semantics import ML_INPUT_CHANNEL, TRAINED_MODEL, TRAINED_MODEL_INFERENCE_JOB

JOB_ID = "8c2a1f55-0d53-4f4b-9a53-1f0f6c8f0a11"
JOB_ARN = f"arn:aws:cleanrooms-ml:us-east-1:123456789012:membership/m/trained-model-inference-job/{JOB_ID}"


def _link(kind: Any, region: str, partition: str, prefix: str | None = None) -> str:
    group = log_group(kind)
    return CleanRoomsMLContainerLogsLink().format_link(
        region_name=region,
        aws_domain=CleanRoomsMLContainerLogsLink.get_aws_domain(partition),
        log_group=group,
        stream_prefix=prefix if prefix is not None else JOB_ID,
    )


@pytest.mark.parametrize(
    ("kind", "region", "partition", "expected"),
    [
        (
            TRAINED_MODEL_INFERENCE_JOB,
            "us-east-1",
            "aws",
            "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/"
            f"$252Faws$252Fcleanroomsml$252FTrainedModelInferenceJobs$3FlogStreamNameFilter$3D{JOB_ID}",
        ),
        (
            TRAINED_MODEL,
            "eu-west-2",
            "aws",
            "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-2#logsV2:log-groups/log-group/"
            f"$252Faws$252Fcleanroomsml$252FTrainedModels$3FlogStreamNameFilter$3D{JOB_ID}",
        ),
        (
            TRAINED_MODEL_INFERENCE_JOB,
            "cn-north-1",
            "aws-cn",
            "https://console.amazonaws.cn/cloudwatch/home?region=cn-north-1#logsV2:log-groups/log-group/"
            f"$252Faws$252Fcleanroomsml$252FTrainedModelInferenceJobs$3FlogStreamNameFilter$3D{JOB_ID}",
        ),
        (
            TRAINED_MODEL,
            "us-gov-west-1",
            "aws-us-gov",
            "https://console.amazonaws-us-gov.com/cloudwatch/home?region=us-gov-west-1#logsV2:log-groups/"
            f"log-group/$252Faws$252Fcleanroomsml$252FTrainedModels$3FlogStreamNameFilter$3D{JOB_ID}",
        ),
    ],
    ids=["inference-aws", "training-aws", "inference-aws-cn", "training-aws-us-gov"],
)
def test_container_logs_link(kind: Any, region: str, partition: str, expected: str) -> None:
    assert _link(kind, region, partition) == expected


def test_link_encodes_an_overridden_prefix_and_needs_a_region() -> None:
    url = _link(TRAINED_MODEL, "us-east-1", "aws", prefix="model/v 1")
    assert url.endswith("$3FlogStreamNameFilter$3Dmodel$252Fv$25201")
    assert console_hash_value("/a b") == "$252Fa$2520b"
    assert _link(TRAINED_MODEL, "", "aws") == ""
    assert log_group(ML_INPUT_CHANNEL) is None


def test_default_prefix_is_the_job_id() -> None:
    assert default_stream_prefix(JOB_ARN) == JOB_ID


def test_sensitive_values_are_those_under_sensitive_keys() -> None:
    request = {"name": "x", "environment": {"DB_PASSWORD": "p", "API_TOKEN": "t", "MODE": "m"}, "tags": {}}
    assert sorted(sensitive_values(request)) == ["p", "t"]


def _event(ts: int, message: str) -> dict[str, Any]:
    return {"timestamp": ts, "message": message, "ingestionTime": ts}


def test_follower_merges_streams_in_time_order_and_skips_older_streams() -> None:
    follower = LogFollower("/g", JOB_ID, start_time_ms=100)
    described = {
        "logStreams": [
            {"logStreamName": f"{JOB_ID}/algo-2", "lastEventTimestamp": 150},
            {"logStreamName": f"{JOB_ID}/algo-1", "lastEventTimestamp": 200},
            {"logStreamName": f"{JOB_ID}/old", "lastEventTimestamp": 50},
        ]
    }
    new = follower.new_streams(described)
    assert new == [f"{JOB_ID}/algo-1", f"{JOB_ID}/algo-2"]
    events = follower.apply(
        Fetched(
            new,
            {
                f"{JOB_ID}/algo-1": ([_event(110, "a1"), _event(130, "a2")], "f/1"),
                f"{JOB_ID}/algo-2": ([_event(120, "b1"), _event(130, "b2")], "f/2"),
            },
        )
    )
    assert [e["message"] for _, e in events] == ["a1", "b1", "a2", "b2"]
    assert follower.token(f"{JOB_ID}/algo-1") == "f/1"
    assert follower.events_request(f"{JOB_ID}/algo-1", "f/1")["nextToken"] == "f/1"
    assert follower.events_request("s", None)["startTime"] == 100
    assert follower.new_streams(described) == []  # already followed


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def _add(self, message: str, *args: Any) -> None:
        self.lines.append(message % args if args else message)

    info = warning = _add


def test_sync_streamer_logs_new_lines_once_and_says_when_no_streams_exist() -> None:
    from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

    hook = AwsLogsHook(aws_conn_id=None, region_name="us-east-1")
    client = hook.conn
    log = _Log()
    streamer = ContainerLogStreamer(hook, TRAINED_MODEL_INFERENCE_JOB, JOB_ARN, log)
    group = log_group(TRAINED_MODEL_INFERENCE_JOB)
    stream = f"{JOB_ID}/algo-1"
    with Stubber(client) as stub:
        # poll 1: the group does not exist yet
        stub.add_client_error("describe_log_streams", "ResourceNotFoundException", "no group")
        # poll 2: a stream, two events, then nothing new
        stub.add_response(
            "describe_log_streams",
            {"logStreams": [{"logStreamName": stream, "lastEventTimestamp": 5}]},
            {"logGroupName": group, "logStreamNamePrefix": JOB_ID},
        )
        stub.add_response(
            "get_log_events",
            {"events": [_event(1, "one"), _event(2, "two")], "nextForwardToken": "f/2"},
            {"logGroupName": group, "logStreamName": stream, "startTime": 0, "startFromHead": True},
        )
        stub.add_response("get_log_events", {"events": [], "nextForwardToken": "f/2"})
        # poll 3 (final): a rediscovery, then one more event from the token
        stub.add_response("describe_log_streams", {"logStreams": [{"logStreamName": stream}]})
        stub.add_response("get_log_events", {"events": [_event(3, "three")], "nextForwardToken": "f/3"})
        stub.add_response("get_log_events", {"events": [], "nextForwardToken": "f/3"})
        streamer.poll()
        streamer.poll()
        streamer.finish()
        stub.assert_no_pending_responses()
    container = [line for line in log.lines if line.startswith("[container]")]
    assert container == ["[container] one", "[container] two", "[container] three"]
    assert f"Following log stream: {stream}" in log.lines
    assert any(line.startswith("Container logs: 3 lines from 1 stream") for line in log.lines)


def test_sync_streamer_says_clearly_when_no_streams_were_found() -> None:
    from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

    hook = AwsLogsHook(aws_conn_id=None, region_name="us-east-1")
    log = _Log()
    streamer = ContainerLogStreamer(hook, TRAINED_MODEL, JOB_ARN, log, stream_prefix="custom/")
    with Stubber(hook.conn) as stub:
        stub.add_response("describe_log_streams", {"logStreams": []})
        streamer.finish()
    assert any(
        "No container log streams found in /aws/cleanroomsml/TrainedModels starting with 'custom/'" in line
        for line in log.lines
    )


def test_a_logs_error_stops_streaming_without_failing() -> None:
    from airflow.providers.amazon.aws.hooks.logs import AwsLogsHook

    hook = AwsLogsHook(aws_conn_id=None, region_name="us-east-1")
    log = _Log()
    streamer = ContainerLogStreamer(hook, TRAINED_MODEL, JOB_ARN, log)
    with Stubber(hook.conn) as stub:
        stub.add_client_error("describe_log_streams", "AccessDeniedException", "no logs:Describe*")
        streamer.poll()
        streamer.finish()  # nothing more is called
    assert any("streaming stopped, the wait goes on" in line for line in log.lines)


def test_streamed_lines_go_through_the_secrets_masker(caplog: pytest.LogCaptureFixture) -> None:
    from airflow_cleanrooms.compat import mask_secret
    from airflow_cleanrooms.container_logs import _Reporter

    mask_secret("unit-s3cr3t-value")
    follower = LogFollower("/g", "p")
    reporter = _Reporter(follower, logging.getLogger("test.stream"), "job")
    with caplog.at_level(logging.INFO, logger="test.stream"):
        reporter.events([("p/1", _event(1, "connecting with password unit-s3cr3t-value"))])
    assert "connecting with password ***" in caplog.text
    assert "unit-s3cr3t-value" not in caplog.text


def test_a_streaming_trigger_serializes_its_streaming_arguments() -> None:
    from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobCompleteTrigger

    trigger = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier="m",
        trained_model_inference_job_arn=JOB_ARN,
        print_log=True,
        log_stream_prefix="custom",
        log_mask_values=["s3cr3t"],
    )
    path, kwargs = trigger.serialize()
    assert kwargs["print_log"] is True
    assert kwargs["log_stream_prefix"] == "custom"
    assert kwargs["log_mask_values"] == ["s3cr3t"]
    rebuilt = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    # Without streaming nothing is added, so triggers serialized before keep their shape.
    plain = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier="m", trained_model_inference_job_arn=JOB_ARN
    )
    assert "print_log" not in plain.serialize()[1]

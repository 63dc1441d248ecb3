"""The shared base run loop: schedule, error budget, the events it emits and its acceptors."""

from __future__ import annotations

import random
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from airflow_cleanrooms.aio import client_pool
from tests.unit.trigger_support import (
    JOB_ARN,
    MEMBERSHIP,
    AsyncScriptedClient,
    ScaleTestHook,
    ScaleTestJobTrigger,
    job,
    run_all,
    throttled,
    trigger,
)

# -- schedule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [1, 5, 30, 60])
def test_poll_intervals_are_jittered_within_bounds(delay):
    t = trigger(waiter_delay=delay)
    rng = random.Random(42)
    schedule = super(ScaleTestJobTrigger, t)  # the base class's decisions, not the test double's
    intervals = [schedule.poll_interval(rng) for _ in range(2000)]
    firsts = [schedule.first_poll_delay(rng) for _ in range(2000)]
    assert all((1 - t.jitter) * delay <= i <= delay for i in intervals)
    assert all(0 <= f <= min(t.max_first_poll_spread, delay) for f in firsts)
    assert max(firsts) > 0.9 * min(t.max_first_poll_spread, delay)
    # Not lockstep: the intervals actually spread over the window.
    assert max(intervals) - min(intervals) > 0.9 * t.jitter * delay
    assert len({round(i, 6) for i in intervals}) > 1000


def test_waits_started_together_do_not_poll_in_lockstep(scripts):
    by_arn, _ = scripts
    triggers = [trigger(n, waiter_delay=10) for n in range(20)]
    for n in range(20):
        by_arn[JOB_ARN.format(n=n)] = [job("CREATE_IN_PROGRESS")] * 4 + [job("ACTIVE")]
    run_all(*triggers)
    for t in triggers:
        assert len(t.slept) == 5  # first-poll spread + 4 intervals
        assert 0 <= t.slept[0] <= 10.0
        assert all(8.0 <= s <= 10.0 for s in t.slept[1:])
    # The poll instants of the 20 waits differ.
    instants = {round(sum(t.slept), 6) for t in triggers}
    assert len(instants) == 20


# -- events -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["thread", "aio"])
def test_success_event(scripts, transport, monkeypatch):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_PENDING"), job("CREATE_IN_PROGRESS"), job("ACTIVE")]
    monkeypatch.setattr(ScaleTestJobTrigger, "client_transport", transport)
    t = trigger(1)
    [event] = run_all(t)
    assert t._client_key.transport == transport
    assert isinstance(built[0], AsyncScriptedClient) == (transport == "aio")
    assert event == {"status": "success", "trained_model_inference_job_arn": JOB_ARN.format(n=1)}
    assert len(built[0].calls) == 3
    assert built[0].calls[0] == {
        "membershipIdentifier": MEMBERSHIP,
        "trainedModelInferenceJobArn": JOB_ARN.format(n=1),
    }


@pytest.mark.parametrize("status", ["CREATE_FAILED", "INACTIVE"])
def test_failure_event_carries_status_and_status_details(scripts, status):
    by_arn, _ = scripts
    details = {"statusCode": "ALGORITHM_ERROR", "message": "container exited with code 3"}
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_IN_PROGRESS"), job(status, statusDetails=details)]
    [event] = run_all(trigger(1))
    assert event["status"] == "error"
    assert event["trained_model_inference_job_arn"] == JOB_ARN.format(n=1)
    assert event["job_status"] == status
    assert event["status_details"] == details
    assert "Inference job failed" in event["message"]
    assert status in event["message"] and "container exited with code 3" in event["message"]


def test_max_attempts_exhausted_is_a_timeout_error_event(scripts):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_IN_PROGRESS")]
    [event] = run_all(trigger(1, waiter_max_attempts=3))
    assert event["status"] == "error"
    assert "timed out" in event["message"]
    assert event["job_status"] == "CREATE_IN_PROGRESS"
    assert event["status_details"] is None
    assert len(built[0].calls) == 3


def test_transient_errors_within_budget_do_not_use_attempts(scripts):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [
        job("CREATE_IN_PROGRESS"),
        throttled(),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
        ClientError(
            {
                "Error": {"Code": "InternalServerException", "Message": "boom"},
                "ResponseMetadata": {"HTTPStatusCode": 500},
            },
            "GetTrainedModelInferenceJob",
        ),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
        job("ACTIVE"),
    ]
    [event] = run_all(trigger(1, waiter_max_attempts=2))
    assert event["status"] == "success"
    assert len(built[0].calls) == 6


def server_error() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "InternalServerException", "Message": "boom"},
            "ResponseMetadata": {"HTTPStatusCode": 500},
        },
        "GetTrainedModelInferenceJob",
    )


def test_error_budget_exhausted_ends_the_wait_with_a_clear_error(scripts):
    by_arn, built = scripts
    t = trigger(1, waiter_max_attempts=100)
    by_arn[JOB_ARN.format(n=1)] = [
        job("CREATE_IN_PROGRESS", statusDetails={"message": "queued"}),
        server_error(),
    ]
    [event] = run_all(t)
    assert event["status"] == "error"
    assert f"gave up after {t.max_transient_errors + 1} consecutive transient errors" in event["message"]
    assert "InternalServerException" in event["message"]
    assert event["job_status"] == "CREATE_IN_PROGRESS"
    assert event["status_details"] == {"message": "queued"}
    assert len(built[0].calls) == 1 + t.max_transient_errors + 1


def test_throttling_never_ends_a_wait(scripts):
    """Waits sharing an account's request rate are throttled in turn: the job still runs."""
    by_arn, built = scripts
    t = trigger(1, waiter_max_attempts=3)
    throttles = 4 * t.max_transient_errors
    by_arn[JOB_ARN.format(n=1)] = [job("CREATE_IN_PROGRESS")] + [throttled()] * throttles + [job("ACTIVE")]
    [event] = run_all(t)
    assert event["status"] == "success"
    assert len(built[0].calls) == 1 + throttles + 1


def test_streak_resets_after_an_answer(scripts):
    by_arn, _ = scripts
    t = trigger(1, waiter_max_attempts=100)
    budget = t.max_transient_errors
    by_arn[JOB_ARN.format(n=1)] = (
        [server_error()] * budget + [job("CREATE_IN_PROGRESS")] + [server_error()] * budget + [job("ACTIVE")]
    )
    [event] = run_all(t)
    assert event["status"] == "success"


@pytest.mark.parametrize(
    ("code", "http"), [("AccessDeniedException", 403), ("ResourceNotFoundException", 404)]
)
def test_non_transient_errors_fail_at_once(scripts, code, http):
    by_arn, built = scripts
    by_arn[JOB_ARN.format(n=1)] = [
        ClientError(
            {"Error": {"Code": code, "Message": "nope"}, "ResponseMetadata": {"HTTPStatusCode": http}},
            "GetTrainedModelInferenceJob",
        )
    ]
    [event] = run_all(trigger(1))
    assert event["status"] == "error"
    assert code in event["message"]
    assert event["job_status"] is None and event["status_details"] is None
    assert len(built[0].calls) == 1


def test_client_that_cannot_be_built_gives_an_error_event(monkeypatch):
    def broken(hook: Any, transport: str = "thread") -> Any:
        raise RuntimeError("no credentials anywhere")

    monkeypatch.setattr(client_pool, "create_client_blocking", broken)
    [event] = run_all(trigger(1))
    assert event["status"] == "error"
    assert "no credentials anywhere" in event["message"]
    assert event["trained_model_inference_job_arn"] == JOB_ARN.format(n=1)


# -- serialization ----------------------------------------------------------------------------------


def test_serialization_round_trip_is_aws_base_waiter_trigger_compatible():
    t = trigger(
        7,
        waiter_delay=12,
        waiter_max_attempts=34,
        region_name="eu-west-1",
        verify=False,
        botocore_config={"read_timeout": 5},
    )
    classpath, kwargs = t.serialize()
    assert classpath == f"{ScaleTestJobTrigger.__module__}.ScaleTestJobTrigger"
    assert kwargs == {
        "waiter_delay": 12,
        "waiter_max_attempts": 34,
        "aws_conn_id": "scale_a",
        "membership_identifier": MEMBERSHIP,
        "trained_model_inference_job_arn": JOB_ARN.format(n=7),
        "region_name": "eu-west-1",
        "verify": False,
        "botocore_config": {"read_timeout": 5},
    }
    again = ScaleTestJobTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    hook = again.hook()
    assert isinstance(hook, ScaleTestHook)
    assert (hook.aws_conn_id, hook._region_name, hook._verify) == ("scale_a", "eu-west-1", False)


def test_subclass_without_hook_class_is_rejected_at_import_time():
    from airflow_cleanrooms.triggers.base import CleanRoomsMLBaseWaiterTrigger

    with pytest.raises(AttributeError, match="aws_hook_class"):
        type("NoHook", (CleanRoomsMLBaseWaiterTrigger,), {})


# -- acceptors --------------------------------------------------------------------------------------

_ACCEPTOR_RESPONSES = [
    {"status": "ACTIVE"},
    {"status": "CREATE_FAILED", "statusDetails": {"message": "m"}},
    {"jobs": [{"s": "A"}, {"s": "A"}]},
    {"jobs": [{"s": "A"}, {"s": "B"}]},
    {"jobs": []},
    {"jobs": "A"},
    {},
    {"Error": {"Code": "ResourceNotFoundException", "Message": "gone"}, "status": "ACTIVE"},
    {"Error": {"Message": "no code"}, "status": "ACTIVE"},
    {"ResponseMetadata": {"HTTPStatusCode": 404}},
]


@pytest.mark.parametrize(
    "acceptor",
    [
        {"matcher": "path", "argument": "status", "expected": "ACTIVE", "state": "success"},
        {"matcher": "path", "argument": "statusDetails.message", "expected": "m", "state": "failure"},
        {"matcher": "pathAll", "argument": "jobs[].s", "expected": "A", "state": "success"},
        {"matcher": "pathAny", "argument": "jobs[].s", "expected": "B", "state": "failure"},
        {"matcher": "pathAny", "argument": "jobs", "expected": "A", "state": "retry"},
        {"matcher": "error", "expected": "ResourceNotFoundException", "state": "failure"},
        {"matcher": "error", "expected": True, "state": "failure"},
        {"matcher": "error", "expected": False, "state": "success"},
        {"matcher": "status", "expected": 404, "state": "failure"},
    ],
    ids=lambda a: f"{a['matcher']}-{a.get('argument', '')}-{a['expected']}",
)
def test_acceptors_match_exactly_as_botocores(acceptor):
    from botocore.waiter import WaiterModel

    from airflow_cleanrooms.wait_semantics import waiter_acceptors

    config = {"operation": "Op", "delay": 1, "maxAttempts": 2, "acceptors": [acceptor]}
    model = WaiterModel({"version": 2, "waiters": {"w": config}})
    waiter = model.get_waiter("w")
    [ours] = waiter_acceptors(waiter)
    [theirs] = waiter.acceptors
    assert (ours.state, ours.explanation) == (theirs.state, theirs.explanation)
    for response in _ACCEPTOR_RESPONSES:
        assert bool(ours.matches(response)) == bool(theirs.matcher_func(response)), response


@pytest.mark.parametrize(("triggerers", "share"), [(None, 5.0), ("1", 5.0), ("2", 2.5), ("4", 1.25)])
def test_each_triggerer_takes_its_share_of_the_request_rate(monkeypatch, triggerers, share):
    if triggerers is not None:
        monkeypatch.setenv("AIRFLOW__CLEANROOMS_ML__TRIGGERERS", triggerers)
    limited, unlimited = trigger(1), trigger(2)
    unlimited.max_requests_per_second = None
    assert limited.triggerer_request_rate == share
    assert unlimited.triggerer_request_rate is None  # unlimited stays so


def test_a_triggerer_count_below_one_is_refused_with_the_option_name(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CLEANROOMS_ML__TRIGGERERS", "0")
    with pytest.raises(ValueError, match=r"\[cleanrooms_ml\] triggerers must be 1 or more, not 0"):
        _ = trigger(1).triggerer_request_rate

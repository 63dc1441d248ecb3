"""
API calls a deferred quota wait costs each time the task resumes, against the emulator (its process).

A membership whose job quota is full (5 inference jobs pending or in progress, AWS's default) and
which lists ``--ended`` finished jobs besides; a deferrable inference operator's start is refused,
it defers to the quota-slot trigger, and each time the trigger fires the task resumes. Two ways to
resume, side by side in the same run, each made to resume ``--resumes`` times while the quota stays
full (the last refusal's calls counted):

- ``execute`` (the baseline, what ``execute_after_quota_wait`` did before #18): the whole start path
  again, the durable lookup (the membership's listing, page by page) before the start call;
- ``start call`` (now): the request is built again and the start call made at once; a refusal
  logs the count of jobs holding the slots that the trigger's event carries instead of listing.

Prints the calls per resume by operation and the ratio of the totals. The trigger's own listing
(one page per check) is the same in both and not counted.

    .venv/bin/python -m benchmarks.quota_resume [--ended 250] [--resumes 5]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Any

from benchmarks.common import MEMBERSHIP, boto3_client, child_env, connection_uri_env, emulator_process

OPERATIONS = ("ListTrainedModelInferenceJobs", "ListTagsForResource", "StartTrainedModelInferenceJob")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--ended", type=int, default=250, help="finished jobs the membership lists")
    parser.add_argument("--resumes", type=int, default=5, help="resumes measured per way")
    args = parser.parse_args(argv)

    with emulator_process("--no-limits") as emulator:
        control = emulator.control
        seed = control.seed_membership(MEMBERSHIP, trained_model=True)
        os.environ.update(child_env())
        os.environ.update(connection_uri_env(emulator.url, {"bench": ("testing", "testing")}))
        client = boto3_client(emulator.url)
        request = {
            "membershipIdentifier": MEMBERSHIP,
            "trainedModelArn": seed["trained_model_arn"],
            "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            "outputConfiguration": {"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
            "dataSource": {"mlInputChannelArn": seed["ml_input_channel_arn"]},
        }
        control.set_timings(pending_seconds=0, running_seconds=0)
        for i in range(args.ended):
            client.start_trained_model_inference_job(**request, name=f"ended-{i:05d}")
        control.set_timings(pending_seconds=3600, running_seconds=3600)
        for i in range(5):
            client.start_trained_model_inference_job(**request, name=f"holding-{i}")
        control.set_limits(inference_jobs_per_membership=5, request_rate=None)

        calls = {way: resume_calls(control, seed, way, args.resumes) for way in ("execute", "start call")}

    print(f"\nAPI calls per resume of a deferred quota wait ({args.ended} finished jobs listed, quota full)")
    width = max(len(name) for name in OPERATIONS) + 2
    print(f"{'operation':<{width}}{'execute':>12}{'start call':>12}")
    for name in OPERATIONS:
        print(f"{name:<{width}}{calls['execute'][name]:>12.1f}{calls['start call'][name]:>12.1f}")
    totals = {way: sum(counts.values()) for way, counts in calls.items()}
    print(f"{'total':<{width}}{totals['execute']:>12.1f}{totals['start call']:>12.1f}")
    print(f"ratio (start call / execute): {totals['start call'] / totals['execute']:.2f}")
    return 0


def resume_calls(control: Any, seed: dict[str, str], way: str, resumes: int) -> Counter[str]:
    """The emulator's calls per resume, by operation, when the task resumes ``way``."""
    from airflow_cleanrooms.compat import TaskDeferred
    from airflow_cleanrooms.operators.cleanrooms_ml import CleanRoomsMLStartTrainedModelInferenceJobOperator
    from tests.unit.unit_support import FakeTaskInstance

    op = CleanRoomsMLStartTrainedModelInferenceJobOperator(
        task_id="score",
        aws_conn_id="bench",
        membership_identifier=MEMBERSHIP,
        name=f"refused-{way.replace(' ', '-')}",
        trained_model_arn=seed["trained_model_arn"],
        resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        output_configuration={"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
        data_source={"mlInputChannelArn": seed["ml_input_channel_arn"]},
        deferrable=True,
    )
    context: dict[str, Any] = {"ti": FakeTaskInstance("score-" + way.replace(" ", "-"))}
    try:
        op.execute(context)  # the first refusal: defers to the quota-slot trigger
    except TaskDeferred as deferred:
        started = deferred.kwargs["quota_wait_started"]
    counted: Counter[str] = Counter()
    for _ in range(resumes):
        control.clear_requests()
        try:
            if way == "execute":
                op._quota_wait_started = started
                op.execute(context)
            else:
                event = {"status": "success", "pending_jobs": 5, "quota_name": "q", "quota_value": 5.0}
                op.execute_after_quota_wait(context, event=event, quota_wait_started=started)
        except TaskDeferred:
            pass  # refused again: deferred again
        for call in control.requests():
            if call["operation"] in OPERATIONS:
                counted[call["operation"]] += 1
    return Counter({name: counted[name] / resumes for name in OPERATIONS})


if __name__ == "__main__":
    raise SystemExit(main())

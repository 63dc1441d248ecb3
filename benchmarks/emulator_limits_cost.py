"""
What the emulator's AWS limits cost per call, in-process (no HTTP stack): a poll
(GetTrainedModelInferenceJob, signature parsing included, SigV4 signing done once outside the loop)
and a start (StartTrainedModelInferenceJob, signed per call) with 1,000 ended jobs in the membership,
with every limit off and with the limits on (request rate off, so the loop is not throttled).

    python benchmarks/emulator_limits_cost.py
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from airflow_cleanrooms.emulator.limits import Limits
from airflow_cleanrooms.emulator.server import EmulatorServer
from airflow_cleanrooms.emulator.wire import HttpRequest

ENDED_JOBS = 1000
POLLS = 20_000
STARTS = 200


def signed(method: str, path: str, body: bytes = b"") -> HttpRequest:
    request = AWSRequest(method=method, url="http://emulator" + path, data=body)
    SigV4Auth(Credentials("testing", "testing"), "cleanrooms-ml", "us-east-1").add_auth(request)
    return HttpRequest(method, path, "", dict(request.headers), body)


def measure(limits: Limits) -> tuple[float, float]:
    server = EmulatorServer(limits=limits, pending_seconds=0, running_seconds=0.001)
    membership = str(uuid.uuid4())
    seed = server.responses.control.seed({"membershipId": membership, "trainedModel": True}, {})
    request: dict[str, Any] = {
        "trainedModelArn": seed["trained_model_arn"],
        "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        "outputConfiguration": {"accept": "text/csv", "members": [{"accountId": "123456789012"}]},
        "dataSource": {"mlInputChannelArn": seed["ml_input_channel_arn"]},
    }
    arns = [
        server.responses.call(
            "StartTrainedModelInferenceJob",
            {**request, "membershipIdentifier": membership, "name": f"old-{i}"},
        )["trainedModelInferenceJobArn"]
        for i in range(ENDED_JOBS)
    ]
    time.sleep(0.01)  # every old job has ended
    poll = signed("GET", f"/memberships/{membership}/trained-model-inference-jobs/{quote(arns[0], safe='')}")
    began = time.perf_counter()
    for _ in range(POLLS):
        reply = server.responses.handle(poll)
    assert reply.status == 200, reply.body
    poll_us = (time.perf_counter() - began) / POLLS * 1e6
    path = f"/memberships/{membership}/trained-model-inference-jobs"
    began = time.perf_counter()
    for i in range(STARTS):
        reply = server.responses.handle(
            signed("POST", path, json.dumps({**request, "name": f"new-{i}"}).encode())
        )
        assert reply.status == 200, reply.body
    start_ms = (time.perf_counter() - began) / STARTS * 1e3
    server.close()
    return poll_us, start_ms


def main() -> None:
    for label, limits in (("limits off", Limits.off()), ("limits on (rate off)", Limits(request_rate=None))):
        poll_us, start_ms = measure(limits)
        print(f"{label:22} poll {poll_us:5.0f} us   start {start_ms:5.2f} ms ({ENDED_JOBS} ended jobs)")


if __name__ == "__main__":
    main()

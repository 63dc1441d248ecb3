"""
CloudWatch Logs on the emulator's port, and the simulated model container that writes to it.

**The Logs API** (JSON 1.1, ``X-Amz-Target: Logs_20140328.<Operation>``) is moto's logs backend and
its own request handling (``moto.logs``: a well-kept implementation of the whole service, so
``DescribeLogStreams``, ``GetLogEvents``, ``FilterLogEvents`` and the rest answer as boto3 expects);
this module only routes requests to it, with one moto backend per account and Region of *this*
emulator (not moto's process-wide registry, so two emulators in one process never share logs, and
``reset`` forgets them). The account is the emulator's caller (its STS and access-key rules), so
logs land where the caller's jobs are.

**The container.** Clean Rooms ML sends what a job's model container writes to stdout/stderr to
``/aws/cleanroomsml/TrainedModelInferenceJobs`` or ``/aws/cleanroomsml/TrainedModels`` when the
configured model algorithm association's privacy configuration allows it
(``privacyConfiguration.policies.trainedModelInferenceJobs|trainedModels.containerLogs``: a policy
whose ``allowedAccountIds`` holds the job's account; its ``filterPattern``, a regular expression,
keeps only the lines that match it; ``logType`` ``ERROR_SUMMARY`` keeps only error lines). Here each
job's container writes a few lines, timed on the job's phases (start, environment, progress, and
the end: a success line, or for a failing job an ``ERROR`` line with its ``statusDetails`` and an
exit line; a cancelled job gets ``SIGTERM``). Nothing runs in the background: before each Logs call,
the lines whose time has come (on the emulator's clock) are written to moto, once each. Streams are
named ``<job id>/algo-<n>`` (inference) and ``<model id>/<version>/algo-<n>`` (training), one per
instance of ``resourceConfig.instanceCount``; AWS does not document its names, the provider finds
streams by a prefix made from the job id.

``logsStatus``/``logsStatusDetails`` on Get and List follow the same decision
(:func:`logs_publishing`): ``PUBLISH_SUCCEEDED`` once the container started, or ``PUBLISH_FAILED``
with the reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_cleanrooms.emulator.errors import EmulatorError
from airflow_cleanrooms.emulator.resources import INFERENCE_JOB, TRAINED_MODEL, Resource
from airflow_cleanrooms.emulator.wire import HttpReply, HttpRequest, new_request_id

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.credentials import Authenticator
    from airflow_cleanrooms.emulator.models import CleanRoomsMLBackend
    from airflow_cleanrooms.emulator.requestlog import RequestLog

log = logging.getLogger("airflow_cleanrooms.emulator")

TARGET_PREFIX = "Logs_20140328."
LOG_GROUPS = {
    INFERENCE_JOB: "/aws/cleanroomsml/TrainedModelInferenceJobs",
    TRAINED_MODEL: "/aws/cleanroomsml/TrainedModels",
}
#: The privacy configuration policy of each kind (``privacyConfiguration.policies.<policy>``).
POLICIES = {INFERENCE_JOB: "trainedModelInferenceJobs", TRAINED_MODEL: "trainedModels"}
PUBLISH_SUCCEEDED = "PUBLISH_SUCCEEDED"
PUBLISH_FAILED = "PUBLISH_FAILED"
_ERROR_LINE = re.compile(r"\b(ERROR|Error|Traceback|exited with code [1-9])")


def resource_id(arn: str) -> str:
    """The last segment of an ARN: the job's (or model's) id."""
    return arn.rsplit("/", 1)[-1]


def stream_names(res: Resource) -> list[str]:
    """The container's streams: one per instance."""
    count = int((res.body.get("resourceConfig") or {}).get("instanceCount") or 1)
    base = resource_id(res.arn) + (f"/{res.version}" if res.kind == TRAINED_MODEL else "")
    return [f"{base}/algo-{n}" for n in range(1, count + 1)]


def logs_publishing(
    kind: str, association: Mapping[str, Any] | None, account_id: str
) -> tuple[str, str | None, dict[str, Any] | None]:
    """
    ``(logsStatus, logsStatusDetails, policy)`` of a job of ``kind`` run by ``account_id``.

    The first ``containerLogs`` policy of the association's privacy configuration for the kind whose
    ``allowedAccountIds`` holds the account decides; without one, nothing is published.
    """
    policy_name = POLICIES[kind]
    where = f"privacyConfiguration.policies.{policy_name}.containerLogs"
    if association is None:
        return PUBLISH_FAILED, "The job's configured model algorithm association was not found", None
    policies = (
        ((association.get("privacyConfiguration") or {}).get("policies") or {}).get(policy_name) or {}
    ).get("containerLogs") or []
    if not policies:
        return (
            PUBLISH_FAILED,
            f"The configured model algorithm association does not allow container logs ({where} is not set)",
            None,
        )
    for policy in policies:
        if account_id in (policy.get("allowedAccountIds") or []):
            return PUBLISH_SUCCEEDED, None, policy
    return (
        PUBLISH_FAILED,
        f"Account {account_id} is not in the allowedAccountIds of any {where} policy of the "
        "configured model algorithm association",
        None,
    )


def _published_line(message: str, policy: Mapping[str, Any]) -> bool:
    pattern = policy.get("filterPattern")
    if pattern and not re.search(pattern, message):
        return False
    return not (policy.get("logType") == "ERROR_SUMMARY" and not _ERROR_LINE.search(message))


def container_lines(res: Resource, now: float) -> list[tuple[float, str, str]]:
    """
    ``(time, stream, message)`` of every line the job's container has written by ``now``, in order.

    Times follow the job's phases: nothing before ``CREATE_IN_PROGRESS``; the last lines at the start
    of the phase that ended it (``ACTIVE``, ``CREATE_FAILED``, ``CANCEL_PENDING``).
    """
    running = next((start for start, status in res.phases if status == "CREATE_IN_PROGRESS"), None)
    if running is None or running > now:
        return []
    end, final = next(((start, status) for start, status in res.phases if start > running), (None, None))
    span = (end - running) if end is not None else 60.0
    inference = res.kind == INFERENCE_JOB
    what = "inference" if inference else "training"
    environment = res.body.get("environment") or {}
    script: list[tuple[float, str]] = [
        (
            0.0,
            f"Starting {what} container for {res.name!r} (image {res.body.get('image', 'algorithm image')})",
        ),
    ]
    if environment:
        shown = ", ".join(f"{key}={value}" for key, value in sorted(environment.items()))
        script.append((0.05, f"Environment: {shown}"))
    if inference:
        script.append((0.1, f"Loading model {res.body.get('trainedModelArn', '')}"))
        script.append((0.5, "Scored 500 of 1000 records"))
    else:
        hyper = res.body.get("hyperparameters") or {}
        script.append((0.1, f"Reading data channels; hyperparameters {json.dumps(hyper, sort_keys=True)}"))
        script.append((0.5, "epoch 1/2 train_loss=0.412 validation_loss=0.437"))
    lines: list[tuple[float, str]] = [(running + span * frac, text) for frac, text in script]
    if end is not None:
        if final == "ACTIVE":
            done = "Scored 1000 of 1000 records; output written" if inference else "Model artifacts saved"
            lines.append((end, f"{done}. Exiting with code 0"))
        elif final == "CREATE_FAILED":
            details = res.details or {}
            code = details.get("statusCode") or "AlgorithmError"
            lines.append((end, f"ERROR {code}: {details.get('message') or 'the container failed'}"))
            lines.append((end, "Container exited with code 1"))
        elif final == "CANCEL_PENDING":
            lines.append((end, "Received SIGTERM (job cancelled); stopping"))
    streams = stream_names(res)
    return [
        (at, stream, text if len(streams) == 1 else f"[{stream.rsplit('/', 1)[-1]}] {text}")
        for at, text in lines
        if at <= now
        for stream in streams
    ]


def _moto_response_class() -> Any:
    from moto.logs.responses import LogsResponse

    class EmulatorLogsResponse(LogsResponse):
        """moto's Logs request handling on this emulator's backends and caller."""

        def __init__(self, service: ContainerLogs, account_id: str) -> None:
            super().__init__()
            self._service = service
            self._account = account_id

        def get_current_account(self) -> str:
            return self._account

        @property
        def logs_backend(self) -> Any:
            return self._service.moto_backend(self._account, self.region)

    return EmulatorLogsResponse


class ContainerLogs:
    """
    Serves CloudWatch Logs calls (through moto) after writing the container lines that are due.

    :param backend: the Clean Rooms ML backend (jobs, their phases, the clock).
    :param authenticator: who is calling (account and Region), as for the Clean Rooms ML API.
    :param requests: the request log (Logs calls are recorded like the others).
    """

    def __init__(self, backend: CleanRoomsMLBackend, authenticator: Authenticator, requests: RequestLog):
        self.backend = backend
        self.authenticator = authenticator
        self.requests = requests
        self._lock = threading.RLock()
        self._moto: dict[tuple[str, str], Any] = {}
        self._written: dict[tuple[str, str], int] = {}  # (arn, version) -> lines written
        self._finished: set[tuple[str, str]] = set()  # every line written
        self._response_class: Any = None

    @staticmethod
    def accepts(request: HttpRequest) -> bool:
        return str(request.headers.get("X-Amz-Target") or "").startswith(TARGET_PREFIX)

    def moto_backend(self, account_id: str, region: str) -> Any:
        """This emulator's moto logs backend for an account and Region."""
        from moto.logs.models import LogsBackend

        with self._lock:
            backend = self._moto.get((account_id, region))
            if backend is None:
                backend = self._moto[(account_id, region)] = LogsBackend(region, account_id)
            return backend

    def reset(self) -> None:
        with self._lock:
            self._moto.clear()
            self._written.clear()
            self._finished.clear()

    # -- the container -----------------------------------------------------------------------------

    def write_due_lines(self, account_id: str, region: str) -> int:
        """Write the container lines due by now of the account's jobs in ``region``; return how many."""
        now = self.backend.now()
        written = 0
        with self._lock:
            for res in self.backend.container_jobs(account_id, region):
                key = (res.arn, res.version)
                if key in self._finished:
                    continue
                logs_status, _, policy = self.backend.logs_decision(res)
                lines = container_lines(res, now)
                if logs_status != PUBLISH_SUCCEEDED:
                    lines = []
                else:
                    lines = [line for line in lines if _published_line(line[2], policy or {})]
                new = lines[self._written.get(key, 0) :]
                if new:
                    self._put(account_id, region, res.kind, new)
                    written += len(new)
                self._written[key] = len(lines)
                if res.status_at(now)[0] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
                    self._finished.add(key)
        return written

    def _put(self, account_id: str, region: str, kind: str, lines: list[tuple[float, str, str]]) -> None:
        from moto.logs.exceptions import ResourceAlreadyExistsException

        moto = self.moto_backend(account_id, region)
        group = LOG_GROUPS[kind]
        if group not in moto.groups:
            moto.create_log_group(group, {})
        by_stream: dict[str, list[dict[str, Any]]] = {}
        for at, stream, message in lines:
            by_stream.setdefault(stream, []).append({"timestamp": int(at * 1000), "message": message})
        for stream, events in by_stream.items():
            with contextlib.suppress(ResourceAlreadyExistsException):
                moto.create_log_stream(group, stream)
            moto.put_log_events(group, stream, events)

    # -- HTTP ----------------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpReply:
        from moto.core.request import Request

        operation = str(request.headers.get("X-Amz-Target"))[len(TARGET_PREFIX) :]
        try:
            params = json.loads(request.body or b"{}")
        except ValueError:
            params = {}
        try:
            caller = self.authenticator.identify(request.headers, {}).caller
        except EmulatorError as error:
            self.requests.record(operation, params, error.status, error.code, None)
            body = json.dumps({"__type": error.code, "message": error.message}).encode()
            headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": new_request_id()}
            return HttpReply(error.status, body, headers)
        if self._response_class is None:
            try:
                self._response_class = _moto_response_class()
            except ImportError:
                self.requests.record(operation, params, 501, "NotImplemented", None)
                body = json.dumps(
                    {
                        "__type": "NotImplemented",
                        "message": "The emulator serves CloudWatch Logs with moto: "
                        "pip install 'airflow-cleanrooms[emulator]'",
                    }
                ).encode()
                return HttpReply(501, body, {"Content-Type": "application/x-amz-json-1.1"})
        self.write_due_lines(caller.account_id, caller.region)
        moto_request = Request.from_primitives(
            request.method,
            f"http://logs.{caller.region}.amazonaws.com{request.raw_path}",
            request.headers,
            request.body,
        )
        status, headers, body = self._response_class(self, caller.account_id)._dispatch(moto_request)
        reply_headers = {str(k): str(v) for k, v in dict(headers or {}).items()}
        present = {k.lower() for k in reply_headers}
        if "content-type" not in present:
            reply_headers["Content-Type"] = "application/x-amz-json-1.1"
        if "x-amzn-requestid" not in present:
            reply_headers["x-amzn-RequestId"] = new_request_id()
        payload = body.encode() if isinstance(body, str) else bytes(body or b"")
        code: str | None = None
        if int(status) >= 400:
            try:
                code = str(json.loads(payload).get("__type") or "Error")
            except ValueError:
                code = "Error"
        self.requests.record(operation, params, int(status), code, None)
        return HttpReply(int(status), payload, reply_headers)

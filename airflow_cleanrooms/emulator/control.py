"""
A client for the emulator's control endpoint (``/_emulator/...``), standard library only.

``EmulatorControl(url)`` works against an in-process :class:`EmulatorServer` and against one running
in another process or container alike.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_cleanrooms.emulator.defaults import DEFAULT_FAILURE_CODE, DEFAULT_FAILURE_MESSAGE


class EmulatorControlError(RuntimeError):
    """The control endpoint refused a call (bad arguments, unknown resource)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"emulator control call failed ({status}): {message}")
        self.status = status


@dataclass(frozen=True)
class JobConcurrency:
    """How many jobs of one kind were pending or in progress at once (the quotas' measure)."""

    #: The most ever at once, per membership id / per account id.
    max_running_per_membership: dict[str, int]
    max_running_per_account: dict[str, int]
    #: How many are pending or in progress now.
    running_per_membership: dict[str, int]
    running_per_account: dict[str, int]

    @classmethod
    def from_json(cls, data: dict[str, dict[str, int]]) -> JobConcurrency:
        return cls(
            max_running_per_membership=dict(data.get("maxRunningPerMembership", {})),
            max_running_per_account=dict(data.get("maxRunningPerAccount", {})),
            running_per_membership=dict(data.get("runningPerMembership", {})),
            running_per_account=dict(data.get("runningPerAccount", {})),
        )

    def max_running(self, membership_id: str | None = None, account_id: str | None = None) -> int:
        """The most at once in a membership, or an account, or (neither given) in any membership."""
        if membership_id is not None:
            return self.max_running_per_membership.get(membership_id, 0)
        if account_id is not None:
            return self.max_running_per_account.get(account_id, 0)
        return max(self.max_running_per_membership.values(), default=0)


@dataclass(frozen=True)
class EmulatorStats:
    """What the emulator measured since its last reset (``EmulatorControl.stats()``)."""

    inference_jobs: JobConcurrency
    trained_models: JobConcurrency
    #: API calls received (STS and control calls excluded), and those the request-rate limit throttled.
    requests_total: int
    requests_by_operation: dict[str, int]
    throttled_total: int
    throttled_by_operation: dict[str, int]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmulatorStats:
        return cls(
            inference_jobs=JobConcurrency.from_json(data.get("inferenceJobs", {})),
            trained_models=JobConcurrency.from_json(data.get("trainedModels", {})),
            requests_total=int(data.get("requestsTotal", 0)),
            requests_by_operation=dict(data.get("requestsByOperation", {})),
            throttled_total=int(data.get("throttledTotal", 0)),
            throttled_by_operation=dict(data.get("throttledByOperation", {})),
        )

    def throttled(self, operation: str | None = None) -> int:
        """Calls throttled by the request-rate limit: of one operation, or all."""
        if operation is None:
            return self.throttled_total
        return self.throttled_by_operation.get(operation, 0)


class EmulatorControl:
    """
    Drive a running emulator: faults, timings, failures, the request log, seeding.

    :param url: the emulator's base URL, e.g. ``http://127.0.0.1:5123``.
    :param timeout: seconds to wait for each control call.
    """

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EmulatorControl({self.url!r})"

    def _call(self, method: str, name: str, body: dict[str, Any] | None = None, query: str = "") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        url = f"{self.url}/_emulator/{name}" + (f"?{query}" if query else "")
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                message = json.loads(payload).get("error", payload.decode())
            except ValueError:
                message = payload.decode(errors="replace")
            raise EmulatorControlError(error.code, message) from None

    # -- health ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Status, state path, timings and faults of the emulator."""
        return self._call("GET", "health")  # type: ignore[no-any-return]

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the emulator answers (e.g. after starting it in a subprocess)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except (OSError, EmulatorControlError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def reset(self) -> None:
        """
        Forget every resource, failure rule, fault setting, logged request and limit statistic; reset
        the clock and the limits to the emulator's startup ones.
        """
        self._call("POST", "reset")

    # -- lifecycle -------------------------------------------------------------------------------

    def timings(self) -> dict[str, float | None]:
        return self._call("GET", "timings")  # type: ignore[no-any-return]

    def set_timings(
        self,
        pending_seconds: float | None = None,
        running_seconds: float | None = None,
        cancel_seconds: float | None = None,
        training_seconds: float | None = None,
        channel_seconds: float | None = None,
    ) -> dict[str, float | None]:
        """Set phase durations (seconds) for resources created from now on; omitted ones are kept."""
        values = {
            "pending_seconds": pending_seconds,
            "running_seconds": running_seconds,
            "cancel_seconds": cancel_seconds,
            "training_seconds": training_seconds,
            "channel_seconds": channel_seconds,
        }
        return self._call("PUT", "timings", {k: v for k, v in values.items() if v is not None})  # type: ignore[no-any-return]

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock forward (jobs progress as if that much time had passed)."""
        return float(self._call("POST", "clock", {"advanceSeconds": seconds})["clockOffset"])

    def fail_job(
        self, name: str, code: str = DEFAULT_FAILURE_CODE, message: str = DEFAULT_FAILURE_MESSAGE
    ) -> dict[str, Any]:
        """
        Make the inference job or trained model called ``name`` end in ``CREATE_FAILED`` with
        ``statusDetails {statusCode: code, message: message}``: ones started later, and ones in flight.
        """
        return self._call("POST", "fail", {"name": name, "statusCode": code, "message": message})  # type: ignore[no-any-return]

    def failures(self) -> list[dict[str, str]]:
        """The failure rules: ``[{"name", "statusCode", "message"}]`` (they persist in the state file)."""
        return self._call("GET", "failures")["failures"]  # type: ignore[no-any-return]

    def force_status(
        self,
        arn: str,
        status: str,
        version_identifier: str | None = None,
        status_details: dict[str, str] | None = None,
    ) -> None:
        """Put a resource (a given trained model version, or the latest) into ``status`` now."""
        body: dict[str, Any] = {"arn": arn, "status": status}
        if version_identifier:
            body["versionIdentifier"] = version_identifier
        if status_details is not None:
            body["statusDetails"] = status_details
        self._call("POST", "status", body)

    # -- faults ----------------------------------------------------------------------------------

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "faults")  # type: ignore[no-any-return]

    def set_faults(
        self,
        *,
        throttle_rate: float | None = None,
        error_rate: float | None = None,
        drop_rate: float | None = None,
        latency_seconds: float | None = None,
        throttle_next: int | None = None,
        error_next: int | None = None,
        drop_next: int | None = None,
        operations: list[str] | None = None,
        replace: bool = False,
    ) -> dict[str, Any]:
        """
        Inject faults into AWS API calls (``operations``: only these operation names).

        Rates are fractions (0..1) applied deterministically (0.5 = every second call); ``*_next``
        fault the next N calls. ``replace=True`` resets unspecified settings to off.
        """
        values = {
            "throttle_rate": throttle_rate,
            "error_rate": error_rate,
            "drop_rate": drop_rate,
            "latency_seconds": latency_seconds,
            "throttle_next": throttle_next,
            "error_next": error_next,
            "drop_next": drop_next,
            "operations": operations,
        }
        body: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
        body["replace"] = replace
        return self._call("PUT", "faults", body)  # type: ignore[no-any-return]

    def clear_faults(self) -> None:
        self._call("PUT", "faults", {"replace": True})

    # -- AWS limits ------------------------------------------------------------------------------

    def limits(self) -> dict[str, Any]:
        """The limits in force (``Limits`` fields; ``None``: switched off)."""
        return self._call("GET", "limits")  # type: ignore[no-any-return]

    def set_limits(self, **limits: float | bool | str | None) -> dict[str, Any]:
        """
        Change limits from now on; only the named ones change. ``None`` (or ``"off"``) switches a limit
        off; ``0`` is a quota of 0. Names: ``inference_jobs_per_membership``,
        ``inference_jobs_per_account``, ``training_jobs_per_membership``, ``training_jobs_per_account``,
        ``request_rate``, ``request_burst``, ``credential_seconds``, ``token_expiry``. Request-rate
        buckets start full again.
        """
        return self._call("PUT", "limits", dict(limits))  # type: ignore[no-any-return]

    def no_limits(self) -> dict[str, Any]:
        """Switch every limit off (quotas, request rates, token expiry)."""
        return self._call("PUT", "limits", {"off": True})  # type: ignore[no-any-return]

    def reset_limits(self) -> dict[str, Any]:
        """Back to the limits the emulator started with."""
        return self._call("PUT", "limits", {"reset": True})  # type: ignore[no-any-return]

    def stats(self) -> EmulatorStats:
        """Most jobs ever running at once per membership/account, calls received and throttled."""
        return EmulatorStats.from_json(self._call("GET", "stats"))

    def clear_stats(self) -> None:
        """Zero the call and throttle counts (the job high-water marks come from the jobs themselves)."""
        self._call("DELETE", "stats")

    def max_running_inference_jobs(
        self, membership_id: str | None = None, account_id: str | None = None
    ) -> int:
        """The most inference jobs ever pending or in progress at once in a membership or account."""
        return self.stats().inference_jobs.max_running(membership_id, account_id)

    def max_running_trained_models(
        self, membership_id: str | None = None, account_id: str | None = None
    ) -> int:
        """The most trained models ever pending or in progress (training) at once."""
        return self.stats().trained_models.max_running(membership_id, account_id)

    def throttled_count(self, operation: str | None = None) -> int:
        """Calls the request-rate limit throttled (of one operation, or all)."""
        return self.stats().throttled(operation)

    # -- request log -----------------------------------------------------------------------------

    def requests(self, operation: str | None = None) -> list[dict[str, Any]]:
        """
        AWS API calls received, oldest first: dicts with ``operation``, ``params`` (parsed, model
        member names), ``status`` (HTTP; 0 when the connection was dropped), ``error`` (code or None),
        ``fault`` (``throttle``/``error``/``drop``/``latency`` or None), ``limit`` (the AWS limit that
        refused it: ``rate``/``quota``/``token``, or None), ``seq`` and ``time``. STS calls are logged
        under their action (``AssumeRole``, ``GetCallerIdentity``).
        """
        query = f"operation={quote(operation)}" if operation else ""
        return self._call("GET", "requests", query=query)["requests"]  # type: ignore[no-any-return]

    def clear_requests(self) -> None:
        self._call("DELETE", "requests")

    # -- seeding ---------------------------------------------------------------------------------

    def seed_membership(
        self,
        membership_id: str,
        trained_model: bool = False,
        container_logs: bool | list[str] = True,
        logs_filter_pattern: str | None = None,
    ) -> dict[str, str]:
        """
        Create, through the API, what a membership needs to run inference, all ACTIVE at once.

        Returns ``configured_model_algorithm_arn``, ``configured_model_algorithm_association_arn``,
        ``ml_input_channel_arn`` and ``membership_id``; with ``trained_model=True`` also
        ``trained_model_arn`` and ``trained_model_version_identifier``. (Not in the request log.)

        ``container_logs``: the association's privacy configuration lets these accounts receive the
        container logs of training and inference jobs (``True``: the emulator's default account;
        ``False``: no ``containerLogs`` policy, so jobs report ``logsStatus`` ``PUBLISH_FAILED``).
        ``logs_filter_pattern`` sets the policies' ``filterPattern``.
        """
        body: dict[str, Any] = {
            "membershipId": membership_id,
            "trainedModel": trained_model,
            "containerLogs": container_logs,
        }
        if logs_filter_pattern is not None:
            body["logsFilterPattern"] = logs_filter_pattern
        return self._call("POST", "seed", body)  # type: ignore[no-any-return]

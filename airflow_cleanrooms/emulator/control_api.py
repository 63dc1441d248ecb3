"""
The control endpoint, under ``/_emulator/`` (no AWS path starts with an underscore), for tests and demos.

JSON in, JSON out, no signing::

    GET    /_emulator/health                  -> {"status": "ok", "state", "timings", "faults"}
    POST   /_emulator/reset                   forget resources and logged requests; startup settings
    GET    /_emulator/timings | PUT {...}     lifecycle phase durations (seconds)
    GET    /_emulator/faults  | PUT {...}     throttle/error/drop rates, latency, *_next, operations
    POST   /_emulator/fail {"name", "statusCode", "message"}   make that job end in CREATE_FAILED
    GET    /_emulator/failures                    the failure rules
    POST   /_emulator/status {"arn", "status", "versionIdentifier"?, "statusDetails"?}  force a status
    POST   /_emulator/clock {"advanceSeconds": S} move the emulator's clock forward
    GET    /_emulator/requests[?operation=Op]     logged AWS API calls; DELETE clears them
    POST   /_emulator/seed {"membershipId", "trainedModel": bool}  build a membership's objects
    GET    /_emulator/limits | PUT {...}      AWS limits (null or "off" switches one off);
                                              PUT {"reset": true} startup limits, {"off": true} none
    GET    /_emulator/stats                   most jobs ever pending/in progress at once per membership
                                              and account, calls received and throttled per operation
    DELETE /_emulator/stats                   zero the call and throttle counts
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from airflow_cleanrooms.emulator.defaults import DEFAULT_FAILURE_CODE, DEFAULT_FAILURE_MESSAGE
from airflow_cleanrooms.emulator.errors import EmulatorError
from airflow_cleanrooms.emulator.limits import Limits
from airflow_cleanrooms.emulator.resources import INFERENCE_JOB, TRAINED_MODEL
from airflow_cleanrooms.emulator.responses import CONTROL_PREFIX
from airflow_cleanrooms.emulator.wire import HttpReply, HttpRequest, json_reply

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.faults import FaultInjector
    from airflow_cleanrooms.emulator.models import CleanRoomsMLBackend
    from airflow_cleanrooms.emulator.requestlog import RequestLog
    from airflow_cleanrooms.emulator.responses import CleanRoomsMLResponses

SEED_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cleanrooms-ml-emulator:latest"
SEED_ROLE = "arn:aws:iam::123456789012:role/cleanrooms-ml-emulator"


class ControlAPI:
    def __init__(
        self, responses: CleanRoomsMLResponses, state: str, on_reset: Callable[[], None] | None = None
    ):
        self.responses = responses
        self.on_reset = on_reset
        self.limits: Limits = responses.limits
        self.initial_limits = self.limits.as_dict()
        self.backend: CleanRoomsMLBackend = responses.backend
        self.faults: FaultInjector = responses.faults
        self.requests: RequestLog = responses.requests
        self.state = state
        self._routes: dict[tuple[str, str], Callable[[dict[str, Any], dict[str, list[str]]], Any]] = {
            ("GET", "health"): self.health,
            ("POST", "reset"): self.reset,
            ("GET", "timings"): lambda body, q: self.backend.timings.as_dict(),
            ("PUT", "timings"): self.set_timings,
            ("GET", "faults"): lambda body, q: self.faults.settings.as_dict(),
            ("PUT", "faults"): self.set_faults,
            ("POST", "fail"): self.fail,
            ("GET", "failures"): lambda body, q: {"failures": self.backend.failure_rules()},
            ("POST", "status"): self.force_status,
            ("POST", "clock"): self.clock,
            ("GET", "requests"): self.list_requests,
            ("DELETE", "requests"): self.clear_requests,
            ("POST", "seed"): self.seed,
            ("GET", "limits"): lambda body, q: self.limits.as_dict(),
            ("PUT", "limits"): self.set_limits,
            ("GET", "stats"): self.stats,
            ("DELETE", "stats"): self.clear_stats,
        }

    def handle(self, request: HttpRequest) -> HttpReply:
        name = request.raw_path[len(CONTROL_PREFIX) :].strip("/")
        handler = self._routes.get((request.method, name))
        if handler is None:
            return json_reply(404, {"error": f"no control endpoint {request.method} {request.raw_path}"})
        try:
            body = json.loads(request.body) if request.body.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            return json_reply(200, handler(body, parse_qs(request.query_string)))
        except EmulatorError as error:
            return json_reply(error.status, {"error": error.message, "code": error.code})
        except (ValueError, KeyError, TypeError) as error:
            return json_reply(400, {"error": str(error)})

    def health(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        return {
            "status": "ok",
            "state": self.state,
            "timings": self.backend.timings.as_dict(),
            "faults": self.faults.settings.as_dict(),
            "clockOffset": self.backend.clock_offset,
            "limits": self.limits.as_dict(),
        }

    def set_limits(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        """``{"reset": true}``: startup limits; ``{"off": true}``: none; then the given ones."""
        values = dict(self.initial_limits) if body.pop("reset", False) else {}
        if body.pop("off", False):
            values.update(Limits.off().as_dict())
        values.update(body)
        checked = Limits(**self.limits.as_dict())
        checked.update(values)  # all or nothing: a bad value changes no limit
        self.limits.update(checked.as_dict())
        self.responses.limiter.refill()
        return self.limits.as_dict()

    def stats(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        quotas = self.backend.quotas
        now = self.backend.now()
        result: dict[str, Any] = dict(self.responses.limiter.counts())
        if quotas is not None:
            result["inferenceJobs"] = quotas.concurrency(INFERENCE_JOB, now)
            result["trainedModels"] = quotas.concurrency(TRAINED_MODEL, now)
        return result

    def clear_stats(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        self.responses.limiter.reset()
        return {"cleared": True}

    def reset(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        if self.on_reset is not None:
            self.on_reset()
        else:
            self.backend.reset()
            self.faults.configure({}, replace=True)
            self.requests.clear()
        return {"reset": True}

    def set_timings(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        self.backend.timings.update(body)
        return self.backend.timings.as_dict()

    def set_faults(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        replace = bool(body.pop("replace", False))
        return self.faults.configure(body, replace=replace).as_dict()

    def fail(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        name = body["name"]
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty string")
        code = body.get("statusCode") or DEFAULT_FAILURE_CODE
        message = body.get("message") or DEFAULT_FAILURE_MESSAGE
        changed = self.backend.add_failure_rule(name, code, message)
        return {"name": name, "statusCode": code, "message": message, "inFlightChanged": changed}

    def force_status(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        self.backend.force_status(
            body["arn"], body["status"], body.get("versionIdentifier"), body.get("statusDetails")
        )
        return {"arn": body["arn"], "status": body["status"]}

    def clock(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        seconds = body["advanceSeconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError("advanceSeconds must be a number >= 0")
        self.backend.clock_offset += float(seconds)
        return {"clockOffset": self.backend.clock_offset}

    def list_requests(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        operation = query.get("operation", [None])[0]
        return {"requests": self.requests.entries(operation)}

    def clear_requests(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        self.requests.clear()
        return {"cleared": True}

    def seed(self, body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        """Create algorithm, association, channel (and a trained model) through the API, all ACTIVE."""
        membership = body["membershipId"]
        call = self.responses.call
        prefix = body.get("namePrefix") or f"emulator-{uuid.uuid4().hex[:8]}"
        algorithm = call(
            "CreateConfiguredModelAlgorithm",
            {
                "name": f"{prefix}-algorithm",
                "roleArn": SEED_ROLE,
                "trainingContainerConfig": {"imageUri": SEED_IMAGE},
                "inferenceContainerConfig": {"imageUri": SEED_IMAGE},
            },
        )["configuredModelAlgorithmArn"]
        association_request: dict[str, Any] = {
            "membershipIdentifier": membership,
            "configuredModelAlgorithmArn": algorithm,
            "name": f"{prefix}-association",
        }
        logs_accounts = body.get("containerLogs", True)
        if logs_accounts:
            if logs_accounts is True:
                logs_accounts = [self.responses.authenticator.default_account]
            policy: dict[str, Any] = {"allowedAccountIds": list(logs_accounts)}
            if body.get("logsFilterPattern"):
                policy["filterPattern"] = body["logsFilterPattern"]
            association_request["privacyConfiguration"] = {
                "policies": {
                    "trainedModels": {"containerLogs": [policy]},
                    "trainedModelInferenceJobs": {"containerLogs": [policy]},
                }
            }
        association = call("CreateConfiguredModelAlgorithmAssociation", association_request)[
            "configuredModelAlgorithmAssociationArn"
        ]
        channel = call(
            "CreateMLInputChannel",
            {
                "membershipIdentifier": membership,
                "configuredModelAlgorithmAssociations": [association],
                "inputChannel": {
                    "dataSource": {
                        "protectedQueryInputParameters": {
                            "sqlParameters": {"queryString": "SELECT * FROM data"}
                        }
                    },
                    "roleArn": SEED_ROLE,
                },
                "name": f"{prefix}-channel",
                "retentionInDays": 7,
            },
        )["mlInputChannelArn"]
        self.backend.force_status(channel, "ACTIVE")
        result = {
            "membership_id": membership,
            "configured_model_algorithm_arn": algorithm,
            "configured_model_algorithm_association_arn": association,
            "ml_input_channel_arn": channel,
        }
        if body.get("trainedModel"):
            created = call(
                "CreateTrainedModel",
                {
                    "membershipIdentifier": membership,
                    "name": f"{prefix}-model",
                    "configuredModelAlgorithmAssociationArn": association,
                    "resourceConfig": {"instanceType": "ml.m5.xlarge", "volumeSizeInGB": 10},
                    "dataChannels": [{"mlInputChannelArn": channel, "channelName": "train"}],
                },
            )
            self.backend.force_status(created["trainedModelArn"], "ACTIVE")
            result["trained_model_arn"] = created["trainedModelArn"]
            if "versionIdentifier" in created:  # not in botocore 1.37's model (Airflow 3.0's pins)
                result["trained_model_version_identifier"] = created["versionIdentifier"]
        return result

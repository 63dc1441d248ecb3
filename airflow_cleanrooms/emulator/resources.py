"""
The emulator's vocabulary: kinds of resources, their statuses, who calls, and a stored resource.

The leaf of the emulator's one-way chain (as in moto: exceptions <- models <- responses <- urls):
``resources`` and ``wire`` <- ``logs``, ``quotas``, ``credentials`` <- ``models`` <- ``responses`` <-
``server``. It imports nothing of the emulator but its defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from airflow_cleanrooms.emulator.defaults import DEFAULT_ACCOUNT_ID, DEFAULT_REGION
from airflow_cleanrooms.service_model import enum_values

# Resource kinds are the resource-type segment of their ARNs.
ALGORITHM = "configured-model-algorithm"
ASSOCIATION = "configured-model-algorithm-association"
CHANNEL = "ml-input-channel"
TRAINED_MODEL = "trained-model"
INFERENCE_JOB = "trained-model-inference-job"
KINDS = (ALGORITHM, ASSOCIATION, CHANNEL, TRAINED_MODEL, INFERENCE_JOB)
# The model's status enum of each kind that has a lifecycle.
STATUS_SHAPES = {
    CHANNEL: "MLInputChannelStatus",
    TRAINED_MODEL: "TrainedModelStatus",
    INFERENCE_JOB: "TrainedModelInferenceJobStatus",
}

# Statuses under which a resource still holds its name in its membership.
IN_FLIGHT = frozenset({"CREATE_PENDING", "CREATE_IN_PROGRESS", "CANCEL_PENDING", "CANCEL_IN_PROGRESS"})
#: Pending or in progress: what a job can be cancelled in, and what holds a slot of its job quotas.
PENDING_OR_IN_PROGRESS = ("CREATE_PENDING", "CREATE_IN_PROGRESS")
for _kind in (INFERENCE_JOB, TRAINED_MODEL):
    _missing = set(IN_FLIGHT) - set(enum_values(STATUS_SHAPES[_kind]))
    if _missing:  # the model is the source of truth for statuses
        raise RuntimeError(f"{STATUS_SHAPES[_kind]} has no status {sorted(_missing)}")


@dataclass(frozen=True)
class Caller:
    """Who is calling, as far as the emulator cares: where ARNs are minted."""

    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    # The control endpoint's own calls (seeding): never refused by a service quota.
    quota_exempt: bool = False

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        if self.region.startswith("us-gov-"):
            return "aws-us-gov"
        return "aws"

    @property
    def arn_prefix(self) -> str:
        """The start of every ARN minted for this caller: partition, Region and account."""
        return f"arn:{self.partition}:cleanrooms-ml:{self.region}:{self.account_id}:"

    def arn(self, kind: str, resource_id: str, membership: str | None = None) -> str:
        prefix = self.arn_prefix
        if membership is None:
            return f"{prefix}{kind}/{resource_id}"
        return f"{prefix}membership/{membership}/{kind}/{resource_id}"


@dataclass
class Resource:
    """One stored resource (a trained model version is one resource)."""

    arn: str
    version: str
    kind: str
    membership: str
    name: str
    created: float
    phases: list[list[Any]]
    details: dict[str, str] | None
    # The request members it was created with; stored JSON is decoded on first use (a poll whose
    # response is cached never needs it).
    body_data: dict[str, Any] | str
    tags: dict[str, str] | None = None  # filled by Store.get (same query)

    @property
    def body(self) -> dict[str, Any]:
        if isinstance(self.body_data, str):
            self.body_data = json.loads(self.body_data)
        return self.body_data  # type: ignore[return-value]

    def status_at(self, now: float) -> tuple[str | None, float]:
        """``(status, since)`` at ``now``; resources without a lifecycle return ``(None, created)``."""
        status, since = None, self.created
        for start, phase_status in self.phases:
            if start <= now:
                status, since = phase_status, start
            else:
                break
        return status, since

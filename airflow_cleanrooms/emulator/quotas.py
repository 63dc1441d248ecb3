"""
Service quotas on pending/in-progress jobs, and the highest number of jobs ever running at once.

AWS Clean Rooms ML's documented defaults ("AWS Clean Rooms ML quotas" in the Clean Rooms user guide):
5 pending/in-progress custom model inference jobs per membership and 10 per account, and the same 5 /
10 for custom model training jobs (trained models). A job counts while its status is
``CREATE_PENDING`` or ``CREATE_IN_PROGRESS``; a start that would exceed a quota is answered
``ServiceQuotaExceededException`` (HTTP 402) with ``quotaName`` and ``quotaValue``.

**Whose account.** A membership belongs to one AWS account, the only one that can start jobs in it,
so the account of a job is the account of the caller that started it: the account in the role ARN of
credentials minted by the emulator's STS, the access key when it is 12 digits, otherwise the
emulator's default account (``--default-account``). That account is the one in the job's ARN, and
the account quota counts the jobs whose ARN has the caller's account and Region (quotas are per
account and Region, as on AWS).

**High-water marks** are computed from the stored lifecycle phases (the status history of every
job), so they are exact whatever the clock does, survive a restart on the same state file, and are
forgotten by a reset.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_cleanrooms.emulator.errors import ServiceQuotaExceededException
from airflow_cleanrooms.emulator.resources import INFERENCE_JOB, PENDING_OR_IN_PROGRESS, TRAINED_MODEL

if TYPE_CHECKING:
    import sqlite3

    from airflow_cleanrooms.emulator.limits import Limits
    from airflow_cleanrooms.emulator.models import Store
    from airflow_cleanrooms.emulator.resources import Caller

#: The statuses a quota counts ("pending/in-progress").
QUOTA_STATUSES = PENDING_OR_IN_PROGRESS


@dataclass(frozen=True)
class JobQuota:
    """The two quotas of one kind of job: their ``Limits`` fields and AWS's names for them."""

    kind: str
    label: str
    membership_limit: str
    account_limit: str
    membership_quota_name: str
    account_quota_name: str


# Quota names as AWS's "AWS Clean Rooms ML quotas" page (Clean Rooms user guide,
# clean-rooms-ml-quotas.html) lists them.
JOB_QUOTAS = {
    INFERENCE_JOB: JobQuota(
        kind=INFERENCE_JOB,
        label="custom model inference jobs",
        membership_limit="inference_jobs_per_membership",
        account_limit="inference_jobs_per_account",
        membership_quota_name="Pending/in progress custom model inference jobs per membership",
        account_quota_name="Pending/in progress custom model inference jobs per account",
    ),
    TRAINED_MODEL: JobQuota(
        kind=TRAINED_MODEL,
        label="custom model training jobs",
        membership_limit="training_jobs_per_membership",
        account_limit="training_jobs_per_account",
        membership_quota_name="Pending/in progress custom model training jobs per membership",
        account_quota_name="Pending/in progress custom model training jobs per account",
    ),
}

# Rows that may hold a quota at ``now``: their last phase has not begun yet, or is itself a quota
# status (a status forced with no end). The exact status is then computed from the phases.
_CANDIDATES = (
    "SELECT phases FROM resources WHERE kind = ? AND {scope}"
    " AND (json_extract(phases, '$[#-1][0]') > ? OR json_extract(phases, '$[#-1][1]') IN (?, ?))"
)


def _status_at(phases: list[list[Any]], now: float) -> str | None:
    status = None
    for start, phase_status in phases:
        if start > now:
            break
        status = phase_status
    return status


def account_of(arn: str) -> str:
    """The account field of an ARN."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


class JobQuotas:
    """
    Checks the job quotas at a start and reports how many jobs ran at once.

    :param store: the emulator's state.
    :param limits: the limits in force (read at every check, so changes apply at once).
    """

    def __init__(self, store: Store, limits: Limits):
        self.store = store
        self.limits = limits

    def in_flight(self, db: sqlite3.Connection, kind: str, scope: str, arg: Any, now: float) -> int:
        """How many ``kind`` jobs matching ``scope`` are pending or in progress at ``now``."""
        rows = db.execute(_CANDIDATES.format(scope=scope), (kind, arg, now, *QUOTA_STATUSES)).fetchall()
        return sum(1 for (phases,) in rows if _status_at(json.loads(phases), now) in QUOTA_STATUSES)

    def check(self, db: sqlite3.Connection, kind: str, membership: str, caller: Caller, now: float) -> None:
        """Refuse (``ServiceQuotaExceededException``) a start that would exceed a quota of ``kind``."""
        quota = JOB_QUOTAS.get(kind)
        if quota is None:
            return
        per_membership = getattr(self.limits, quota.membership_limit)
        if per_membership is not None:
            running = self.in_flight(db, kind, "membership = ?", membership, now)
            if running >= per_membership:
                raise self._refusal(quota.membership_quota_name, per_membership, running, quota.label)
        per_account = getattr(self.limits, quota.account_limit)
        if per_account is not None:
            prefix = caller.arn_prefix
            scope = f"substr(arn, 1, {len(prefix)}) = ?"
            running = self.in_flight(db, kind, scope, prefix, now)
            if running >= per_account:
                raise self._refusal(quota.account_quota_name, per_account, running, quota.label)

    @staticmethod
    def _refusal(name: str, value: int, running: int, label: str) -> ServiceQuotaExceededException:
        return ServiceQuotaExceededException(
            f"You have exceeded your service quota: {name} is {value}"
            f" ({running} {label} pending or in progress)",
            quota_name=name,
            quota_value=value,
        )

    def concurrency(self, kind: str, now: float) -> dict[str, dict[str, int]]:
        """
        ``maxRunningPerMembership`` / ``maxRunningPerAccount``: the highest number of ``kind`` jobs
        pending or in progress at once, ever; ``runningPerMembership`` / ``runningPerAccount``: now.
        """
        rows = self.store.query("SELECT arn, membership, phases FROM resources WHERE kind = ?", (kind,))
        events: list[tuple[float, int, str, str]] = []
        running: dict[str, dict[str, int]] = {"membership": defaultdict(int), "account": defaultdict(int)}
        for arn, membership, phases_text in rows:
            account = account_of(arn)
            holding = False
            for start, status in json.loads(phases_text):
                if start > now:
                    break
                if status in QUOTA_STATUSES and not holding:
                    events.append((start, 1, membership, account))
                    holding = True
                elif status not in QUOTA_STATUSES and holding:
                    events.append((start, -1, membership, account))
                    holding = False
            if holding:
                running["membership"][membership] += 1
                running["account"][account] += 1
        # At equal times a job that ends frees its slot before one that starts takes it (a status
        # holds from its start time on, as the quota check sees it).
        events.sort(key=lambda event: (event[0], event[1]))
        current: dict[str, dict[str, int]] = {"membership": defaultdict(int), "account": defaultdict(int)}
        peak: dict[str, dict[str, int]] = {"membership": {}, "account": {}}
        for _, delta, membership, account in events:
            for scope, key in (("membership", membership), ("account", account)):
                current[scope][key] += delta
                peak[scope][key] = max(peak[scope].get(key, 0), current[scope][key])
        return {
            "maxRunningPerMembership": dict(peak["membership"]),
            "maxRunningPerAccount": dict(peak["account"]),
            "runningPerMembership": {k: v for k, v in running["membership"].items() if v},
            "runningPerAccount": {k: v for k, v in running["account"].items() if v},
        }

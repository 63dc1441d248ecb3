"""
State and lifecycle of the emulated Clean Rooms ML resources (the "models" half, as in moto).

Every resource is one SQLite row holding the request members it was created with and its *phases*:
a list of ``[start_time, status]`` pairs written when it is created, cancelled or forced. The status
at any moment is the last phase whose start time has passed, so nothing runs in the background: jobs
progress while the emulator is stopped, and a restart on the same file carries on from the stored
times. Trained model versions share their model's ARN and differ by ``version``.

This module knows nothing about HTTP: it takes and returns plain dicts keyed by the model's member
names (``responses.py`` does the wire protocol).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_cleanrooms.emulator.errors import (
    ConflictException,
    ResourceNotFoundException,
    ValidationException,
)
from airflow_cleanrooms.emulator.logs import logs_publishing
from airflow_cleanrooms.emulator.resources import (
    ALGORITHM,
    ASSOCIATION,
    CHANNEL,
    IN_FLIGHT,
    INFERENCE_JOB,
    PENDING_OR_IN_PROGRESS,
    STATUS_SHAPES,
    TRAINED_MODEL,
    Caller,
    Resource,
)
from airflow_cleanrooms.emulator.wire import View
from airflow_cleanrooms.service_model import enum_values, service_model

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.quotas import JobQuotas


@dataclass
class Timings:
    """How long each lifecycle phase lasts, in seconds."""

    pending_seconds: float = 2.0
    running_seconds: float = 10.0
    # Training (CREATE_IN_PROGRESS of a trained model); None = running_seconds.
    training_seconds: float | None = None
    # CREATE_IN_PROGRESS of an ML input channel; None = running_seconds.
    channel_seconds: float | None = None
    # Each of CANCEL_PENDING and CANCEL_IN_PROGRESS.
    cancel_seconds: float = 1.0

    def running_for(self, kind: str) -> float:
        if kind == TRAINED_MODEL and self.training_seconds is not None:
            return self.training_seconds
        if kind == CHANNEL and self.channel_seconds is not None:
            return self.channel_seconds
        return self.running_seconds

    def update(self, values: Mapping[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown timing {key!r}; known: {', '.join(sorted(known))}")
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"timing {key} must be a number >= 0, got {value!r}")
            setattr(self, key, None if value is None else float(value))

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


@functools.lru_cache(maxsize=65536)
def collaboration_of(membership: str) -> str:
    """A stable collaboration id for a membership (the emulator has one collaboration per membership)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"cleanrooms-ml-emulator/membership/{membership}"))


@functools.lru_cache(maxsize=65536)
def _image_digest(arn: str) -> str:
    return "sha256:" + uuid.uuid5(uuid.NAMESPACE_URL, arn).hex * 2


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    arn TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    membership TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    created REAL NOT NULL,
    phases TEXT NOT NULL,
    details TEXT,
    body TEXT NOT NULL,
    UNIQUE (arn, version)
);
CREATE INDEX IF NOT EXISTS resources_by_membership ON resources (kind, membership, id);
CREATE INDEX IF NOT EXISTS resources_by_name ON resources (kind, membership, name);
CREATE TABLE IF NOT EXISTS tags (
    arn TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (arn, key)
);
CREATE TABLE IF NOT EXISTS ml_configurations (
    membership TEXT PRIMARY KEY,
    output_location TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failure_rules (
    name TEXT PRIMARY KEY,
    status_code TEXT NOT NULL,
    message TEXT NOT NULL
);
"""

_COLUMNS = "arn, version, kind, membership, name, created, phases, details, body"


class Store:
    """SQLite persistence: a single connection guarded by a lock (safe from any thread)."""

    def __init__(self, path: str = ":memory:"):
        self.path = path
        self._lock = threading.RLock()
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def to_resource(row: tuple[Any, ...]) -> Resource:
        arn, version, kind, membership, name, created, phases, details, body = row
        return Resource(
            arn=arn,
            version=version,
            kind=kind,
            membership=membership,
            name=name,
            created=created,
            phases=json.loads(phases),
            details=json.loads(details) if details else None,
            body_data=body,
        )

    def insert(self, db: sqlite3.Connection, res: Resource) -> None:
        db.execute(
            f"INSERT INTO resources ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                res.arn,
                res.version,
                res.kind,
                res.membership,
                res.name,
                res.created,
                json.dumps(res.phases),
                json.dumps(res.details) if res.details else None,
                json.dumps(res.body),
            ),
        )

    def save_phases(self, db: sqlite3.Connection, res: Resource) -> None:
        db.execute(
            "UPDATE resources SET phases = ?, details = ? WHERE arn = ? AND version = ?",
            (json.dumps(res.phases), json.dumps(res.details) if res.details else None, res.arn, res.version),
        )

    def get(self, arn: str, version: str | None = None) -> Resource | None:
        """The resource with this ARN: a given version, or the latest one."""
        tags = "(SELECT json_group_object(key, value) FROM tags WHERE tags.arn = resources.arn)"
        if version is None:
            rows = self.query(
                f"SELECT {_COLUMNS}, {tags} FROM resources WHERE arn = ? ORDER BY id DESC LIMIT 1", (arn,)
            )
        else:
            rows = self.query(
                f"SELECT {_COLUMNS}, {tags} FROM resources WHERE arn = ? AND version = ?", (arn, version)
            )
        if not rows:
            return None
        res = self.to_resource(rows[0][:-1])
        res.tags = json.loads(rows[0][-1]) if rows[0][-1] else {}
        return res

    def tags(self, arn: str) -> dict[str, str]:
        return dict(self.query("SELECT key, value FROM tags WHERE arn = ?", (arn,)))  # type: ignore[arg-type]


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ValidationException("The nextToken is invalid") from exc
    if not isinstance(offset, int) or offset < 0:
        raise ValidationException("The nextToken is invalid")
    return offset


def _project(value: Any, shape: Any) -> Any:
    """Keep only what ``shape`` (a botocore output shape) has members for, recursively."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        return {
            k: _project(v, shape.members[k]) for k, v in value.items() if k in shape.members and v is not None
        }
    if kind == "list" and isinstance(value, list):
        return [_project(item, shape.member) for item in value]
    return value


def output_shape(operation: str) -> Any:
    return service_model().operation_model(operation).output_shape


class CleanRoomsMLBackend:
    """The emulated service: one method per supported operation (snake_case of its name)."""

    DEFAULT_PAGE_SIZE = 100

    def __init__(self, store: Store, timings: Timings | None = None):
        self.store = store
        self.timings = timings or Timings()
        self.clock_offset = 0.0
        # Service quotas checked at every start (set by the server; None: no quotas at all).
        self.quotas: JobQuotas | None = None
        # Container logs decision per job (its association is immutable): see emulator/logs.py.
        self._logs_decisions: dict[tuple[str, str], tuple[str, str | None, dict[str, Any] | None]] = {}

    # -- time and lifecycle ------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def _create_phases(self, kind: str, now: float, final: str) -> list[list[Any]]:
        pending = self.timings.pending_seconds
        running = self.timings.running_for(kind)
        return [
            [now, "CREATE_PENDING"],
            [now + pending, "CREATE_IN_PROGRESS"],
            [now + pending + running, final],
        ]

    def _failure_rule(self, db: sqlite3.Connection, name: str) -> dict[str, str] | None:
        row = db.execute("SELECT status_code, message FROM failure_rules WHERE name = ?", (name,)).fetchone()
        return {"statusCode": row[0], "message": row[1]} if row else None

    def _new(
        self,
        db: sqlite3.Connection,
        kind: str,
        caller: Caller,
        membership: str | None,
        name: str,
        body: dict[str, Any],
        *,
        lifecycle: bool = True,
        arn: str | None = None,
    ) -> Resource:
        now = self.now()
        details = self._failure_rule(db, name) if kind in (INFERENCE_JOB, TRAINED_MODEL) else None
        phases = self._create_phases(kind, now, "CREATE_FAILED" if details else "ACTIVE") if lifecycle else []
        res = Resource(
            arn=arn or caller.arn(kind, str(uuid.uuid4()), membership),
            version=str(uuid.uuid4()) if kind == TRAINED_MODEL else "",
            kind=kind,
            membership=membership or "",
            name=name,
            created=now,
            phases=phases,
            details=details,
            body_data=body,
        )
        self.store.insert(db, res)
        tags = body.get("tags") or {}
        db.executemany(
            "INSERT OR REPLACE INTO tags (arn, key, value) VALUES (?, ?, ?)",
            [(res.arn, k, v) for k, v in tags.items()],
        )
        return res

    def _load(
        self, kind: str, arn: str, membership: str | None = None, version: str | None = None
    ) -> Resource:
        res = self.store.get(arn, version)
        label = kind.replace("-", " ")
        if res is None or res.kind != kind or (membership is not None and res.membership != membership):
            what = f"{label} {arn}" + (f" (version {version})" if version else "")
            raise ResourceNotFoundException(f"The {what} was not found")
        return res

    def _status(self, res: Resource) -> str | None:
        return res.status_at(self.now())[0]

    def _require_active(self, res: Resource, what: str) -> None:
        status = self._status(res)
        if status != "ACTIVE":
            raise ConflictException(f"The {what} {res.arn} is {status}, not ACTIVE")

    def _view(
        self, res: Resource, operation: str, shape: Any = None, now: float | None = None
    ) -> dict[str, Any]:
        """The resource as ``operation`` returns it at ``now`` (``shape``: the output shape by default)."""
        at = self.now() if now is None else now
        status, since = res.status_at(at)
        data: dict[str, Any] = dict(res.body)
        data.update(self._computed(res))
        data["createTime"] = to_datetime(res.created)
        data["updateTime"] = to_datetime(since)
        data["membershipIdentifier"] = res.membership or None
        data["collaborationIdentifier"] = collaboration_of(res.membership) if res.membership else None
        data["name"] = res.name
        if status is not None:
            data["status"] = status
            if status.endswith("FAILED") and res.details:
                data["statusDetails"] = res.details
            if res.kind in (TRAINED_MODEL, INFERENCE_JOB) and self._container_started(res, at):
                logs_status, logs_details, _ = self.logs_decision(res)
                data["logsStatus"] = logs_status
                data["logsStatusDetails"] = logs_details
                data["metricsStatus"] = "PUBLISH_SUCCEEDED"
        shape = shape if shape is not None else output_shape(operation)
        if "tags" in shape.members:
            data["tags"] = res.tags if res.tags is not None else self.store.tags(res.arn)
        return _project(data, shape)

    @staticmethod
    def _container_started(res: Resource, now: float) -> bool:
        """Whether the job's container had started by ``now`` (its CREATE_IN_PROGRESS phase began)."""
        return any(status == "CREATE_IN_PROGRESS" and start <= now for start, status in res.phases)

    def logs_decision(self, res: Resource) -> tuple[str, str | None, dict[str, Any] | None]:
        """``(logsStatus, logsStatusDetails, containerLogs policy)`` of a job (see emulator/logs.py)."""
        key = (res.arn, res.version)
        decision = self._logs_decisions.get(key)
        if decision is None:
            association_arn = res.body.get("configuredModelAlgorithmAssociationArn")
            if not association_arn and res.kind == INFERENCE_JOB:
                model = self.store.get(
                    res.body.get("trainedModelArn", ""), res.body.get("trainedModelVersionIdentifier")
                )
                association_arn = model.body.get("configuredModelAlgorithmAssociationArn") if model else None
            association = self.store.get(association_arn) if association_arn else None
            account = res.arn.split(":")[4]
            decision = logs_publishing(res.kind, association.body if association else None, account)
            self._logs_decisions[key] = decision
        return decision

    def container_jobs(self, account_id: str, region: str) -> list[Resource]:
        """The inference jobs and trained model versions started by ``account_id`` in ``region``."""
        caller = Caller(region=region, account_id=account_id)
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM resources WHERE kind IN (?, ?) AND substr(arn, 1, ?) = ? ORDER BY id",
            (INFERENCE_JOB, TRAINED_MODEL, len(caller.arn_prefix), caller.arn_prefix),
        )
        return [self.store.to_resource(row) for row in rows]

    def _cached_view(self, res: Resource, operation: str) -> View:
        """The ``operation`` response for ``res``, with a key that changes whenever the response does."""
        now = self.now()
        status, since = res.status_at(now)
        tags = tuple(sorted((res.tags or {}).items()))
        details = json.dumps(res.details, sort_keys=True) if res.details else None
        key = (operation, res.arn, res.version, status, since, details, tags)
        return View(key, lambda: self._view(res, operation, now=now))

    def _computed(self, res: Resource) -> dict[str, Any]:
        digest = _image_digest(res.arn)
        if res.kind == INFERENCE_JOB:
            return {"trainedModelInferenceJobArn": res.arn, "inferenceContainerImageDigest": digest}
        if res.kind == TRAINED_MODEL:
            return {
                "trainedModelArn": res.arn,
                "versionIdentifier": res.version,
                "trainingContainerImageDigest": digest,
            }
        if res.kind == CHANNEL:
            return {
                "mlInputChannelArn": res.arn,
                "numberOfRecords": 1000,
                "numberOfFiles": 1.0,
                "sizeInGb": 0.01,
            }
        if res.kind == ASSOCIATION:
            return {"configuredModelAlgorithmAssociationArn": res.arn}
        return {"configuredModelAlgorithmArn": res.arn}

    def _page(
        self, operation: str, result_key: str, where: str, args: tuple[Any, ...], params: Mapping[str, Any]
    ) -> dict[str, Any]:
        offset = _decode_token(params.get("nextToken"))
        limit = params.get("maxResults") or self.DEFAULT_PAGE_SIZE
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM resources WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit + 1, offset),
        )
        member_shape = output_shape(operation).members[result_key].member
        items = [self._view(self.store.to_resource(row), operation, member_shape) for row in rows[:limit]]
        out: dict[str, Any] = {result_key: items}
        if len(rows) > limit:
            out["nextToken"] = _encode_token(offset + limit)
        return out

    def _cancel(self, res: Resource, what: str) -> None:
        with self.store.transaction() as db:
            fresh = self.store.get(res.arn, res.version) or res
            now = self.now()
            status, _ = fresh.status_at(now)
            if status in ("CANCEL_PENDING", "CANCEL_IN_PROGRESS"):
                return
            if status not in PENDING_OR_IN_PROGRESS:
                raise ConflictException(f"The {what} {res.arn} is {status} and cannot be cancelled")
            c = self.timings.cancel_seconds
            fresh.phases = [p for p in fresh.phases if p[0] <= now]
            fresh.phases += [
                [now, "CANCEL_PENDING"],
                [now + c, "CANCEL_IN_PROGRESS"],
                [now + 2 * c, "INACTIVE"],
            ]
            self.store.save_phases(db, fresh)

    # -- control -----------------------------------------------------------------------------------

    def add_failure_rule(self, name: str, status_code: str, message: str) -> int:
        """Make jobs/models called ``name`` end in CREATE_FAILED; returns how many in flight changed."""
        changed = 0
        with self.store.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO failure_rules (name, status_code, message) VALUES (?, ?, ?)",
                (name, status_code, message),
            )
            now = self.now()
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM resources WHERE name = ? AND kind IN (?, ?)",
                (name, INFERENCE_JOB, TRAINED_MODEL),
            ).fetchall()
            for row in rows:
                res = self.store.to_resource(row)
                last_start, last_status = res.phases[-1]
                if last_status == "ACTIVE" and last_start > now:
                    res.phases[-1] = [last_start, "CREATE_FAILED"]
                    res.details = {"statusCode": status_code, "message": message}
                    self.store.save_phases(db, res)
                    changed += 1
        return changed

    def failure_rules(self) -> list[dict[str, str]]:
        rows = self.store.query("SELECT name, status_code, message FROM failure_rules ORDER BY name")
        return [{"name": n, "statusCode": c, "message": m} for n, c, m in rows]

    def force_status(
        self, arn: str, status: str, version: str | None = None, status_details: dict[str, str] | None = None
    ) -> None:
        """Put a resource in ``status`` from now on (tests, and seeding ACTIVE objects quickly)."""
        with self.store.transaction() as db:
            res = self.store.get(arn, version)
            if res is None:
                raise ResourceNotFoundException(f"The resource {arn} was not found")
            if not res.phases:
                raise ValidationException(f"The resource {arn} has no status")
            allowed = enum_values(STATUS_SHAPES[res.kind])
            if status not in allowed:
                raise ValidationException(f"{status!r} is not a status of a {res.kind}: {', '.join(allowed)}")
            now = self.now()
            res.phases = [p for p in res.phases if p[0] < now] + [[now, status]]
            if status_details is not None:
                res.details = status_details
            self.store.save_phases(db, res)

    def reset(self) -> None:
        with self.store.transaction() as db:
            for table in ("resources", "tags", "failure_rules", "ml_configurations"):
                db.execute(f"DELETE FROM {table}")
        self.clock_offset = 0.0
        self._logs_decisions.clear()

    # -- configured model algorithms and associations ----------------------------------------------

    def create_configured_model_algorithm(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        body = {k: v for k, v in params.items()}
        with self.store.transaction() as db:
            res = self._new(db, ALGORITHM, caller, None, params["name"], body, lifecycle=False)
        return {"configuredModelAlgorithmArn": res.arn}

    def get_configured_model_algorithm(self, params: dict[str, Any], caller: Caller) -> View:
        res = self._load(ALGORITHM, params["configuredModelAlgorithmArn"])
        return self._cached_view(res, "GetConfiguredModelAlgorithm")

    def list_configured_model_algorithms(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return self._page(
            "ListConfiguredModelAlgorithms", "configuredModelAlgorithms", "kind = ?", (ALGORITHM,), params
        )

    def create_configured_model_algorithm_association(
        self, params: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        membership = params["membershipIdentifier"]
        self._load(ALGORITHM, params["configuredModelAlgorithmArn"])
        body = {k: v for k, v in params.items() if k != "membershipIdentifier"}
        with self.store.transaction() as db:
            res = self._new(db, ASSOCIATION, caller, membership, params["name"], body, lifecycle=False)
        return {"configuredModelAlgorithmAssociationArn": res.arn}

    def get_configured_model_algorithm_association(self, params: dict[str, Any], caller: Caller) -> View:
        res = self._load(
            ASSOCIATION, params["configuredModelAlgorithmAssociationArn"], params["membershipIdentifier"]
        )
        return self._cached_view(res, "GetConfiguredModelAlgorithmAssociation")

    def list_configured_model_algorithm_associations(
        self, params: dict[str, Any], caller: Caller
    ) -> dict[str, Any]:
        return self._page(
            "ListConfiguredModelAlgorithmAssociations",
            "configuredModelAlgorithmAssociations",
            "kind = ? AND membership = ?",
            (ASSOCIATION, params["membershipIdentifier"]),
            params,
        )

    # -- ML input channels -------------------------------------------------------------------------

    def create_ml_input_channel(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        membership = params["membershipIdentifier"]
        for arn in params["configuredModelAlgorithmAssociations"]:
            self._load(ASSOCIATION, arn)
        body = {k: v for k, v in params.items() if k != "membershipIdentifier"}
        with self.store.transaction() as db:
            res = self._new(db, CHANNEL, caller, membership, params["name"], body)
        return {"mlInputChannelArn": res.arn}

    def get_ml_input_channel(self, params: dict[str, Any], caller: Caller) -> View:
        res = self._load(CHANNEL, params["mlInputChannelArn"], params["membershipIdentifier"])
        return self._cached_view(res, "GetMLInputChannel")

    def list_ml_input_channels(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        return self._page(
            "ListMLInputChannels",
            "mlInputChannelsList",
            "kind = ? AND membership = ?",
            (CHANNEL, params["membershipIdentifier"]),
            params,
        )

    # -- trained models ----------------------------------------------------------------------------

    def create_trained_model(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        membership = params["membershipIdentifier"]
        name = params["name"]
        self._load(ASSOCIATION, params["configuredModelAlgorithmAssociationArn"])
        for channel in params["dataChannels"]:
            self._load(CHANNEL, channel["mlInputChannelArn"])
        body = {
            k: v
            for k, v in params.items()
            if k not in ("membershipIdentifier", "incrementalTrainingDataChannels")
        }
        base_arn: str | None = None
        incremental = params.get("incrementalTrainingDataChannels") or []
        if incremental:
            outputs = []
            for channel in incremental:
                base = self._load(
                    TRAINED_MODEL, channel["trainedModelArn"], version=channel.get("versionIdentifier")
                )
                self._require_active(base, "base trained model")
                outputs.append(
                    {
                        "channelName": channel["channelName"],
                        "versionIdentifier": base.version,
                        "modelName": base.name,
                    }
                )
                if base.name == name and base.membership == membership:
                    base_arn = base.arn  # retraining a model under its own name: a new version of it
            body["incrementalTrainingDataChannels"] = outputs
        with self.store.transaction() as db:
            if base_arn is None:
                self._check_name_free(db, TRAINED_MODEL, membership, name)
            # After the name check: a retried start whose first try got through learns so (409)
            # even when the quota is full.
            self._check_quota(db, TRAINED_MODEL, membership, caller)
            res = self._new(db, TRAINED_MODEL, caller, membership, name, body, arn=base_arn)
        return {"trainedModelArn": res.arn, "versionIdentifier": res.version}

    def _check_name_free(self, db: sqlite3.Connection, kind: str, membership: str, name: str) -> None:
        now = self.now()
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM resources WHERE kind = ? AND membership = ? AND name = ?",
            (kind, membership, name),
        ).fetchall()
        for row in rows:
            res = self.store.to_resource(row)
            status = res.status_at(now)[0]
            if status in IN_FLIGHT:
                label = kind.replace("-", " ")
                raise ConflictException(
                    f"A {label} named {name!r} already exists in membership {membership}"
                    f" ({res.arn}, {status})"
                )

    def _check_quota(self, db: sqlite3.Connection, kind: str, membership: str, caller: Caller) -> None:
        if self.quotas is not None and not caller.quota_exempt:
            self.quotas.check(db, kind, membership, caller, self.now())

    def get_trained_model(self, params: dict[str, Any], caller: Caller) -> View:
        res = self._load(
            TRAINED_MODEL,
            params["trainedModelArn"],
            params["membershipIdentifier"],
            params.get("versionIdentifier"),
        )
        return self._cached_view(res, "GetTrainedModel")

    def list_trained_models(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        # One entry per model: its latest version.
        return self._page(
            "ListTrainedModels",
            "trainedModels",
            "kind = ? AND membership = ?"
            " AND id IN (SELECT MAX(id) FROM resources WHERE kind = ? GROUP BY arn)",
            (TRAINED_MODEL, params["membershipIdentifier"], TRAINED_MODEL),
            params,
        )

    def list_trained_model_versions(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = params["trainedModelArn"]
        self._load(TRAINED_MODEL, arn, params["membershipIdentifier"])
        # The status filter needs each version's current status, so page after filtering.
        rows = self.store.query(
            f"SELECT {_COLUMNS} FROM resources WHERE kind = ? AND arn = ? ORDER BY id DESC",
            (TRAINED_MODEL, arn),
        )
        member_shape = output_shape("ListTrainedModelVersions").members["trainedModels"].member
        items = [
            self._view(self.store.to_resource(row), "ListTrainedModelVersions", member_shape) for row in rows
        ]
        if params.get("status"):
            items = [item for item in items if item["status"] == params["status"]]
        offset = _decode_token(params.get("nextToken"))
        limit = params.get("maxResults") or self.DEFAULT_PAGE_SIZE
        out: dict[str, Any] = {"trainedModels": items[offset : offset + limit]}
        if len(items) > offset + limit:
            out["nextToken"] = _encode_token(offset + limit)
        return out

    def cancel_trained_model(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        res = self._load(
            TRAINED_MODEL,
            params["trainedModelArn"],
            params["membershipIdentifier"],
            params.get("versionIdentifier"),
        )
        self._cancel(res, "trained model")
        return {}

    # -- trained model inference jobs --------------------------------------------------------------

    def start_trained_model_inference_job(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        membership = params["membershipIdentifier"]
        model = self._load(
            TRAINED_MODEL, params["trainedModelArn"], version=params.get("trainedModelVersionIdentifier")
        )
        channel = self._load(CHANNEL, params["dataSource"]["mlInputChannelArn"])
        if params.get("configuredModelAlgorithmAssociationArn"):
            self._load(ASSOCIATION, params["configuredModelAlgorithmAssociationArn"])
        self._require_active(model, "trained model")
        self._require_active(channel, "ML input channel")
        body = {k: v for k, v in params.items() if k != "membershipIdentifier"}
        with self.store.transaction() as db:
            self._check_name_free(db, INFERENCE_JOB, membership, params["name"])
            self._check_quota(db, INFERENCE_JOB, membership, caller)
            res = self._new(db, INFERENCE_JOB, caller, membership, params["name"], body)
        return {"trainedModelInferenceJobArn": res.arn}

    def get_trained_model_inference_job(self, params: dict[str, Any], caller: Caller) -> View:
        res = self._load(INFERENCE_JOB, params["trainedModelInferenceJobArn"], params["membershipIdentifier"])
        return self._cached_view(res, "GetTrainedModelInferenceJob")

    def list_trained_model_inference_jobs(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        where = "kind = ? AND membership = ?"
        args: tuple[Any, ...] = (INFERENCE_JOB, params["membershipIdentifier"])
        if params.get("trainedModelArn"):
            where += " AND json_extract(body, '$.trainedModelArn') = ?"
            args += (params["trainedModelArn"],)
        if params.get("trainedModelVersionIdentifier"):
            where += " AND json_extract(body, '$.trainedModelVersionIdentifier') = ?"
            args += (params["trainedModelVersionIdentifier"],)
        return self._page("ListTrainedModelInferenceJobs", "trainedModelInferenceJobs", where, args, params)

    def cancel_trained_model_inference_job(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        res = self._load(INFERENCE_JOB, params["trainedModelInferenceJobArn"], params["membershipIdentifier"])
        self._cancel(res, "trained model inference job")
        return {}

    # -- tags --------------------------------------------------------------------------------------

    def _tagged(self, arn: str) -> None:
        if self.store.get(arn) is None:
            raise ResourceNotFoundException(f"The resource {arn} was not found")

    def tag_resource(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = params["resourceArn"]
        self._tagged(arn)
        with self.store.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO tags (arn, key, value) VALUES (?, ?, ?)",
                [(arn, k, v) for k, v in params["tags"].items()],
            )
        return {}

    def untag_resource(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = params["resourceArn"]
        self._tagged(arn)
        with self.store.transaction() as db:
            db.executemany(
                "DELETE FROM tags WHERE arn = ? AND key = ?", [(arn, k) for k in params["tagKeys"]]
            )
        return {}

    def list_tags_for_resource(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        arn = params["resourceArn"]
        self._tagged(arn)
        return {"tags": self.store.tags(arn)}

    # -- ML configuration (a membership's default output location) ------------------------------

    def put_ml_configuration(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        now = self.now()
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO ml_configurations (membership, output_location, created, updated)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (membership)"
                " DO UPDATE SET output_location = excluded.output_location, updated = excluded.updated",
                (params["membershipIdentifier"], json.dumps(params["defaultOutputLocation"]), now, now),
            )
        return {}

    def get_ml_configuration(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        membership = params["membershipIdentifier"]
        rows = self.store.query(
            "SELECT output_location, created, updated FROM ml_configurations WHERE membership = ?",
            (membership,),
        )
        if not rows:
            raise ResourceNotFoundException(f"No ML configuration exists for membership {membership}")
        location, created, updated = rows[0]
        return {
            "membershipIdentifier": membership,
            "defaultOutputLocation": json.loads(location),
            "createTime": to_datetime(created),
            "updateTime": to_datetime(updated),
        }

    def delete_ml_configuration(self, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
        membership = params["membershipIdentifier"]
        with self.store.transaction() as db:
            deleted = db.execute("DELETE FROM ml_configurations WHERE membership = ?", (membership,)).rowcount
        if not deleted:
            raise ResourceNotFoundException(f"No ML configuration exists for membership {membership}")
        return {}

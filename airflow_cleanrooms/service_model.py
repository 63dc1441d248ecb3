"""
The installed botocore ``cleanroomsml`` service model, and validation of requests against it.

Every limit, pattern and enum the provider and the emulator enforce is read from the model botocore
ships, never copied by hand: a botocore upgrade that widens an enum or adds a member is picked up
without a code change. The one rule the model carries only in prose (tag keys must not start with
``aws:`` in any case, from the ``TagMap`` documentation) is added explicitly below.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore
import botocore.session

if TYPE_CHECKING:
    from botocore.model import OperationModel, ServiceModel, Shape

SERVICE_NAME = "cleanroomsml"

# From the TagMap documentation in the model: "Do not use aws:, AWS:, or any upper or lowercase
# combination of such as a prefix for keys as it is reserved for AWS use."
RESERVED_TAG_KEY_PREFIX = "aws:"
TAG_MAP_SHAPE = "TagMap"


@functools.cache
def service_model() -> ServiceModel:
    """Return the installed botocore service model for Clean Rooms ML (loaded once per process)."""
    return botocore.session.get_session().get_service_model(SERVICE_NAME)


@functools.cache
def operation_model(operation_name: str) -> OperationModel:
    """Return the model of one operation, e.g. ``StartTrainedModelInferenceJob``."""
    return service_model().operation_model(operation_name)


def botocore_version() -> str:
    """The release of the botocore this process imported: the one whose model every check here reads."""
    return botocore.__version__


def input_members(operation_name: str) -> dict[str, Shape]:
    """Top-level input members of an operation, in model order (camelCase names)."""
    shape = operation_model(operation_name).input_shape
    return dict(shape.members) if shape is not None else {}


def required_input_members(operation_name: str) -> list[str]:
    shape = operation_model(operation_name).input_shape
    return list(shape.required_members) if shape is not None else []


@functools.cache
def _model_history() -> dict[str, dict[str, str]]:
    added: dict[str, dict[str, str]] = json.loads(Path(__file__).with_name("model_history.json").read_text())[
        "added"
    ]
    return added


def additions(shape_name: str) -> dict[str, str]:
    """
    ``{member or enum value: the botocore release that added it}`` for ``shape_name``: what botocore added
    after the oldest release the provider supports.

    History is not in any installed model: ``model_history.json`` is read off botocore's releases by
    ``scripts/model-history``. With it, a refusal on an older botocore names the release to upgrade to.
    """
    return dict(_model_history().get(shape_name, {}))


def added_in(shape_name: str, name: str) -> str | None:
    """The botocore release that added ``name`` to ``shape_name`` (see :func:`additions`), else ``None``."""
    return _model_history().get(shape_name, {}).get(name)


def upgrade_hint(shape_name: str, name: str) -> str:
    """`` (botocore X added it; ...)`` when a newer botocore has ``name`` in ``shape_name``, else ``""``."""
    version = added_in(shape_name, name)
    if version is None:
        return ""
    return (
        f" (botocore {version} added {name!r}; this is botocore {botocore_version()}: upgrade botocore "
        f"and aiobotocore to {version} or later to use it)"
    )


def enum_values(shape_name: str) -> list[str]:
    """Allowed values of an enum shape, e.g. ``enum_values("InferenceInstanceType")``."""
    return list(service_model().shape_for(shape_name).enum)


def shape_limits(shape: Shape) -> tuple[int | float | None, int | float | None]:
    """``(min, max)`` of a shape: a length for strings, lists and maps; a value for numbers."""
    meta = shape.metadata
    return meta.get("min"), meta.get("max")


def camel_to_snake(name: str) -> str:
    """``mlModelInferencePayerAccountId`` -> ``ml_model_inference_payer_account_id``."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    snake = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", snake)
    return snake.lower()


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in a request: where it is, what is wrong, and what is allowed."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RequestValidationError(ValueError):
    """A request does not satisfy the service model; raised before any API call is made."""

    def __init__(self, operation_name: str, issues: list[ValidationIssue]):
        self.operation_name = operation_name
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"Invalid {operation_name} request ({len(issues)} problem(s)):\n{lines}")


def _show(value: Any, sensitive: bool) -> str:
    if sensitive:
        return "<redacted>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_sensitive(shape: Shape) -> bool:
    return bool(shape.metadata.get("sensitive"))


class _Validator:
    """Walks a value against a shape and yields every issue (not only the first)."""

    def __init__(self, path_names: Mapping[str, str] | None = None):
        # Lets a caller report top-level members under its own names (e.g. snake_case arguments).
        self.path_names = dict(path_names or {})

    def structure(self, value: Any, shape: Shape, path: str, secret: bool) -> Iterator[ValidationIssue]:
        if not isinstance(value, Mapping):
            yield ValidationIssue(
                path or "request", f"must be an object (dict), got {_type_name(value)} {_show(value, secret)}"
            )
            return
        members = shape.members
        for name in shape.required_members:
            if value.get(name) is None:
                yield ValidationIssue(self._join(path, name), "is required")
        is_union = bool(shape.metadata.get("union"))
        if is_union:
            present = [k for k in value if k in members and value[k] is not None]
            if len(present) != 1:
                allowed = ", ".join(members)
                yield ValidationIssue(
                    path or "request",
                    f"must set exactly one of {allowed}; got {len(present)} ({', '.join(present) or 'none'})",
                )
        for key, item in value.items():
            if key not in members:
                suggestion = difflib.get_close_matches(str(key), list(members), n=1, cutoff=0.6)
                if not suggestion:
                    lowered = {m.lower(): m for m in members}
                    norm = str(key).replace("_", "").replace("-", "").lower()
                    if norm in lowered:
                        suggestion = [lowered[norm]]
                hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
                yield ValidationIssue(
                    self._join(path, str(key)),
                    f"is not a member of {shape.name}{upgrade_hint(shape.name, str(key))}; "
                    f"allowed: {', '.join(members)}{hint}",
                )
                continue
            if item is None:
                continue
            member_shape = members[key]
            yield from self.value(item, member_shape, self._join(path, key), secret)

    def value(self, value: Any, shape: Shape, path: str, secret: bool = False) -> Iterator[ValidationIssue]:
        secret = secret or _is_sensitive(shape)
        kind = shape.type_name
        if kind == "structure":
            yield from self.structure(value, shape, path, secret)
        elif kind == "list":
            yield from self._list(value, shape, path, secret)
        elif kind == "map":
            yield from self._map(value, shape, path, secret)
        elif kind == "string":
            yield from self._string(value, shape, path, secret)
        elif kind in ("integer", "long"):
            yield from self._number(value, shape, path, secret, integral=True)
        elif kind in ("float", "double"):
            yield from self._number(value, shape, path, secret, integral=False)
        elif kind == "boolean":
            if not isinstance(value, bool):
                yield ValidationIssue(
                    path, f"must be a boolean, got {_type_name(value)} {_show(value, secret)}"
                )
        elif kind == "timestamp" and (
            not isinstance(value, (datetime, date, str, int, float)) or isinstance(value, bool)
        ):
            yield ValidationIssue(path, f"must be a timestamp, got {_type_name(value)}")

    def _size(self, size: int, shape: Shape, path: str, unit: str) -> Iterator[ValidationIssue]:
        low, high = shape_limits(shape)
        if low is not None and size < low:
            yield ValidationIssue(path, f"has {size} {unit}; at least {low} allowed{self._range(low, high)}")
        if high is not None and size > high:
            yield ValidationIssue(path, f"has {size} {unit}; at most {high} allowed{self._range(low, high)}")

    @staticmethod
    def _range(low: Any, high: Any) -> str:
        if low is not None and high is not None:
            return f" (allowed: {low} to {high})"
        return ""

    def _list(self, value: Any, shape: Shape, path: str, secret: bool) -> Iterator[ValidationIssue]:
        if not isinstance(value, (list, tuple)):
            yield ValidationIssue(path, f"must be a list, got {_type_name(value)} {_show(value, secret)}")
            return
        yield from self._size(len(value), shape, path, "items")
        for index, item in enumerate(value):
            yield from self.value(item, shape.member, f"{path}[{index}]", secret)

    def _map(self, value: Any, shape: Shape, path: str, secret: bool) -> Iterator[ValidationIssue]:
        if not isinstance(value, Mapping):
            yield ValidationIssue(
                path, f"must be an object (dict), got {_type_name(value)} {_show(value, secret)}"
            )
            return
        yield from self._size(len(value), shape, path, "entries")
        for key, item in value.items():
            key_path = f"{path}[{key!r}]"
            yield from self.value(key, shape.key, f"{key_path} (key)", secret)
            reserved = isinstance(key, str) and key.lower().startswith(RESERVED_TAG_KEY_PREFIX)
            if shape.name == TAG_MAP_SHAPE and reserved:
                yield ValidationIssue(
                    f"{key_path} (key)", "must not start with 'aws:' in any case (reserved for AWS use)"
                )
            yield from self.value(item, shape.value, key_path, secret)

    def _string(self, value: Any, shape: Shape, path: str, secret: bool) -> Iterator[ValidationIssue]:
        if not isinstance(value, str):
            yield ValidationIssue(path, f"must be a string, got {_type_name(value)} {_show(value, secret)}")
            return
        enum = shape.enum
        if enum:
            if value not in enum:
                close = difflib.get_close_matches(value, enum, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                allowed = ", ".join(enum) + upgrade_hint(shape.name, value)
                yield ValidationIssue(path, f"{_show(value, secret)} is not one of: {allowed}{hint}")
            return
        yield from self._size(len(value), shape, path, "characters")
        pattern = shape.metadata.get("pattern")
        if pattern and not _compiled(pattern).fullmatch(value):
            yield ValidationIssue(path, f"{_show(value, secret)} does not match the pattern {pattern}")

    def _number(
        self, value: Any, shape: Shape, path: str, secret: bool, *, integral: bool
    ) -> Iterator[ValidationIssue]:
        allowed_types: tuple[type[int] | type[float], ...] = (int,) if integral else (int, float)
        if isinstance(value, bool) or not isinstance(value, allowed_types):
            wanted = "an integer" if integral else "a number"
            yield ValidationIssue(path, f"must be {wanted}, got {_type_name(value)} {_show(value, secret)}")
            return
        number: float = value
        low, high = shape_limits(shape)
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"{low if low is not None else '-inf'} to {high if high is not None else 'inf'}"
            yield ValidationIssue(path, f"{_show(value, secret)} is out of range; allowed: {bounds}")

    def _join(self, path: str, name: str) -> str:
        if not path:
            return self.path_names.get(name, name)
        return f"{path}.{name}"


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def find_input_issues(
    operation_name: str, params: Mapping[str, Any], path_names: Mapping[str, str] | None = None
) -> list[ValidationIssue]:
    """
    Check a request for ``operation_name`` against the model and return every issue found.

    :param operation_name: the API operation, e.g. ``StartTrainedModelInferenceJob``.
    :param params: the request, with the model's (camelCase) member names.
    :param path_names: optional names to report top-level members under (e.g. snake_case).
    """
    shape = operation_model(operation_name).input_shape
    if shape is None:
        return []
    return list(_Validator(path_names).structure(params, shape, "", False))


def find_shape_issues(shape_name: str, value: Any, path: str) -> list[ValidationIssue]:
    """
    Check one value against one shape of the model (e.g. ``ParameterMap``) and return every issue found.

    :param shape_name: the model's shape, e.g. ``WorkerComputeType``.
    :param value: the value, with the model's (camelCase) member names where it is a structure.
    :param path: the name to report the value under, e.g. ``worker.type``.
    """
    return list(_Validator().value(value, service_model().shape_for(shape_name), path))

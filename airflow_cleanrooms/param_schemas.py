"""
JSON schemas for DAG ``Param``\\ s, derived from the installed botocore ``cleanroomsml`` model.

A DAG's trigger form (and ``dag.test(run_conf=...)``, ``airflow dags trigger --conf``) validates
each param against its JSON schema before a run is created. Building those schemas from the same
service model the operators validate against keeps the form's rules identical to the API's: an
instance type missing from the model's enum, an instance count out of the model's range or an
account id that is not 12 digits is rejected in the form, before any task runs.

Only JSON-schema keywords every validator (Python ``jsonschema`` and the browser) understands are
used. botocore patterns are full-match patterns, JSON-schema patterns are search patterns, so they
are anchored here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_cleanrooms.service_model import (
    RESERVED_TAG_KEY_PREFIX,
    TAG_MAP_SHAPE,
    input_members,
    service_model,
    shape_limits,
)

if TYPE_CHECKING:
    from botocore.model import Shape


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _case_insensitive_prefix(prefix: str) -> str:
    return "^" + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in prefix)


def shape_schema(shape: Shape | str) -> dict[str, Any]:
    """
    Return the JSON schema of a botocore shape (or shape name) of the Clean Rooms ML model.

    Strings keep their enum, length and (anchored) pattern; numbers their range; lists their size;
    maps become objects whose ``propertyNames`` and values follow the key and value shapes;
    structures become closed objects with their required members. Tag maps also refuse keys that
    start with ``aws:`` in any case, the rule the model states only in its documentation.
    """
    if isinstance(shape, str):
        shape = service_model().shape_for(shape)
    low, high = shape_limits(shape)
    kind = shape.type_name
    schema: dict[str, Any]
    if kind == "string":
        schema = {"type": "string"}
        if shape.enum:
            schema["enum"] = list(shape.enum)
            return schema
        if low is not None:
            schema["minLength"] = low
        if high is not None:
            schema["maxLength"] = high
        pattern = shape.metadata.get("pattern")
        if pattern:
            schema["pattern"] = _anchored(pattern)
    elif kind in ("integer", "long", "float", "double"):
        schema = {"type": "integer" if kind in ("integer", "long") else "number"}
        if low is not None:
            schema["minimum"] = low
        if high is not None:
            schema["maximum"] = high
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "list":
        schema = {"type": "array", "items": shape_schema(shape.member)}  # type: ignore[attr-defined]
        if low is not None:
            schema["minItems"] = low
        if high is not None:
            schema["maxItems"] = high
    elif kind == "map":
        key_schema = shape_schema(shape.key)  # type: ignore[attr-defined]
        key_schema.pop("type", None)
        if shape.name == TAG_MAP_SHAPE:
            key_schema["not"] = {"pattern": _case_insensitive_prefix(RESERVED_TAG_KEY_PREFIX)}
        schema = {
            "type": "object",
            "propertyNames": key_schema,
            "additionalProperties": shape_schema(shape.value),  # type: ignore[attr-defined]
        }
        if low:
            schema["minProperties"] = low
        if high is not None:
            schema["maxProperties"] = high
    elif kind == "structure":
        members = shape.members  # type: ignore[attr-defined]
        schema = {
            "type": "object",
            "properties": {name: shape_schema(member) for name, member in members.items()},
            "additionalProperties": False,
        }
        required = list(shape.required_members)  # type: ignore[attr-defined]
        if required:
            schema["required"] = required
    else:  # timestamps, blobs: nothing a trigger form can check beyond presence
        schema = {}
    return schema


def member_schema(operation_name: str, *path: str) -> dict[str, Any]:
    """
    JSON schema of one (possibly nested) input member of an operation.

    ``member_schema("StartTrainedModelInferenceJob", "resourceConfig", "instanceCount")`` gives
    ``{"type": "integer", "minimum": 1, "maximum": 10}`` with today's model. List members are
    stepped through transparently (``"outputConfiguration", "members", "accountId"``).
    """
    if not path:
        raise ValueError("member_schema needs at least one member name")
    shape: Shape = input_members(operation_name)[path[0]]
    for name in path[1:]:
        while shape.type_name == "list":
            shape = shape.member  # type: ignore[attr-defined]
        shape = shape.members[name]  # type: ignore[attr-defined]
    return shape_schema(shape)

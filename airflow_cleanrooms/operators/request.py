"""
Turn an operator's rendered arguments into a Clean Rooms ML API request, checked before any call.

The operator arguments are the API's input members in snake_case, read from the installed botocore
model. A request is built the way the AWS CLI builds one from ``--cli-input-json`` plus options:
the JSON document (camelCase keys, as ``--generate-cli-skeleton input`` prints; or the YAML one of
``--cli-input-yaml``) gives the base and each explicit argument overrides its member as a whole.
Then:

- values that Jinja rendered into strings are turned back into what the model wants where that is
  unambiguous (a JSON object or list string for an object/list member, ``"2"`` for an integer,
  ``"true"``/``"false"`` for a boolean); any other string where an object is needed is an error that
  names the argument;
- values under sensitive-looking keys (Airflow's own rule, e.g. ``*PASSWORD*``, ``*TOKEN*``) in maps
  such as ``environment`` are registered with Airflow's secrets masker and never echoed in errors;
- the request is validated against the model (required members, types, lengths, patterns, enums,
  ranges, map sizes, tag rules) and every problem is reported at once, named by operator argument.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from airflow_cleanrooms.compat import mask_secret, should_hide_value_for_key
from airflow_cleanrooms.exceptions import CleanRoomsMLRequestError
from airflow_cleanrooms.service_model import (
    ValidationIssue,
    camel_to_snake,
    find_input_issues,
    input_members,
    required_input_members,
)

if TYPE_CHECKING:
    from botocore.model import Shape

CLI_INPUT_JSON = "cli_input_json"
CLI_INPUT_YAML = "cli_input_yaml"
REDACTED = "<redacted>"
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
_CONTAINER_TYPES = ("structure", "map", "list")


@functools.cache
def argument_members(operation_name: str) -> dict[str, str]:
    """``{snake_case argument: camelCase member}`` for every input member of the operation."""
    return {camel_to_snake(member): member for member in input_members(operation_name)}


@functools.cache
def argument_names(operation_name: str) -> tuple[str, ...]:
    """The operator argument names for an operation, in model order."""
    return tuple(argument_members(operation_name))


@functools.cache
def json_argument_names(operation_name: str) -> tuple[str, ...]:
    """Arguments whose members are objects, maps or lists (rendered as JSON in the UI)."""
    members = input_members(operation_name)
    return tuple(
        snake
        for snake, camel in argument_members(operation_name).items()
        if members[camel].type_name in _CONTAINER_TYPES
    )


def suggest_argument(operation_name: str, name: str, others: list[str] | None = None) -> str | None:
    """The operator argument a misspelled keyword most likely meant (``instance_type`` -> ...)."""
    candidates = [*argument_names(operation_name), *(others or [])]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.7)
    if close:
        return close[0]
    normalized = name.replace("_", "").lower()
    for candidate in candidates:
        if candidate.replace("_", "").lower() == normalized:
            return candidate
    return None


def redacted_for_log(request: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a request with values under sensitive keys replaced by ``***`` (whatever the masker does)."""

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                key: "***" if isinstance(key, str) and should_hide_value_for_key(key) else walk(item)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [walk(item) for item in value]
        return value

    return walk(request)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_name(shape: Shape) -> str:
    return "a list" if shape.type_name == "list" else "an object (dict)"


class _Builder:
    def __init__(self, operation_name: str):
        self.operation_name = operation_name
        self.members = input_members(operation_name)
        self.arguments = argument_members(operation_name)
        self.issues: list[ValidationIssue] = []
        self.secrets: list[Any] = []
        self.reported_paths: set[str] = set()

    def issue(self, path: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, message))
        self.reported_paths.add(path)

    # -- cli_input_json / cli_input_yaml ----------------------------------------------------

    def parse_cli_input(self, document: Any, source: str = CLI_INPUT_JSON) -> dict[str, Any]:
        """Parse the ``--cli-input-json`` (or ``--cli-input-yaml``) document; report unknown members."""
        if document is None or (isinstance(document, str) and not document.strip()):
            return {}
        kind = "YAML" if source == CLI_INPUT_YAML else "JSON"
        if isinstance(document, str):
            try:
                document = yaml.safe_load(document) if source == CLI_INPUT_YAML else json.loads(document)
            except (ValueError, yaml.YAMLError) as error:
                self.issue(source, f"is not valid {kind} ({error})")
                return {}
        if not isinstance(document, Mapping):
            self.issue(
                source,
                f"must be a {kind} object (dict) of {self.operation_name} members, "
                f"got {type(document).__name__}",
            )
            return {}
        result: dict[str, Any] = {}
        for key, value in document.items():
            if key in self.members:
                result[key] = value
                continue
            self.issue(
                f"{source}.{key}",
                f"is not a member of the {self.operation_name} input; allowed: "
                f"{', '.join(self.members)}{self._suggest(str(key))}",
            )
        return result

    def _suggest(self, key: str) -> str:
        names = list(self.members)
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        if not close:
            normalized = key.replace("_", "").replace("-", "").lower()
            close = [m for m in names if m.lower() == normalized]
        return f"; did you mean {close[0]!r}?" if close else ""

    # -- coercion of rendered strings -------------------------------------------------------

    def coerce(self, value: Any, shape: Shape, path: str, show: bool = True) -> Any:
        kind = shape.type_name
        if kind in _CONTAINER_TYPES and isinstance(value, str):
            wanted: type = list if kind == "list" else dict
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if not isinstance(parsed, wanted):
                shown = f": {_show(value)}" if show else ""
                self.issue(
                    path,
                    f"rendered to a string, but {_kind_name(shape)} is needed{shown}. "
                    f"Pass {_kind_name(shape)} "
                    "(nested values can be templates), a JSON string of one, or render the DAG's "
                    "templates as native objects (render_template_as_native_obj=True)",
                )
                return value
            value = parsed
        if kind == "structure" and isinstance(value, Mapping):
            return {
                key: self.coerce(item, shape.members[key], f"{path}.{key}", show)
                if key in shape.members
                else item
                for key, item in value.items()
            }
        if kind == "map" and isinstance(value, Mapping):
            return {
                key: self.coerce(item, shape.value, f"{path}[{key!r}]", show) for key, item in value.items()
            }
        if kind == "list" and isinstance(value, (list, tuple)):
            return [
                self.coerce(item, shape.member, f"{path}[{index}]", show) for index, item in enumerate(value)
            ]
        if isinstance(value, str):
            if kind in ("integer", "long") and _INTEGER.fullmatch(value):
                return int(value)
            if kind in ("float", "double"):
                try:
                    return float(value)
                except ValueError:
                    return value
            if kind == "boolean" and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
        return value

    # -- secrets ----------------------------------------------------------------------------

    def collect_secrets(self, request: Mapping[str, Any]) -> None:
        """Mask values under sensitive keys in the request's string maps (environment, ...)."""
        for camel, value in request.items():
            shape = self.members.get(camel)
            if shape is None or shape.type_name != "map" or not isinstance(value, Mapping):
                continue
            for key, item in value.items():
                if isinstance(key, str) and item is not None and should_hide_value_for_key(key):
                    self.secrets.append(item)
                    mask_secret(item, key)

    def redact(self, issue: ValidationIssue) -> ValidationIssue:
        message = issue.message
        for secret in self.secrets:
            for form in sorted({repr(secret), repr(secret)[:77], str(secret)}, key=len, reverse=True):
                if form and len(form) >= 3:
                    message = message.replace(form, REDACTED)
        return issue if message == issue.message else ValidationIssue(issue.path, message)

    # -- the whole thing --------------------------------------------------------------------

    def build(
        self, arguments: Mapping[str, Any], cli_input_json: Any, cli_input_yaml: Any = None
    ) -> dict[str, Any]:
        unknown = sorted(set(arguments) - set(self.arguments))
        if unknown:
            raise TypeError(f"{self.operation_name} has no argument(s) {', '.join(unknown)}")
        source = CLI_INPUT_JSON
        if _given(cli_input_yaml):
            source = CLI_INPUT_YAML
            if _given(cli_input_json):
                self.issue(CLI_INPUT_YAML, "may not be given along with cli_input_json (as on the AWS CLI)")
        from_json = self.parse_cli_input(
            cli_input_yaml if source == CLI_INPUT_YAML else cli_input_json, source
        )
        request: dict[str, Any] = {}
        path_names: dict[str, str] = {}
        required = set(required_input_members(self.operation_name))
        for snake, camel in self.arguments.items():
            explicit = arguments.get(snake)
            if explicit == "" and camel not in required:
                # An optional value templated from an empty param ("{{ params.description }}")
                # means "not given", as leaving the CLI option out would.
                explicit = None
            if explicit is not None:
                value, path = explicit, snake
            elif from_json.get(camel) is not None:
                value, path = from_json[camel], f"{source}.{camel}"
            else:
                continue
            path_names[camel] = path
            shape = self.members[camel]
            hides_values = shape.type_name == "map"
            request[camel] = self.coerce(value, shape, path, show=not hides_values)
        self.collect_secrets(request)
        for camel in self.arguments.values():
            path_names.setdefault(camel, camel_to_snake(camel))
        for found in find_input_issues(self.operation_name, request, path_names):
            if found.path not in self.reported_paths:
                self.issues.append(found)
        if self.issues:
            raise CleanRoomsMLRequestError(self.operation_name, [self.redact(i) for i in self.issues])
        return request


def _given(document: Any) -> bool:
    return document is not None and not (isinstance(document, str) and not document.strip())


def build_request(
    operation_name: str, arguments: Mapping[str, Any], cli_input_json: Any = None, cli_input_yaml: Any = None
) -> dict[str, Any]:
    """
    Build and validate the request for ``operation_name`` from snake_case arguments.

    :param operation_name: e.g. ``StartTrainedModelInferenceJob``.
    :param arguments: ``{snake_case argument: rendered value}``; ``None`` means "not given".
    :param cli_input_json: a dict or JSON string with camelCase members, overridden by ``arguments``.
    :param cli_input_yaml: the same as a YAML string (``--cli-input-yaml``); not with ``cli_input_json``.
    :return: the request with camelCase members, ready for boto3.
    :raises CleanRoomsMLRequestError: listing every problem, before any API call.
    """
    return _Builder(operation_name).build(arguments, cli_input_json, cli_input_yaml)

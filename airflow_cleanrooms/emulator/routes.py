"""
URL routing straight from the botocore model: each operation's ``http.method`` and ``requestUri``.

Labels are matched on the raw (still percent-encoded) path, one segment each (``{label}``) or the
rest of the path (``{label+}``), then decoded, as botocore encodes them when it builds the request.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote

from airflow_cleanrooms.service_model import service_model

_LABEL = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class Route:
    operation: str
    method: str
    pattern: re.Pattern[str]
    static_query: tuple[str, ...]

    def match(self, method: str, raw_path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        found = self.pattern.fullmatch(raw_path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def _compile(request_uri: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    path, _, query = request_uri.partition("?")
    parts: list[str] = []
    last = 0
    for found in _LABEL.finditer(path):
        parts.append(re.escape(path[last : found.start()]))
        label = found.group(1)
        if label.endswith("+"):
            parts.append(f"(?P<{label[:-1]}>.+)")
        else:
            parts.append(f"(?P<{label}>[^/]+)")
        last = found.end()
    parts.append(re.escape(path[last:]))
    static = tuple(q.split("=", 1)[0] for q in query.split("&") if q)
    return re.compile("".join(parts)), static


class Router:
    """Finds the operation (and its URI labels) for a method and raw path."""

    def __init__(self) -> None:
        model = service_model()
        self.routes: list[Route] = []
        for name in model.operation_names:
            http = model.operation_model(name).http
            pattern, static = _compile(http["requestUri"])
            self.routes.append(Route(name, http["method"], pattern, static))
        # Routes with fixed query keys first, then longer literal paths first.
        self.routes.sort(key=lambda r: (-len(r.static_query), -len(r.pattern.pattern)))
        # Candidates by (method, number of path segments); greedy labels match any depth.
        self._buckets: dict[tuple[str, int], list[Route]] = {}
        self._greedy: list[Route] = []
        for route in self.routes:
            uri = model.operation_model(route.operation).http["requestUri"].partition("?")[0]
            if "+}" in uri:
                self._greedy.append(route)
            else:
                self._buckets.setdefault((route.method, uri.count("/")), []).append(route)

    def match(self, method: str, raw_path: str, query_keys: set[str]) -> tuple[Route, dict[str, str]] | None:
        candidates = self._buckets.get((method, raw_path.count("/")), [])
        for route in [*candidates, *self._greedy]:
            if route.static_query and not set(route.static_query) <= query_keys:
                continue
            labels = route.match(method, raw_path)
            if labels is not None:
                return route, labels
        return None


@functools.cache
def router() -> Router:
    return Router()

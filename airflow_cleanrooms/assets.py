"""
Airflow assets of Clean Rooms ML resources: ``cleanrooms-ml://<membership id>/<resource type>/<label>``.

A DAG names the resource it produces before it exists, so the URI names what stays the same from
run to run: the membership, the resource type (as the ARN spells it: ``trained-model``,
``trained-model-inference-job``, ``ml-input-channel``) and a label of the DAG author's choosing,
e.g. ``cleanrooms-ml://3f2b8c1e-5d4a-4e6f-9b7c-1a2d3e4f5a6b/trained-model/churn``. The ARN and
version of what a run made travel in the asset event's ``extra``: a training task with such an
outlet adds ``{"arn", "version", "status", "membership"}``, so a DAG scheduled on the asset reads
the new model from ``triggering_asset_events``.

Registered in the provider info (``asset-uris``) with :func:`sanitize_uri` (a malformed URI fails
at parse time and says what is allowed), :func:`create_asset` and
:func:`convert_asset_to_openlineage`: namespace ``cleanrooms-ml://<membership id>``, name
``<resource type>/<label>``. (The operators' own lineage names resources by ARN, which a URI
written before the run cannot hold; see :mod:`airflow_cleanrooms.lineage`.)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.assets import Asset

from airflow_cleanrooms.wait_semantics import RESOURCE_KINDS, ResourceKind

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from urllib.parse import SplitResult

    from airflow.providers.common.compat.openlineage.facet import Dataset

SCHEME = "cleanrooms-ml"
#: The resource types a URI may name, as their ARNs spell them.
RESOURCE_TYPES: dict[str, ResourceKind] = {kind.arn_resource_type: kind for kind in RESOURCE_KINDS}
_MEMBERSHIP = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def asset_uri(membership_id: str, resource_type: str, label: str) -> str:
    return f"{SCHEME}://{membership_id}/{resource_type}/{label}"


def create_asset(
    *, membership_id: str, resource_type: str, label: str, extra: dict[str, Any] | None = None
) -> Asset:
    """The asset of ``label``'s resources of ``resource_type`` in a membership (the provider's factory)."""
    return Asset(uri=asset_uri(membership_id, resource_type, label), extra=extra)


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """
    Check a ``cleanrooms-ml://`` URI (Airflow calls this when an asset is made).

    :raises ValueError: naming the part that is wrong and what is allowed.
    """
    form = f"{SCHEME}://<membership id>/<{'|'.join(RESOURCE_TYPES)}>/<label>"
    if not _MEMBERSHIP.fullmatch(uri.netloc):
        raise ValueError(
            f"{SCHEME} asset URI: {uri.netloc!r} is not a membership id (a UUID); the form is {form}"
        )
    parts = uri.path.strip("/").split("/")
    if len(parts) != 2 or parts[0] not in RESOURCE_TYPES:
        raise ValueError(f"{SCHEME} asset URI: path {uri.path!r} does not fit {form}")
    if not _LABEL.fullmatch(parts[1]):
        raise ValueError(
            f"{SCHEME} asset URI: label {parts[1]!r} is not 1-128 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return uri


def split_uri(uri: str) -> tuple[str, str, str] | None:
    """``(membership id, resource type, label)`` of a ``cleanrooms-ml://`` URI, else None."""
    prefix = f"{SCHEME}://"
    if not uri.startswith(prefix):
        return None
    parts = uri[len(prefix) :].strip("/").split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Dataset:
    """The asset as an OpenLineage dataset: ``cleanrooms-ml://<membership>``, ``<type>/<label>``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    membership, resource_type, label = split_uri(asset.uri) or ("", "", asset.uri)
    return Dataset(namespace=f"{SCHEME}://{membership}", name=f"{resource_type}/{label}")


def outlets_of(outlets: Iterable[Any], kind: ResourceKind, membership_id: str) -> list[Asset]:
    """The outlets that name ``kind`` resources of ``membership_id`` (the ones a task's event describes)."""
    found = []
    for outlet in outlets:
        parts = split_uri(str(getattr(outlet, "uri", "")))
        if parts is not None and parts[:2] == (membership_id, kind.arn_resource_type):
            found.append(outlet)
    return found


def event_extra(arn: str, version: str | None, status: str | None, membership_id: str) -> Mapping[str, Any]:
    """What an asset event of a Clean Rooms ML resource carries."""
    return {"arn": arn, "version": version, "status": status, "membership": membership_id}

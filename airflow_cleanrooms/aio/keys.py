"""
The keys of the loop's shared clients and request-rate limiters: what makes two clients differ, and what
AWS meters a request rate by. A leaf: the client pool, the rate limiters and the poll scheduler import
it, and it imports none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ClientKey:
    """Everything that makes two clients differ; equal keys may share one client."""

    transport: str
    hook_class: str
    service_name: str
    aws_conn_id: str | None
    region_name: str | None
    verify: str
    botocore_config: str
    endpoint_url: str | None
    identity: str  # sha256 of the credential material, never the material itself
    #: The AWS account when the connection names it (its ``role_arn``'s), for the rate limiters.
    account: str | None = None


_ROLE_ACCOUNT = re.compile(r"^arn:[^:]+:iam::(\d{12}):")


@dataclass(frozen=True)
class LimiterKey:
    """What AWS meters a request rate by: service endpoint, Region, account and operation."""

    service_name: str
    endpoint_url: str | None
    region_name: str | None
    account: str  # "account:<12 digits>" when known, else "identity:<sha256 of the credentials>"
    operation: str


def role_account(role_arn: str | None) -> str | None:
    """The account of a role ARN (``arn:aws:iam::123456789012:role/x`` -> ``123456789012``)."""
    match = _ROLE_ACCOUNT.match(role_arn or "")
    return match.group(1) if match else None


def limiter_key(client_key: ClientKey, operation: str) -> LimiterKey:
    """The limiter key of ``operation`` called through the pooled client of ``client_key``."""
    account = f"account:{client_key.account}" if client_key.account else f"identity:{client_key.identity}"
    return LimiterKey(
        client_key.service_name, client_key.endpoint_url, client_key.region_name, account, operation
    )

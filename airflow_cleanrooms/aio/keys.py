"""
What the triggerer's shared state is keyed by: the event loop (:class:`PerLoop`: one client pool, one
poll scheduler per loop), what makes two clients differ (:class:`ClientKey`), and what AWS meters a
request rate by (:class:`LimiterKey`). A leaf: the client pool, the rate limiters and the poll
scheduler import it, and it imports none of them.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """
    One instance of something per event loop (a client pool, a poll scheduler), dropped with its loop.

    ``get()`` returns the running loop's instance, made by ``factory(loop)`` on first use. The loop is
    held weakly: a triggerer (or a test) that closes its loop leaves nothing behind.
    """

    def __init__(self, factory: Callable[[asyncio.AbstractEventLoop], T]) -> None:
        self._factory = factory
        self._instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        instance = self._instances.get(loop)
        if instance is None:
            instance = self._instances[loop] = self._factory(loop)
        return instance

    def pop(self) -> T | None:
        """Forget the running loop's instance (the caller closes it) and return it, if there was one."""
        return self._instances.pop(asyncio.get_running_loop(), None)


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

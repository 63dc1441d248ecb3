"""Async plumbing shared by the provider's triggers (one aiobotocore client per connection per loop)."""

from __future__ import annotations

from airflow_cleanrooms.aio.client_pool import ClientKey, SharedClientPool, close_shared_clients

__all__ = ["ClientKey", "SharedClientPool", "close_shared_clients"]

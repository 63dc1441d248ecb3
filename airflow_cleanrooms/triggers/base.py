"""Base waiter trigger shared by every Clean Rooms ML trigger (placeholder until the scale work lands)."""

from __future__ import annotations

from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger


class CleanRoomsMLBaseWaiterTrigger(AwsBaseWaiterTrigger):
    """Base class of the provider's waiter triggers; same constructor as ``AwsBaseWaiterTrigger``."""

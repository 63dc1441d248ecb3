"""Apache Airflow provider for AWS Clean Rooms ML."""

from __future__ import annotations

__version__ = "0.1.0"

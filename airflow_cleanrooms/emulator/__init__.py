"""
A local AWS Clean Rooms ML emulator that unmodified boto3, the AWS CLI and this provider talk to
through ``endpoint_url``.

Layout (in the spirit of moto's services): ``models`` (state in SQLite and the lifecycle), ``responses``
(the REST-JSON wire protocol, driven by botocore's model), ``routes``, ``errors``, ``faults``,
``requestlog``, ``control_api`` (the ``/_emulator/`` control endpoint) and ``control`` (its client),
``server`` (:class:`EmulatorServer`), ``__main__`` (the command line) and ``pytest_plugin``.

Names are imported on first use, so ``EmulatorControl`` and ``--help`` do not load botocore.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.control import EmulatorControl
    from airflow_cleanrooms.emulator.models import Timings
    from airflow_cleanrooms.emulator.server import EmulatorServer

__all__ = ["EmulatorControl", "EmulatorServer", "Timings"]

_WHERE = {
    "EmulatorControl": "airflow_cleanrooms.emulator.control",
    "EmulatorServer": "airflow_cleanrooms.emulator.server",
    "Timings": "airflow_cleanrooms.emulator.models",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

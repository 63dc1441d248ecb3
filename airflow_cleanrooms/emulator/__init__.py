"""
A local AWS Clean Rooms ML emulator that unmodified boto3, the AWS CLI and this provider talk to
through ``endpoint_url``.

Layout (in the spirit of moto's services): ``models`` (state in SQLite and the lifecycle), ``responses``
(the REST-JSON wire protocol, driven by botocore's model), ``routes``, ``errors``, ``faults``,
``requestlog``, ``control_api`` (the ``/_emulator/`` control endpoint) and ``control`` (its client),
``server`` (:class:`EmulatorServer`), ``__main__`` (the command line) and ``pytest_plugin``.
"""

from __future__ import annotations

from airflow_cleanrooms.emulator.control import EmulatorControl
from airflow_cleanrooms.emulator.models import Timings
from airflow_cleanrooms.emulator.server import EmulatorServer

__all__ = ["EmulatorControl", "EmulatorServer", "Timings"]

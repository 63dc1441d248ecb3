"""Reliability tests: the shared bad-input corpus lives with the suite's DAGs (``dags/``)."""

from __future__ import annotations

import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parent / "dags"
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))

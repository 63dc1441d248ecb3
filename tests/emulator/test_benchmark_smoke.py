"""The load benchmark runs (small N) and reports what it promises; figures are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_emulator_load_benchmark_smoke() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "emulator_load.py"),
            "--n", "20",
            "--seconds", "1",
            "--interval", "0.2",
            "--saturate-seconds", "0.5",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["pollers"] == 20
    assert report["jobs_seen_active"] == 20
    for phase in ("paced", "saturated"):
        assert report[phase]["errors"] == 0
        assert report[phase]["requests"] > 0
        assert set(report[phase]["latency_ms"]) >= {"p50", "p99"}

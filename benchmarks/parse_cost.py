"""
DAG parse cost: what importing the provider (and parsing its example DAG) adds to ``import airflow.sdk``.

Each sample is a fresh interpreter (``python benchmarks/parse_cost.py --child KIND``) that times, from
before ``import airflow.sdk`` to the end, one of:

* ``bare``: ``import airflow.sdk`` alone;
* ``ours``: plus this provider's operators and sensors modules and executing the example DAG file
  ``dags/example_cleanrooms_ml_train_and_infer.py`` (skipped, and said so, if it is not there);
* ``anchor``: plus the amazon provider's SageMaker operators and sensors modules.

Kinds are interleaved across repeats; the median of each is reported, as wall time and as the
process's CPU time (user + system), which a busy shared machine disturbs far less than wall time.
"""

from __future__ import annotations

import json
import runpy
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DAG = ROOT / "dags" / "example_cleanrooms_ml_train_and_infer.py"
KINDS = ("bare", "ours", "anchor")


def child(kind: str) -> None:
    note = ""
    start = time.perf_counter()
    cpu_start = time.process_time()
    import airflow.sdk

    if kind == "ours":
        import airflow_cleanrooms.operators.cleanrooms_ml
        import airflow_cleanrooms.sensors.cleanrooms_ml  # noqa: F401

        if EXAMPLE_DAG.exists():
            try:
                runpy.run_path(str(EXAMPLE_DAG), run_name="example_dag")
            except Exception as error:  # the example DAG is someone else's work in progress
                note = f"example DAG failed to parse: {type(error).__name__}: {error}"[:200]
        else:
            note = "example DAG not present; operators and sensors only"
    elif kind == "anchor":
        import airflow.providers.amazon.aws.operators.sagemaker
        import airflow.providers.amazon.aws.sensors.sagemaker  # noqa: F401
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    print(json.dumps({"kind": kind, "seconds": elapsed, "cpu_seconds": cpu, "note": note}))


def measure(repeats: int, env: dict[str, str]) -> dict[str, Any]:
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu_samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    notes: set[str] = set()
    for _ in range(repeats):
        for kind in KINDS:
            out = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child", kind],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=600,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            samples[kind].append(result["seconds"])
            cpu_samples[kind].append(result["cpu_seconds"])
            if result["note"]:
                notes.add(result["note"])
    medians = {kind: statistics.median(values) for kind, values in samples.items()}
    cpu = {kind: statistics.median(values) for kind, values in cpu_samples.items()}
    return {
        "repeats": repeats,
        "median_s": medians,
        "median_cpu_s": cpu,
        "ratio_ours": medians["ours"] / medians["bare"],
        "ratio_anchor": medians["anchor"] / medians["bare"],
        "cpu_ratio_ours": cpu["ours"] / cpu["bare"],
        "cpu_ratio_anchor": cpu["anchor"] / cpu["bare"],
        "notes": sorted(notes),
    }


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import child_env

        print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5, child_env()), indent=2))

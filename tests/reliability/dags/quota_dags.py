"""
DAGs of the job-quota proof (tests/reliability/test_job_quotas.py), copied into its dags folder.

The normal way to score segments in parallel: one operator mapped over segment names
(``.partial(...).expand(name=[...])``), with no task retries, so every segment must be started by
its first try however many of its siblings the service refuses. ``quota_<kind>_<mode>_m1`` maps 12
segments in one membership; ``quota_<kind>_<mode>_m2`` maps 8 segments in each of two memberships of
one account at once. Memberships, the ARNs they need and the connection (one account per run) come
from ``dag_run.conf``. ``quota_durable_<mode>`` is one task (one retry) that waits for a slot while
the test kills its worker process (sync) or the triggerer (deferrable).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from airflow_cleanrooms.operators.cleanrooms_ml import (
    CleanRoomsMLCreateTrainedModelOperator,
    CleanRoomsMLStartTrainedModelInferenceJobOperator,
)

KINDS = ("inference", "training")
MODES = ("sync", "deferrable")
SHAPES = {"m1": {"a": 12}, "m2": {"a": 8, "b": 8}}
#: Seconds between status checks: short, the emulator's jobs are short.
POLL = 3
#: Seconds between quota checks (each after 50-100 % of it): the emulator's jobs run 16 s.
QUOTA_POLL = 12


def dag_id(kind: str, mode: str, shape: str) -> str:
    return f"quota_{kind}_{mode}_{shape}"


DAG_IDS = [dag_id(kind, mode, shape) for kind in KINDS for mode in MODES for shape in SHAPES]


def _conf(key: str, membership: str) -> str:
    return "{{ dag_run.conf['" + key + "_" + membership + "'] }}"


def _mapped(kind: str, mode: str, membership: str, segments: int) -> Any:
    common: dict[str, Any] = {
        "task_id": f"{kind}_{membership}",
        "membership_identifier": _conf("membership", membership),
        "aws_conn_id": "{{ dag_run.conf['conn_id'] }}",
        "deferrable": mode == "deferrable",
        "waiter_delay": POLL,
        "quota_poll_interval": QUOTA_POLL,
        "quota_wait_timeout": 900,
    }
    names = [f"{kind[:5]}-{membership}-seg-{index:02d}" for index in range(segments)]
    if kind == "inference":
        return CleanRoomsMLStartTrainedModelInferenceJobOperator.partial(
            **common,
            trained_model_arn=_conf("trained_model_arn", membership),
            resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            output_configuration={"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
            data_source={"mlInputChannelArn": _conf("channel_arn", membership)},
        ).expand(name=names)
    return CleanRoomsMLCreateTrainedModelOperator.partial(
        **common,
        configured_model_algorithm_association_arn=_conf("association_arn", membership),
        resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1, "volumeSizeInGB": 10},
        data_channels=[{"mlInputChannelArn": _conf("channel_arn", membership), "channelName": "train"}],
    ).expand(name=names)


for _kind in KINDS:
    for _mode in MODES:
        for _shape, _memberships in SHAPES.items():
            with DAG(
                dag_id(_kind, _mode, _shape),
                schedule=None,
                start_date=datetime(2024, 1, 1),
                catchup=False,
                is_paused_upon_creation=False,
                max_active_tasks=32,
                default_args={"retries": 0},
                tags=["reliability", "quota"],
            ):
                for _membership, _segments in _memberships.items():
                    _mapped(_kind, _mode, _membership, _segments)


# ---- durable execution during a quota wait -----------------------------------------------------------

MARKERS = Path(os.environ.get("QUOTA_MARKERS", "/tmp/quota-markers"))
DURABLE_DAG_IDS = {mode: f"quota_durable_{mode}" for mode in MODES}


class MarkedInferenceOperator(CleanRoomsMLStartTrainedModelInferenceJobOperator):  # type: ignore[misc]
    """The shipped operator; every try writes its process id so the test can SIGKILL exactly it."""

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        MARKERS.mkdir(parents=True, exist_ok=True)
        (MARKERS / f"{ti.dag_id}__{ti.run_id}__{ti.try_number}.pid").write_text(str(os.getpid()))
        return super().execute(context)


for _mode, _dag_id in DURABLE_DAG_IDS.items():
    with DAG(
        _dag_id,
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        is_paused_upon_creation=False,
        default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
        tags=["reliability", "quota"],
    ):
        MarkedInferenceOperator(
            task_id="inference",
            membership_identifier=_conf("membership", "a"),
            name="durable-segment",
            trained_model_arn=_conf("trained_model_arn", "a"),
            resource_config={"instanceType": "ml.m5.xlarge", "instanceCount": 1},
            output_configuration={"members": [{"accountId": "111122223333"}], "accept": "text/csv"},
            data_source={"mlInputChannelArn": _conf("channel_arn", "a")},
            aws_conn_id="{{ dag_run.conf['conn_id'] }}",
            deferrable=_mode == "deferrable",
            waiter_delay=POLL,
            quota_poll_interval=QUOTA_POLL,
        )

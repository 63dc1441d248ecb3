"""Test doubles for the base trigger: a hook with its own waiter file, a trigger, a scripted client."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from asgiref.sync import async_to_sync
from botocore.exceptions import ClientError

from airflow_cleanrooms.aio.client_pool import close_shared_clients
from airflow_cleanrooms.triggers.base import CleanRoomsMLBaseWaiterTrigger

WAITERS = Path(__file__).with_name("trigger_test_waiters.json")
JOB_ARN = (
    "arn:aws:cleanrooms-ml:us-east-1:123456789012:membership/"
    "11111111-2222-3333-4444-555555555555/trained-model-inference-job/{n:08d}-aaaa-bbbb-cccc-dddddddddddd"
)
MEMBERSHIP = "11111111-2222-3333-4444-555555555555"


def connection_env(login: str, secret: str, region: str = "us-east-1") -> str:
    """An ``AIRFLOW_CONN_*`` value for an AWS connection with its own keys."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": login,
            "password": secret,
            "extra": {"region_name": region, "endpoint_url": "http://127.0.0.1:9"},
        }
    )


class TriggererComms:
    """
    What Airflow 3.0's and 3.1's triggerer does with a Task SDK call (a connection, a task's state)
    that a trigger makes from a thread: ``TriggerCommsDecoder.send`` is ``async_to_sync(asend)``, and
    ``asend`` reads the answer from a pipe that only the triggerer's event loop may read. Records the
    event loop each call's ``asend`` ran on; a call from a thread asgiref did not start gets a new loop.
    """

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def _asend(self, answer: Any) -> Any:
        self.loops.append(asyncio.get_running_loop())
        return answer

    def send(self, answer: Any = None) -> Any:
        return async_to_sync(self._asend)(answer)


def write_task_instances(dag_id: str, states: dict[str, dict[str, str | None]]) -> None:
    """
    Airflow 2.11: task instance rows (and their runs) in the test metadata database, which must be
    migrated (the ``airflow_db`` fixture): ``{run_id: {task_id or <task_id>_<map_index>: state}}``.
    Rows of ``dag_id`` written before are replaced.
    """
    import pendulum
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete, insert

    with create_session() as session:
        session.execute(delete(TaskInstance.__table__).where(TaskInstance.dag_id == dag_id))
        session.execute(delete(DagRun.__table__).where(DagRun.dag_id == dag_id))
        for n, (run_id, tasks) in enumerate(states.items()):
            date = pendulum.datetime(2026, 1, 1, tz="UTC").add(days=n)
            run = {"dag_id": dag_id, "run_id": run_id, "execution_date": date, "run_type": "manual"}
            session.execute(insert(DagRun.__table__).values(**run, state="running", clear_number=0))
            for key, state in tasks.items():
                task_id, _, index = key.rpartition("_")
                task_id, map_index = (task_id, int(index)) if index.isdigit() else (key, -1)
                session.execute(
                    insert(TaskInstance.__table__).values(
                        dag_id=dag_id,
                        run_id=run_id,
                        task_id=task_id,
                        map_index=map_index,
                        state=state,
                        pool="default_pool",
                        pool_slots=1,
                        queue="default",
                        priority_weight=1,
                        try_number=1,
                        max_tries=0,
                        hostname="",
                        unixname="",
                        custom_operator_name="",
                        executor_config=b"\x80\x04}\x94.",  # pickle.dumps({})
                    )
                )


class ScaleTestHook(AwsBaseHook):
    """A ``cleanroomsml`` hook whose custom waiter file belongs to these tests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cleanroomsml"
        super().__init__(*args, **kwargs)

    @property
    def waiter_path(self) -> Path:  # type: ignore[override]
        return WAITERS


class ScaleTestJobTrigger(CleanRoomsMLBaseWaiterTrigger):
    """Waits for an inference job, as the core trigger does, on the test hook."""

    aws_hook_class = ScaleTestHook

    def __init__(
        self,
        *,
        membership_identifier: str,
        trained_model_inference_job_arn: str,
        waiter_delay: int = 5,
        waiter_max_attempts: int = 10,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__(
            serialized_fields={
                "membership_identifier": membership_identifier,
                "trained_model_inference_job_arn": trained_model_inference_job_arn,
            },
            waiter_name="test_inference_job_complete",
            waiter_args={
                "membershipIdentifier": membership_identifier,
                "trainedModelInferenceJobArn": trained_model_inference_job_arn,
            },
            failure_message="Inference job failed",
            status_message="Inference job status",
            status_queries=["status", "statusDetails"],
            return_key="trained_model_inference_job_arn",
            return_value=trained_model_inference_job_arn,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            verify=verify,
            botocore_config=botocore_config,
        )
        self.slept: list[float] = []

    # Record the schedule instead of waiting it out: the tests check the trigger's decisions.
    def first_poll_delay(self, rng: random.Random) -> float:
        self.slept.append(super().first_poll_delay(rng))
        return 0.0

    def poll_interval(self, rng: random.Random) -> float:
        self.slept.append(super().poll_interval(rng))
        return 0.0


class ScriptedClient:
    """Stands in for a shared boto3 client (thread transport): answers each job from its script."""

    def __init__(self, hook: AwsBaseHook, scripts: dict[str, list[Any]]) -> None:
        self.hook = hook
        self.scripts = scripts
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def _answer(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(kwargs)
        script = self.scripts[kwargs["trainedModelInferenceJobArn"]]
        step = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(step, BaseException):
            raise step
        return step

    def get_trained_model_inference_job(self, **kwargs: Any) -> dict[str, Any]:
        return self._answer(kwargs)

    def close(self) -> None:
        self.closed = True


class AsyncScriptedClient(ScriptedClient):
    """Stands in for a shared aiobotocore client (aio transport)."""

    async def get_trained_model_inference_job(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return self._answer(kwargs)

    async def __aexit__(self, *exc: Any) -> None:
        self.closed = True


def job(status: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "ResponseMetadata": {"HTTPStatusCode": 200}, **extra}


def trigger(n: int = 1, **kwargs: Any) -> ScaleTestJobTrigger:
    kwargs.setdefault("aws_conn_id", "scale_a")
    return ScaleTestJobTrigger(
        membership_identifier=MEMBERSHIP, trained_model_inference_job_arn=JOB_ARN.format(n=n), **kwargs
    )


async def first_event(t: ScaleTestJobTrigger) -> dict[str, Any]:
    async for event in t.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


def run_all(*triggers: ScaleTestJobTrigger) -> list[dict[str, Any]]:
    async def main() -> list[dict[str, Any]]:
        try:
            return list(await asyncio.gather(*(first_event(t) for t in triggers)))
        finally:
            await close_shared_clients()

    return asyncio.run(main())


def throttled() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 429},
        },
        "GetTrainedModelInferenceJob",
    )

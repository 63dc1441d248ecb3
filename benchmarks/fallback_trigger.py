"""
Bench-local inference-job trigger on the shared base, used only while the core trigger
(``airflow_cleanrooms.triggers.cleanrooms_ml``) is not importable. Same waiter file and arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from airflow_cleanrooms.triggers.base import CleanRoomsMLBaseWaiterTrigger

ROOT = Path(__file__).resolve().parents[1]
WAITERS = ROOT / "airflow_cleanrooms" / "waiters" / "cleanroomsml.json"
WAITER_NAME = "trained_model_inference_job_complete"
if not WAITERS.exists():
    WAITERS = ROOT / "tests" / "scale" / "scale_test_waiters.json"
    WAITER_NAME = "test_inference_job_complete"


class BenchHook(AwsBaseHook):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "cleanroomsml"
        super().__init__(*args, **kwargs)

    @property
    def waiter_path(self) -> Path:  # type: ignore[override]
        return WAITERS


class BenchInferenceJobCompleteTrigger(CleanRoomsMLBaseWaiterTrigger):
    aws_hook_class = BenchHook

    def __init__(
        self,
        *,
        membership_identifier: str,
        trained_model_inference_job_arn: str,
        waiter_delay: int = 60,
        waiter_max_attempts: int = 720,
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
            waiter_name=WAITER_NAME,
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

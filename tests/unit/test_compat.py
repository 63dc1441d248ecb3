"""What the provider does on older Airflow, amazon provider and botocore releases (``compat``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from airflow_cleanrooms import compat
from airflow_cleanrooms.triggers.cleanrooms_ml import CleanRoomsMLTrainedModelInferenceJobCompleteTrigger
from tests.unit.unit_support import JOB_ARN, MEMBERSHIP


@pytest.fixture
def fresh_guard(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    said: set[str] = set()
    monkeypatch.setattr(compat, "_SAID", said)
    return said


def test_a_fallback_is_said_once_per_process(fresh_guard: set[str], caplog: Any) -> None:
    logger = logging.getLogger("test.compat")
    with caplog.at_level(logging.INFO, logger="test.compat"):
        assert compat.say_once("x", "falling back to %s", "y", logger=logger) is True
        assert compat.say_once("x", "falling back to %s", "y", logger=logger) is False
    assert [r.getMessage() for r in caplog.records] == ["falling back to y"]


def test_fallbacks_name_the_installed_releases(fresh_guard: set[str], caplog: Any) -> None:
    logger = logging.getLogger("test.compat")
    with caplog.at_level(logging.INFO, logger="test.compat"):
        compat.say_fallbacks(logger)
        compat.say_fallbacks(logger)
    messages = [r.getMessage() for r in caplog.records]
    expected = []
    if not compat.HAS_TASK_STATE_STORE:
        expected.append(
            f"Airflow {compat.AIRFLOW_VERSION} has no task state store (Airflow 3.3+; amazon provider "
            f"{compat.AMAZON_PROVIDER_VERSION}): durable execution uses the job's identity tag only"
        )
    if not compat.has_model_versions():
        expected.append(next(m for m in messages if m.startswith("botocore ")))
    assert messages == expected  # each at most once, and only where the installed release lacks it


def test_no_task_state_store_sentence_when_not_durable(fresh_guard: set[str], caplog: Any) -> None:
    with caplog.at_level(logging.INFO):
        compat.say_fallbacks(logging.getLogger("test.compat"), durable=False)
    assert not any("task state store" in r.getMessage() for r in caplog.records)


def test_trigger_hook_parameters_match_the_serialized_aws_fields() -> None:
    trigger = CleanRoomsMLTrainedModelInferenceJobCompleteTrigger(
        membership_identifier=MEMBERSHIP,
        trained_model_inference_job_arn=JOB_ARN,
        aws_conn_id="conn",
        region_name="eu-west-1",
        verify=False,
        botocore_config={"read_timeout": 5},
    )
    assert compat.trigger_hook_parameters(trigger) == {
        "aws_conn_id": "conn",
        "region_name": "eu-west-1",
        "verify": False,
        "config": {"read_timeout": 5},
    }


def test_an_argument_the_model_lacks_is_refused_not_dropped() -> None:
    with pytest.raises(TypeError, match=r"StartTrainedModelInferenceJob: botocore .* has no newer_member"):
        compat.reject_arguments_the_model_lacks(
            "StartTrainedModelInferenceJob", {"newer_member": "x", "unset": None}, {"name"}
        )
    compat.reject_arguments_the_model_lacks("StartTrainedModelInferenceJob", {"unset": None}, {"name"})


def test_secrets_are_masked_on_every_supported_release() -> None:
    # common-compat 1.7 (Airflow 3.0's pins) has no sdk module: the masker must still be the real one.
    compat.mask_secret("s3cr3t-compat-value")
    assert "s3cr3t-compat-value" not in str(compat.redact("token s3cr3t-compat-value here"))

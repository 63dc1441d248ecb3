"""
What the installed Airflow, amazon provider, common-compat provider and botocore can do: one place.

The provider installs where users' Airflow already is: Airflow 3 down to the provider versions
Airflow 3.0's official constraints pin (constraints-3.0.6: amazon 9.12.0, common-compat 1.7.3,
botocore 1.39) and below them to its own floors (amazon 9.8.0, botocore 1.37), and Airflow 2.11
(Amazon MWAA's 2.11 images). Newer releases add things the provider uses when they are there; this
module detects each at run time and hands out either the real thing or what the older release can
do instead:

* ``AirflowException``, ``AirflowFailException``, ``ParamValidationError``, ``TaskDeferred``,
  ``conf``, ``mask_secret``, ``redact``: from common-compat's ``sdk`` module where it has them, else
  from where Airflow itself has them (so secrets are still masked there).
* Airflow 2.11 has no Task SDK: secrets are masked through ``airflow.utils.log.secrets_masker``, and
  a trigger reads its task's state from the metadata database
  (:func:`airflow_cleanrooms.triggers.base.deferred_task_state`).
* ``ResumableJobMixin`` and the ``task_state_store`` (Airflow 3.3+): below 3.3 the operators'
  durable execution uses the job's identity tag only (the lookup in
  :mod:`airflow_cleanrooms.operators.start`), which needs neither.
* botocore model members newer than the installed botocore: the service model is read from the
  installed botocore (:mod:`airflow_cleanrooms.service_model`), so such members are simply not
  offered; :func:`missing_model_members` names them.

Each fallback is said once per process in the task log (:func:`say_once`), not on every task.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from airflow_cleanrooms.service_model import additions, botocore_version, camel_to_snake, service_model

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)

#: Fallbacks already said in this process (the once-guard of :func:`say_once`).
_SAID: set[str] = set()


def say_once(key: str, message: str, *args: Any, logger: Any = None) -> bool:
    """
    Log a fallback at INFO once per process; ``True`` if this call logged it.

    :param key: what identifies the fallback (the same key is said once, whatever the message).
    :param message: %-style message, with ``args``.
    :param logger: where to say it (the task's logger, so it lands in the task log); this module's
        logger by default.
    """
    if key in _SAID:
        return False
    _SAID.add(key)
    (logger or log).info(message, *args)
    return True


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, ``None`` if it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


AIRFLOW_VERSION = installed_version("apache-airflow-core") or installed_version("apache-airflow") or "0"
AMAZON_PROVIDER_VERSION = installed_version("apache-airflow-providers-amazon") or "0"
AIRFLOW_V_3_0_PLUS = Version(Version(AIRFLOW_VERSION).base_version) >= Version("3.0.0")
AIRFLOW_V_3_3_PLUS = Version(Version(AIRFLOW_VERSION).base_version) >= Version("3.3.0")

#: Airflow 3.3+ calls a trigger's ``on_kill`` when its deferred task is killed (or the trigger is dropped
#: by a recovering triggerer); below 3.3 the triggerer only cancels the trigger's ``run``, and the
#: resource triggers call ``on_kill`` themselves from there (as the amazon provider's EMR Serverless
#: trigger cancels its job from ``run``'s cancellation).
TRIGGERER_CALLS_ON_KILL = AIRFLOW_V_3_3_PLUS

try:  # common-compat 1.8+: one import path for every Airflow 3.x
    from airflow.providers.common.compat.sdk import (
        AirflowException,
        AirflowFailException,
        ParamValidationError,
        TaskDeferred,
        conf,
        redact,
    )
except ImportError:  # common-compat 1.7 (Airflow 3.0's and 2.11.0's constraints): where Airflow has them
    from airflow.configuration import conf  # type: ignore[no-redef,unused-ignore]
    from airflow.exceptions import (  # type: ignore[no-redef,assignment,unused-ignore]
        AirflowException,
        AirflowFailException,
        ParamValidationError,
        TaskDeferred,
    )

    try:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import (  # type: ignore[no-redef,unused-ignore]
            redact,
        )
    except ImportError:  # Airflow 2.11
        from airflow.utils.log.secrets_masker import redact  # type: ignore[no-redef,unused-ignore]

try:  # common-compat's sdk module has no mask_secret in some releases (1.18, MWAA 3.3.1's)
    from airflow.providers.common.compat.sdk import mask_secret
except ImportError:
    try:  # Airflow 3.1+: masks in this process and tells the supervisor
        from airflow.sdk.log import mask_secret  # type: ignore[no-redef,unused-ignore]
    except ImportError:
        try:  # Airflow 3.0
            from airflow.sdk.execution_time.secrets_masker import (  # type: ignore[no-redef,unused-ignore]
                mask_secret,
            )
        except ImportError:  # Airflow 2.11
            from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef,unused-ignore]


class _NoResumableJobMixin:
    """
    Airflow < 3.3 without common-compat's stand-in: nothing to mix in.

    There is no ``task_state_store`` to resume from; the durable mixin never calls
    ``execute_resumable`` below 3.3 and reconnects through the identity tag instead.
    """

    external_id_key: str = "remote_job_id"


try:  # Airflow 3.3+: the Task SDK's mixin; below 3.3 common-compat's stand-in (when it has one)
    from airflow.providers.common.compat.sdk import ResumableJobMixin
except ImportError:
    try:
        from airflow.sdk import ResumableJobMixin  # type: ignore[no-redef,unused-ignore]
    except ImportError:
        ResumableJobMixin = _NoResumableJobMixin  # type: ignore[assignment,misc,unused-ignore]

#: The Task SDK hands tasks a ``task_state_store`` (and ``ResumableJobMixin`` uses it) from 3.3.
HAS_TASK_STATE_STORE = AIRFLOW_V_3_3_PLUS


def say_fallbacks(logger: Any = None, *, durable: bool = True) -> None:
    """
    Say, once per process each, what the installed releases make the operators fall back to.

    Called when an operator starts its work, so the sentence lands in the task log of the first task
    that meets the fallback (in a worker every task is its own process, so in each task's log).
    """
    if durable and not HAS_TASK_STATE_STORE:
        say_once(
            "task_state_store",
            "Airflow %s has no task state store (Airflow 3.3+; amazon provider %s): durable execution "
            "uses the job's identity tag only",
            AIRFLOW_VERSION,
            AMAZON_PROVIDER_VERSION,
            logger=logger,
        )
    if "model_versions" not in _SAID and not has_model_versions():
        say_once(
            "model_versions",
            "botocore %s's Clean Rooms ML model has no trained model versions: trained models are "
            "tracked by ARN only (and members newer than this model are not offered)",
            botocore_version(),
            logger=logger,
        )


def missing_model_members(shape_name: str, members: Iterable[str]) -> list[str]:
    """The ``members`` of the installed botocore model's ``shape_name`` that it does not have."""
    shape = service_model().shape_for(shape_name)
    have = set(getattr(shape, "members", {}))
    return [member for member in members if member not in have]


def tested_versions() -> dict[str, str | None]:
    """The versions CI prints before each stage's tests (and a user can compare with the README)."""
    return {
        name: installed_version(name)
        for name in (
            "apache-airflow",
            "apache-airflow-core",
            "apache-airflow-task-sdk",
            "apache-airflow-providers-amazon",
            "apache-airflow-providers-common-compat",
            "boto3",
            "botocore",
            "aiobotocore",
        )
    }


def trigger_hook_parameters(trigger: Any) -> dict[str, Any]:
    """
    The hook keywords of an ``AwsBaseWaiterTrigger`` (its ``_hook_parameters`` where the amazon
    provider has it; amazon 9.8.0 does not, and the same four serialized fields are mapped here).
    """
    upstream = getattr(trigger, "_hook_parameters", None)
    if isinstance(upstream, dict):
        return upstream
    return {
        "aws_conn_id": trigger.aws_conn_id,
        "region_name": trigger.region_name,
        "verify": trigger.verify,
        "config": trigger.botocore_config,
    }


def model_has_member(shape_name: str, member: str) -> bool:
    """Whether the installed botocore model's ``shape_name`` has ``member`` (e.g. trained model versions)."""
    return not missing_model_members(shape_name, [member])


def has_model_versions() -> bool:
    """Whether the installed botocore model has trained model versions (from 1.38; 1.37 has none)."""
    return model_has_member("GetTrainedModelRequest", "versionIdentifier")


def reject_arguments_the_model_lacks(operation_name: str, arguments: Any, members: Any) -> None:
    """
    Fail at DAG parse time on an explicit operator argument the installed botocore model lacks.

    The operators' signatures follow the newest model; with an older botocore (boto3's floor
    1.37.0 brings 1.37.1) a member such as ``trainingInputMode`` does not exist, and a value given
    for it would otherwise be dropped from the request without a word.
    """
    lacking = sorted(name for name, value in arguments.items() if value is not None and name not in members)
    if not lacking:
        return
    input_shape = service_model().operation_model(operation_name).input_shape.name
    newer = {camel_to_snake(member): (member, version) for member, version in additions(input_shape).items()}
    described = [
        f"{name} (botocore {newer[name][1]} added {newer[name][0]})" if name in newer else name
        for name in lacking
    ]
    needed = max((newer[name][1] for name in lacking if name in newer), key=Version, default=None)
    raise TypeError(
        f"{operation_name}: botocore {botocore_version()}'s model has no "
        f"{', '.join(described)}; upgrade botocore (and aiobotocore) "
        f"{f'to {needed} or later ' if needed else ''}to use {'it' if len(lacking) == 1 else 'them'}"
    )


# ---- the secrets masker: Airflow's rule for sensitive names, and masking what it hides ---------------


def should_hide_value_for_key(key: str) -> bool:
    """Airflow's rule for sensitive names (``password``, ``secret``, ``token``, ``api_key``, ...)."""
    return bool(_sensitive_key_rule()(key))


@functools.cache
def _sensitive_key_rule() -> Any:
    for module in (
        "airflow.sdk._shared.secrets_masker",  # Airflow 3.1+
        "airflow.sdk.execution_time.secrets_masker",  # Airflow 3.0
        "airflow.utils.log.secrets_masker",
    ):
        try:
            return importlib.import_module(module).should_hide_value_for_key
        except (ImportError, AttributeError):
            continue
    raise ImportError("Airflow's secrets masker (should_hide_value_for_key) was not found")


def sensitive_values(request: Mapping[str, Any]) -> list[str]:
    """
    Values under sensitive-looking keys (Airflow's rule) in a request's maps, e.g. ``environment``:
    what the operator registered with the secrets masker, for a trigger in another process to mask.
    """
    values: list[str] = []
    for value in request.values():
        if isinstance(value, Mapping):
            values += [
                str(item)
                for key, item in value.items()
                if isinstance(key, str) and item not in (None, "") and should_hide_value_for_key(key)
            ]
    return values


def redact_message(message: str) -> str:
    """``message`` through this process's secrets masker (values it knows become ``***``)."""
    try:
        return str(redact(message))
    except Exception:
        return message


__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "HAS_TASK_STATE_STORE",
    "TRIGGERER_CALLS_ON_KILL",
    "AirflowException",
    "AirflowFailException",
    "ParamValidationError",
    "ResumableJobMixin",
    "TaskDeferred",
    "conf",
    "mask_secret",
    "redact",
    "redact_message",
    "sensitive_values",
    "should_hide_value_for_key",
]

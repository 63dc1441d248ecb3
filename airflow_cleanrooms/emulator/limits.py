"""
The AWS limits the emulator enforces, and how they are set (no botocore import here).

On by default at AWS's documented defaults, so that the emulator is as strict as the service:

* service quotas on pending/in-progress jobs (``CREATE_PENDING`` or ``CREATE_IN_PROGRESS``): 5 trained
  model inference jobs per membership and 10 per account, and the same 5 / 10 for trained models
  (training jobs), answered ``ServiceQuotaExceededException`` (402) - see :mod:`.quotas`;
* a request rate per operation and account (and Region): a token bucket refilled at 5 requests per
  second holding up to 5, answered ``ThrottlingException`` (429) - see :mod:`.ratelimit`;
* session credentials minted by the emulator's STS expire (``DurationSeconds``, 3600 when absent), and
  a request signed with an expired session token is answered ``ExpiredTokenException`` (403) - see
  :mod:`.sts`.

Each numeric limit takes a number, or ``off`` to switch it off; a quota of ``0`` is a quota of 0 (every
start is refused), not "off". ``token_expiry`` is ``on``/``off``. ``credential_seconds`` overrides the
lifetime of minted credentials (any number of seconds, for tests); unset, AWS's rule applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Words that switch a numeric limit off (on the command line, in the environment, in control calls).
OFF_WORDS = frozenset({"off", "none", "unlimited", "no", "false"})
#: Words that mean "AWS's behaviour" for ``credential_seconds`` (the same as leaving it unset).
AWS_WORDS = frozenset({"aws", "default"})
ON_WORDS = frozenset({"on", "yes", "true", "1"})

#: Lifetime of AssumeRole credentials when the request has no DurationSeconds (AWS's documented default).
DEFAULT_CREDENTIAL_SECONDS = 3600


@dataclass
class Limits:
    """
    What the emulator enforces; ``None`` switches a numeric limit off.

    :param inference_jobs_per_membership: pending/in-progress inference jobs allowed per membership.
    :param inference_jobs_per_account: pending/in-progress inference jobs allowed per account (and Region).
    :param training_jobs_per_membership: pending/in-progress trained models allowed per membership.
    :param training_jobs_per_account: pending/in-progress trained models allowed per account (and Region).
    :param request_rate: requests per second allowed per operation and account (token refill rate).
    :param request_burst: requests a full bucket admits at once.
    :param credential_seconds: lifetime of every credential the emulator's STS mints, overriding
        ``DurationSeconds`` (``None``: ``DurationSeconds``, or 3600 when absent, as AWS does).
    :param token_expiry: refuse requests signed with an expired session token (``ExpiredTokenException``).
    """

    inference_jobs_per_membership: int | None = 5
    inference_jobs_per_account: int | None = 10
    training_jobs_per_membership: int | None = 5
    training_jobs_per_account: int | None = 10
    request_rate: float | None = 5.0
    # One second's worth of the rate: a steady caller at the rate is never throttled, and no window of
    # one second admits more than twice the rate. AWS does not publish its burst, so the emulator does
    # not grant a larger one that would hide a client's bursts.
    request_burst: int = 5
    credential_seconds: float | None = None
    token_expiry: bool = True

    def update(self, values: Mapping[str, Any]) -> None:
        """Set the given limits (unknown names, negative numbers and bad words are refused)."""
        known = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown limit {key!r}; known: {', '.join(sorted(known))}")
            setattr(self, key, coerce_limit(key, value))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def off(cls) -> Limits:
        """Every limit switched off (what ``--no-limits`` starts with): no quota, rate or expiry."""
        no_quotas: dict[str, Any] = dict.fromkeys(_INTEGER_LIMITS)
        return cls(**no_quotas, request_rate=None, token_expiry=False)


_INTEGER_LIMITS = frozenset(
    {
        "inference_jobs_per_membership",
        "inference_jobs_per_account",
        "training_jobs_per_membership",
        "training_jobs_per_account",
    }
)


def coerce_limit(name: str, value: Any) -> Any:
    """``value`` (a number, ``None``, or a word such as ``off``) as the type limit ``name`` holds."""
    if isinstance(value, str):
        word = value.strip().lower()
        if name == "token_expiry":
            if word in ON_WORDS:
                return True
            if word in OFF_WORDS or word == "0":
                return False
            raise ValueError(f"{name} is on or off, got {value!r}")
        if word in OFF_WORDS or (name == "credential_seconds" and word in AWS_WORDS):
            value = None
        else:
            try:
                value = float(word)
            except ValueError:
                raise ValueError(f"{name} is a number or 'off', got {value!r}") from None
    if name == "token_expiry":
        if not isinstance(value, bool):
            raise ValueError(f"{name} is true or false, got {value!r}")
        return value
    if value is None:
        if name == "request_burst":
            raise ValueError("request_burst is a number >= 1 (switch the rate off with request_rate)")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} is a number >= 0 or 'off', got {value!r}")
    if name in _INTEGER_LIMITS:
        if value != int(value):
            raise ValueError(f"{name} is a whole number of jobs, got {value!r}")
        return int(value)
    if name == "request_burst":
        if value < 1 or value != int(value):
            raise ValueError(f"request_burst is a whole number >= 1, got {value!r}")
        return int(value)
    if name == "request_rate" and value == 0:
        raise ValueError("request_rate must be > 0 (use 'off' to switch it off)")
    return float(value)

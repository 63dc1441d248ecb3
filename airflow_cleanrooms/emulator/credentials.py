"""
Who signed a request, and whether its session token has expired.

Signatures are not checked (any key pair works), but a request must be SigV4-signed. The region comes
from the credential scope; the account, for ARNs, quotas and request rates, from:

* a session token minted by the emulator's STS (``AssumeRole``): the account of the assumed role's
  ARN. The token carries its role, session name and expiration, so it survives an emulator restart;
  once the emulator's clock passes the expiration, every request signed with it is refused
  (``ExpiredTokenException``, HTTP 403) while ``Limits.token_expiry`` is on;
* otherwise the access key when it is 12 digits, else the default account (``--default-account``).

Session tokens the emulator did not mint (e.g. a dummy ``AWS_SESSION_TOKEN``) are ignored: such a
request counts as signed with long-term keys.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_cleanrooms.emulator.defaults import DEFAULT_ACCOUNT_ID, DEFAULT_REGION
from airflow_cleanrooms.emulator.errors import AccessDeniedException, ExpiredTokenException
from airflow_cleanrooms.emulator.resources import Caller

if TYPE_CHECKING:
    from airflow_cleanrooms.emulator.limits import Limits

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/")
_ACCOUNT_KEY = re.compile(r"[0-9]{12}")
_TOKEN_PREFIX = "CRMLEMU"
SECURITY_TOKEN = "X-Amz-Security-Token"


@dataclass(frozen=True)
class Session:
    """What a minted session token stands for."""

    access_key_id: str
    account_id: str
    role_arn: str
    session_name: str
    expires: float  # on the emulator's clock (epoch seconds)

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def assumed_role_arn(self) -> str:
        partition = self.role_arn.split(":")[1] if self.role_arn.count(":") >= 5 else "aws"
        return f"arn:{partition}:sts::{self.account_id}:assumed-role/{self.role_name}/{self.session_name}"

    @property
    def role_id(self) -> str:
        """A stable ``AROA...`` id for the role (AWS's form of a role's unique id)."""
        digest = base64.b32encode(self.role_arn.encode()).decode().rstrip("=")
        return "AROA" + digest[:17].upper()


def mint_session(
    account_id: str, role_arn: str, session_name: str, expires: float
) -> tuple[Session, str, str]:
    """A new session: ``(session, secret access key, session token)``."""
    session = Session(
        access_key_id="ASIA" + secrets.token_hex(8).upper(),
        account_id=account_id,
        role_arn=role_arn,
        session_name=session_name,
        expires=expires,
    )
    payload = {
        "k": session.access_key_id,
        "a": account_id,
        "r": role_arn,
        "s": session_name,
        "e": expires,
        "n": secrets.token_hex(8),
    }
    token = _TOKEN_PREFIX + base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    return session, secrets.token_urlsafe(30), token


@functools.lru_cache(maxsize=4096)
def session_of(token: str) -> Session | None:
    """The session a token minted by the emulator stands for; ``None`` for any other token."""
    if not token.startswith(_TOKEN_PREFIX):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token[len(_TOKEN_PREFIX) :].encode()))
        return Session(payload["k"], payload["a"], payload["r"], payload["s"], float(payload["e"]))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


@dataclass(frozen=True)
class Identity:
    """The signer of one request."""

    access_key_id: str
    caller: Caller
    session: Session | None = None


@functools.lru_cache(maxsize=1024)
def _scope_of(credential: str) -> tuple[str, str]:
    found = _CREDENTIAL.search(credential)
    if found is None:
        return "", DEFAULT_REGION
    return found.group(1), found.group(2) or DEFAULT_REGION


class Authenticator:
    """
    Identifies the signer of each request.

    :param limits: the limits in force (``token_expiry``).
    :param clock: the emulator's clock (epoch seconds, with the control endpoint's offset).
    :param default_account: the account of long-term keys that are not 12 digits.
    """

    def __init__(self, limits: Limits, clock: Callable[[], float], default_account: str = DEFAULT_ACCOUNT_ID):
        if not _ACCOUNT_KEY.fullmatch(default_account):
            raise ValueError(f"the default account is 12 digits, got {default_account!r}")
        self.limits = limits
        self.clock = clock
        self.default_account = default_account

    def identify(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> Identity:
        """The signer; refuses unsigned requests (403) and, when enforced, expired session tokens (403)."""
        auth = headers.get("Authorization") or headers.get("authorization")
        token = headers.get(SECURITY_TOKEN) or headers.get(SECURITY_TOKEN.lower())
        if auth:
            if not auth.startswith("AWS4-HMAC-SHA256"):
                raise AccessDeniedException("Unsupported authorization scheme: sign requests with SigV4")
            access_key, region = _scope_of(auth)
        elif "X-Amz-Credential" in query:  # a presigned URL
            access_key, region = _scope_of("Credential=" + query["X-Amz-Credential"][0])
            token = token or (query.get(SECURITY_TOKEN) or [""])[0]
        else:
            raise AccessDeniedException("Missing Authentication Token: the request is not signed with SigV4")
        session = session_of(token) if token else None
        if session is not None:
            if self.limits.token_expiry and self.clock() >= session.expires:
                raise ExpiredTokenException()
            return Identity(access_key, Caller(region=region, account_id=session.account_id), session)
        account = access_key if _ACCOUNT_KEY.fullmatch(access_key) else self.default_account
        return Identity(access_key, Caller(region=region, account_id=account))

"""Defaults shared by the emulator and its light-weight clients (no botocore import here)."""

from __future__ import annotations

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_FAILURE_CODE = "ClientError"
DEFAULT_FAILURE_MESSAGE = "The emulator was told to fail this job"
ENV_PREFIX = "CLEANROOMS_EMULATOR_"

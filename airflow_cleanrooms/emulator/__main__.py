"""
Command line: ``python -m airflow_cleanrooms.emulator`` (or ``cleanrooms-ml-emulator``).

Every flag can also come from the environment: ``--pending-seconds`` <-
``CLEANROOMS_EMULATOR_PENDING_SECONDS`` and so on (a flag given on the
command line wins). Stops cleanly (exit 0) on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from airflow_cleanrooms.emulator.defaults import DEFAULT_ACCOUNT_ID, ENV_PREFIX
from airflow_cleanrooms.emulator.limits import Limits, coerce_limit

# AWS limits: flag -> (Limits field, help). Each is a number or "off" (see limits.py).
LIMIT_FLAGS = {
    "--inference-jobs-per-membership": (
        "inference_jobs_per_membership",
        "pending/in-progress inference jobs allowed per membership, or off (default 5, AWS's)",
    ),
    "--inference-jobs-per-account": (
        "inference_jobs_per_account",
        "pending/in-progress inference jobs allowed per account, or off (default 10, AWS's)",
    ),
    "--training-jobs-per-membership": (
        "training_jobs_per_membership",
        "pending/in-progress trained models (training jobs) allowed per membership, or off (default 5)",
    ),
    "--training-jobs-per-account": (
        "training_jobs_per_account",
        "pending/in-progress trained models (training jobs) allowed per account, or off (default 10)",
    ),
    "--request-rate": (
        "request_rate",
        "requests per second per operation and account, or off (default 5, Clean Rooms' published rate)",
    ),
    "--request-burst": ("request_burst", "requests a full rate bucket admits at once (default 5)"),
    "--credential-seconds": (
        "credential_seconds",
        "lifetime of every credential STS AssumeRole mints, overriding DurationSeconds "
        "(default aws: DurationSeconds, or 3600 when absent)",
    ),
    "--token-expiry": (
        "token_expiry",
        "on/off: refuse requests signed with an expired session token "
        "(403 ExpiredTokenException; default on)",
    ),
}

DEFAULT_STATE = "cleanrooms-ml-emulator.db"


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def _parse_fail_job(text: str) -> tuple[str, tuple[str | None, str | None]]:
    """``NAME[:STATUS_CODE[:MESSAGE]]``."""
    name, _, rest = text.partition(":")
    code, _, message = rest.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"--fail-job needs a name: {text!r}")
    return name, (code or None, message or None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cleanrooms-ml-emulator",
        description="A local AWS Clean Rooms ML API (REST-JSON, as botocore's model describes it). "
        f"Every flag can also be set as an environment variable {ENV_PREFIX}<FLAG>, "
        f"e.g. {ENV_PREFIX}PENDING_SECONDS.",
    )

    def add(flag: str, help_text: str, **kwargs: Any) -> None:
        env = _env_name(flag)
        default = kwargs.pop("default", None)
        convert = kwargs.get("type", str)
        if env in os.environ:
            default = convert(os.environ[env])
        parser.add_argument(flag, default=default, help=f"{help_text} [env {env}]", **kwargs)

    add("--host", "interface to listen on (default 127.0.0.1)", default="127.0.0.1")
    add("--port", "TCP port; 0 picks a free one (default 0)", type=int, default=0)
    add("--state", f"SQLite state file, or :memory: (default {DEFAULT_STATE})", default=DEFAULT_STATE)
    add("--pending-seconds", "how long a job/model stays CREATE_PENDING (default 2)", type=float, default=2.0)
    add(
        "--running-seconds",
        "how long an inference job stays CREATE_IN_PROGRESS (default 10)",
        type=float,
        default=10.0,
    )
    add(
        "--training-seconds", "CREATE_IN_PROGRESS of a trained model (default: --running-seconds)", type=float
    )
    add(
        "--channel-seconds",
        "CREATE_IN_PROGRESS of an ML input channel (default: --running-seconds)",
        type=float,
    )
    add(
        "--cancel-seconds",
        "each of CANCEL_PENDING and CANCEL_IN_PROGRESS (default 1)",
        type=float,
        default=1.0,
    )
    add("--throttle-rate", "fraction of API calls answered 429 ThrottlingException", type=float, default=0.0)
    add(
        "--error-rate", "fraction of API calls answered 500 InternalServiceException", type=float, default=0.0
    )
    add(
        "--drop-rate",
        "fraction of API calls whose connection is closed without an answer",
        type=float,
        default=0.0,
    )
    add("--latency-seconds", "added latency before every answer", type=float, default=0.0)
    add("--fault-operations", "comma-separated operation names the faults apply to (default: all)")
    env_fail = os.environ.get(_env_name("--fail-job"))
    parser.add_argument(
        "--fail-job",
        action="append",
        type=_parse_fail_job,
        default=[_parse_fail_job(item) for item in env_fail.split(";") if item] if env_fail else [],
        metavar="NAME[:CODE[:MESSAGE]]",
        help="make the job/trained model called NAME end in CREATE_FAILED with statusDetails "
        f"(repeatable) [env {_env_name('--fail-job')}, ';'-separated]",
    )
    add("--request-log-size", "API calls kept in the request log (default 10000)", type=int, default=10_000)
    for flag, (_, help_text) in LIMIT_FLAGS.items():
        add(flag, help_text)
    env_no_limits = os.environ.get(_env_name("--no-limits"), "").strip().lower()
    parser.add_argument(
        "--no-limits",
        action="store_true",
        default=env_no_limits in ("1", "true", "yes", "on"),
        help="switch every AWS limit off (quotas, request rates, token expiry); a limit flag given "
        f"as well still sets that limit [env {_env_name('--no-limits')}=1]",
    )
    add(
        "--default-account",
        f"account of callers whose access key is not 12 digits (default {DEFAULT_ACCOUNT_ID})",
        default=DEFAULT_ACCOUNT_ID,
    )
    add("--log-level", "logging level (default INFO)", default="INFO")
    return parser


def limits_from(args: argparse.Namespace) -> Limits:
    """AWS's limits (or none with ``--no-limits``), then every limit flag given."""
    limits = Limits.off() if args.no_limits else Limits()
    for flag, (field_name, _) in LIMIT_FLAGS.items():
        value = getattr(args, field_name)
        if value is not None:
            try:
                setattr(limits, field_name, coerce_limit(field_name, value))
            except ValueError as error:
                raise ValueError(f"{flag}: {error}") from None
    return limits


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        limits = limits_from(args)
    except ValueError as error:
        parser.error(str(error))
    from airflow_cleanrooms.emulator.server import EmulatorServer  # botocore loads only now

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    faults: dict[str, Any] = {
        "throttle_rate": args.throttle_rate,
        "error_rate": args.error_rate,
        "drop_rate": args.drop_rate,
        "latency_seconds": args.latency_seconds,
    }
    if args.fault_operations:
        faults["operations"] = [op.strip() for op in args.fault_operations.split(",") if op.strip()]
    server = EmulatorServer(
        host=args.host,
        port=args.port,
        state=args.state,
        faults=faults,
        fail_jobs=dict(args.fail_job),
        request_log_size=args.request_log_size,
        pending_seconds=args.pending_seconds,
        running_seconds=args.running_seconds,
        training_seconds=args.training_seconds,
        channel_seconds=args.channel_seconds,
        cancel_seconds=args.cancel_seconds,
        limits=limits,
        default_account=args.default_account,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(f"Clean Rooms ML emulator listening on {server.url}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.close()
        print("Clean Rooms ML emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

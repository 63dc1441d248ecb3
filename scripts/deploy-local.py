"""Run the docker-compose topology as plain processes on this machine.

PostgreSQL (a private cluster from Debian's packages), ``airflow db migrate``, ``api-server``,
``scheduler``, ``dag-processor``, ``triggerer`` (LocalExecutor) and the Clean Rooms ML emulator,
each on a free loopback port, in one work folder that goes away on stop. The AWS connection
``aws_default`` points at the emulator, exactly as in docker/docker-compose.yaml.

Used by the deployment and browser tests (tests/deployment/) through :class:`LocalTopology`, and by
people through ``scripts/deploy-local`` (prints URLs and credentials, stops on Ctrl-C).

PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` user (runuser).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
ADMIN_USER = "admin"
T = TypeVar("T")


class TopologyUnavailable(RuntimeError):
    """A prerequisite (PostgreSQL binaries, a user to run them as) is missing on this machine."""


class TopologyFailed(RuntimeError):
    """A component did not come up; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bindir() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if candidates:
        return Path(candidates[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).resolve().parent
    raise TopologyUnavailable("PostgreSQL server binaries (pg_ctl, initdb) not found")


@dataclass
class Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalTopology:
    """The whole deployment as processes. Use as a context manager, or start()/stop()."""

    dags_folder: Path = REPO_ROOT / "dags"
    workdir: Path | None = None
    emulator_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    keep_logs: Path | None = None  # copy every component's log (and task logs) here on stop
    log: Callable[[str], None] = print

    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    timings: dict[str, float] = field(default_factory=dict)
    components: list[Component] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._own_workdir = self.workdir is None
        self.root = Path(self.workdir or tempfile.mkdtemp(prefix="cleanrooms-deploy-"))
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # the postgres user must reach its data folder
        self.pg_port = free_port()
        self.api_port = free_port()
        self.emulator_port = free_port()
        self.airflow_home = self.root / "airflow"
        self.pg_data = self.root / "pgdata"
        self.passwords_file = self.airflow_home / "passwords.json"
        self._pg_user: str | None = None
        self._pg_started = False
        self._token: str | None = None

    # ----------------------------------------------------------------- addresses and environment
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"

    def airflow_env(self) -> dict[str, str]:
        """The environment of every Airflow process: the compose file's, on loopback ports."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "_AIRFLOW", "PYTEST_", "AWS_")) and k != "COV_CORE_SOURCE"
        }
        connection = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"region_name": "us-east-1", "endpoint_url": self.emulator_url},
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
                "AIRFLOW__API__SECRET_KEY": self._secret("api"),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(
                    self.airflow_home / "passwords.json"
                ),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._port("worker_log")),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._port("trigger_log")),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _secret(self, name: str) -> str:
        attr = f"_secret_{name}"
        if not hasattr(self, attr):
            setattr(self, attr, secrets.token_hex(32))
        return str(getattr(self, attr))

    def _port(self, name: str) -> int:
        attr = f"_port_{name}"
        if not hasattr(self, attr):
            setattr(self, attr, free_port())
        return int(getattr(self, attr))

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> LocalTopology:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            with self._phase("postgres"):
                self._start_postgres()
            with self._phase("emulator"):
                self._spawn(
                    "emulator",
                    [
                        self.python,
                        "-m",
                        "airflow_cleanrooms.emulator",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.emulator_port),
                        "--state",
                        str(self.root / "emulator.db"),
                        *self.emulator_args,
                    ],
                )
                self._wait("emulator", lambda: _tcp_open(self.emulator_port), 60)
            with self._phase("db migrate"):
                self.airflow_home.mkdir(parents=True, exist_ok=True)
                self.passwords_file.write_text(json.dumps({ADMIN_USER: self.password}))
                self._run_airflow(["db", "migrate"], "db-migrate", timeout=600)
            with self._phase("airflow services up"):
                for name, args in (
                    ("api-server", ["api-server", "--port", str(self.api_port), "--workers", "1"]),
                    ("scheduler", ["scheduler"]),
                    ("dag-processor", ["dag-processor"]),
                    ("triggerer", ["triggerer"]),
                ):
                    self._spawn(name, [self.python, "-m", "airflow", *args], env=self.airflow_env())
                self._wait("api-server", self._health_all_healthy, 300)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # SIGTERM to all at once, then wait: each service takes seconds to shut down gracefully.
        for component in self.components:
            _signal_group(component.process, signal.SIGTERM)
        for component in reversed(self.components):
            _terminate(component.process)
        self.components.clear()
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in [*self.root.glob("*.log"), self.pg_data / "postgres.log"]:
                if log.exists():
                    shutil.copy(log, self.keep_logs / log.name)
            task_logs = self.airflow_home / "logs"
            if task_logs.exists():
                shutil.copytree(task_logs, self.keep_logs / "task-logs", dirs_exist_ok=True)
        if self._pg_started:
            self._pg(["pg_ctl", "-D", str(self.pg_data), "stop", "-m", "fast", "-w"], check=False)
            self._pg_started = False
        if self._own_workdir and os.environ.get("KEEP_DEPLOY_WORKDIR") != "1":
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------------------ postgres
    def _pg(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(postgres_bindir() / argv[0]), *argv[1:]]
        if self._pg_user:
            cmd = ["runuser", "-u", self._pg_user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise TopologyFailed(f"{' '.join(argv[:2])} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def _start_postgres(self) -> None:
        postgres_bindir()
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as err:
                raise TopologyUnavailable("running as root and no 'postgres' user to run PostgreSQL") from err
            if shutil.which("runuser") is None:
                raise TopologyUnavailable("running as root and no runuser to drop to the postgres user")
            self._pg_user = "postgres"
        self.pg_data.mkdir()
        sockets = self.root / "pgsocket"
        sockets.mkdir()
        if self._pg_user:
            shutil.chown(self.pg_data, self._pg_user)
            shutil.chown(sockets, self._pg_user)
        self._pg(
            ["initdb", "-D", str(self.pg_data), "-U", "airflow", "-A", "trust", "-E", "UTF8", "--no-sync"]
        )
        options = (
            f"-p {self.pg_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = self.pg_data / "postgres.log"
        self._pg(
            ["pg_ctl", "-D", str(self.pg_data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"]
        )
        self._pg_started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE airflow")
        conn.close()

    # -------------------------------------------------------------------------------- Airflow
    def _run_airflow(self, args: list[str], name: str, timeout: float) -> None:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [self.python, "-m", "airflow", *args],
                env=self.airflow_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if result.returncode != 0:
            raise TopologyFailed(f"airflow {' '.join(args)} exited {result.returncode}:\n{_tail(log)}")

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        log = self.root / f"{name}.log"
        out = log.open("wb")
        process = subprocess.Popen(
            cmd,
            env=env or self.airflow_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends it with its children
            cwd=self.root,
        )
        out.close()
        self.components.append(Component(name, process, log))

    def _health_all_healthy(self) -> bool:
        try:
            health = httpx.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all(health.get(p, {}).get("status") == "healthy" for p in parts)

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for component in self.components:
                if component.process.poll() is not None:
                    raise TopologyFailed(
                        f"{component.name} exited with {component.process.returncode} while waiting for "
                        f"{what}:\n{_tail(component.log)}"
                    )
            if ready():
                return
            time.sleep(0.5)
        logs = "\n".join(f"--- {c.name}\n{_tail(c.log, 15)}" for c in self.components)
        raise TopologyFailed(f"{what} not ready after {timeout:.0f}s\n{logs}")

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - started
        self.log(f"[deploy] {name}: {self.timings[name]:.1f}s")

    # ------------------------------------------------------------------------------ REST API
    def token(self) -> str:
        if self._token is None:
            response = httpx.post(
                f"{self.api_url}/auth/token",
                json={"username": ADMIN_USER, "password": self.password},
                timeout=30,
            )
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the public REST API (/api/v2/...) with a JWT token; return the decoded JSON."""
        response = httpx.request(
            method,
            f"{self.api_url}/api/v2/{path.lstrip('/')}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
            **kwargs,
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float, interval: float = 1) -> T:
        """Poll ``check`` until it returns a value; fail with the component logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = check()
            except httpx.TimeoutException:  # a busy (CPU-starved) api-server: ask again
                value = None
            if value is not None:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {c.name}\n{_tail(c.log, 25)}" for c in self.components)
                raise TopologyFailed(f"{what}: not done after {timeout:.0f}s\n{logs}")
            for component in self.components:
                if component.process.poll() is not None:
                    raise TopologyFailed(f"{component.name} died:\n{_tail(component.log)}")
            time.sleep(interval)


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def _terminate(process: subprocess.Popen[bytes], grace: float = 20) -> None:
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    # Children that outlived the group leader (task runners) share its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dags-folder", type=Path, default=REPO_ROOT / "dags")
    parser.add_argument("--workdir", type=Path, default=None, help="kept after stop when given")
    parser.add_argument(
        "--seed-membership",
        metavar="UUID",
        help="seed the emulator: algorithm, association, ML input channel and a trained model (ARNs printed)",
    )
    args = parser.parse_args()
    # The example DAGs check jobs every 60 s by default; the emulator's jobs finish in about 12 s.
    poll = os.environ.get("CLEANROOMS_ML_EXAMPLE_POLL_SECONDS", "10")
    topology = LocalTopology(
        dags_folder=args.dags_folder.resolve(),
        workdir=args.workdir,
        extra_env={"CLEANROOMS_ML_EXAMPLE_POLL_SECONDS": poll},
    )
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with topology:
        if args.seed_membership:
            from airflow_cleanrooms.emulator.control import EmulatorControl

            seeded = EmulatorControl(topology.emulator_url).seed_membership(
                args.seed_membership, trained_model=True
            )
            print(json.dumps(seeded, indent=2))
        print(
            f"\nAirflow UI / REST API  : {topology.api_url}\n"
            f"Login                  : {ADMIN_USER} / {topology.password}\n"
            f"Clean Rooms ML emulator: {topology.emulator_url}\n"
            f"Work folder (logs)     : {topology.root}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while not stop:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())

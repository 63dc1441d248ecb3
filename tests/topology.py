"""
A real Airflow deployment as plain processes: the one way this project starts Airflow outside
``dag.test()``.

``airflow db migrate``, then ``api-server``, ``scheduler`` (LocalExecutor), ``dag-processor`` and
``triggerer`` (or several: ``triggerers=2`` adds ``triggerer-2``, as in an HA deployment), each in
its own session (process group) on free loopback ports, on SQLite or on a private PostgreSQL cluster
(Debian's ``postgresql``; as root it runs as the ``postgres`` user). A component can be SIGKILLed
(:meth:`AirflowTopology.kill`) or stalled and resumed (:meth:`~AirflowTopology.pause`, SIGSTOP/SIGCONT).
Tasks run in LocalExecutor worker processes and talk to the api-server's execution API, as in
production. The REST API (``/api/v2``) is reached as the simple auth manager's ``admin`` user.

On Airflow 2.11 (Amazon MWAA's 2.11 images) the same deployment is ``webserver``, ``scheduler`` (which
parses the DAGs itself) and ``triggerer``; tasks reach the database directly, the REST API is
``/api/v1`` as a FAB ``admin`` user (basic auth), and LocalExecutor needs PostgreSQL.

Used by ``scripts/deploy-local`` (``python -m tests.topology``: the docker-compose topology
without Docker, plus the emulator), the deployment and browser tests (``tests/deployment``), the
reliability suite (``tests/reliability``) and the limits tests. The emulator is not part of it:
callers start an :class:`~airflow_cleanrooms.emulator.process.EmulatorProcess` and pass its
connection in ``env`` (:func:`emulator_env`).

With ``executor="CeleryExecutor"`` (PostgreSQL) it is the distributed deployment of Amazon MWAA and
the Helm chart: a private Redis broker (Debian's ``redis-server``), Celery workers as separate
processes (``workers``), and any number of triggerers.
"""

from __future__ import annotations

import argparse
import base64
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
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx

from airflow_cleanrooms.compat import AIRFLOW_V_3_0_PLUS

REPO_ROOT = Path(__file__).resolve().parents[1]
TRIGGERER = "triggerer"
COMPONENTS = (
    ("api-server", "scheduler", "dag-processor", TRIGGERER)
    if AIRFLOW_V_3_0_PLUS
    else ("webserver", "scheduler", TRIGGERER)
)
#: The REST API's path, and the health endpoint's parts that must say "healthy".
API = "api/v2" if AIRFLOW_V_3_0_PLUS else "api/v1"
HEALTH_PATH = "api/v2/monitor/health" if AIRFLOW_V_3_0_PLUS else "health"
HEALTHY_PARTS = (
    ("metadatabase", "scheduler", "triggerer", "dag_processor")
    if AIRFLOW_V_3_0_PLUS
    else ("metadatabase", "scheduler", "triggerer")
)
DATABASES = ("sqlite", "postgres")
CELERY = "CeleryExecutor"
EXECUTORS = ("LocalExecutor", CELERY)
WORKER = "celery-worker"
ADMIN_USER = "admin"
T = TypeVar("T")


class TopologyUnavailable(RuntimeError):
    """A prerequisite (PostgreSQL binaries, a user to run them as) is missing on this machine."""


class ApiError(RuntimeError):
    """The REST API answered an error status."""

    def __init__(self, method: str, path: str, status: int, text: str):
        super().__init__(f"{method} {path}: {status} {text}")
        self.status = status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def emulator_env(url: str, conn_id: str = "aws_default") -> dict[str, str]:
    """The environment that points Airflow connection ``conn_id`` (and boto3) at the emulator at ``url``."""
    from airflow_cleanrooms.emulator.pytest_plugin import connection_json

    return {
        f"AIRFLOW_CONN_{conn_id.upper()}": connection_json(url),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class PostgresCluster:
    """A private PostgreSQL cluster in its own temporary folder, trust auth on a loopback port."""

    def __init__(self) -> None:
        candidates = sorted(
            glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
            key=lambda p: int(Path(p).parts[-3].split(".")[0]),
        )
        found = candidates[-1] if candidates else shutil.which("pg_ctl")
        if not found:
            raise TopologyUnavailable("PostgreSQL server binaries (pg_ctl, initdb) not found")
        self.bindir = Path(found).resolve().parent
        self.user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError as err:
                raise TopologyUnavailable("running as root and no 'postgres' user to run PostgreSQL") from err
            if shutil.which("runuser") is None:
                raise TopologyUnavailable("running as root and no runuser to drop to the postgres user")
            self.user = "postgres"
        # Its own folder, not under the Airflow home: pytest's temporary folders are private (0700).
        self.root = Path(tempfile.mkdtemp(prefix="cleanrooms-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def _run(self, argv: list[str], check: bool = True) -> None:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        sockets = self.root / "socket"
        for folder in (self.data, sockets):
            folder.mkdir()
            if self.user:
                shutil.chown(folder, self.user)
        if self.user:
            shutil.chown(self.root, self.user)
        self._run(["initdb", "-D", str(self.data), "-U", "airflow", "-A", "trust", "-E", "UTF8", "--no-sync"])
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            ["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"]
        )
        self.started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE airflow")
        conn.close()

    def stop(self) -> None:
        if self.started:
            self._run(["pg_ctl", "-D", str(self.data), "stop", "-m", "fast", "-w"], check=False)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A private Redis (Debian's ``redis-server``) on a loopback port, no persistence: the Celery broker."""

    def __init__(self, logs: Path) -> None:
        found = shutil.which("redis-server")
        if not found:
            raise TopologyUnavailable(
                "redis-server not found (Debian's redis-server: scripts/ci-system-deps)"
            )
        self.binary = found
        self.port = free_port()
        self.log = logs / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

        def ready() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
            ):
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
            return False

        wait_until(ready, 30, "redis-server to answer PING", interval=0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            self.process.kill()
            self.process.wait()
            self.process = None


class AirflowTopology:
    """
    Start, drive and stop a small Airflow deployment in ``home``.

    Either step by step (``migrate()``, ``start()``, ``wait_healthy()``, ``stop()``) or as a context
    manager (:meth:`up` on enter, :meth:`stop` on exit).

    :param home: a fresh directory (AIRFLOW_HOME): ``dags/``, ``logs/``, ``component-logs/``.
    :param env: extra environment for every component (connections, test knobs); wins over the defaults.
    :param parallelism: LocalExecutor worker processes.
    :param database: ``"sqlite"`` (a file in ``home``) or ``"postgres"`` (a private cluster).
    :param executor: ``"LocalExecutor"`` (task processes under the scheduler) or ``"CeleryExecutor"``
        (PostgreSQL only: a private Redis broker, results in the metadata database, ``workers`` Celery
        workers ``celery-worker``, ``celery-worker-2``, ... as separate processes).
    :param workers: Celery workers (CeleryExecutor), each running ``parallelism`` tasks at once.
    :param dags_folder: the DAGs folder (default ``home/dags``, filled by :meth:`add_dags`).
    :param triggerers: triggerer processes: ``triggerer``, then ``triggerer-2``, ... (each with its
        own log server port), as in an HA deployment or an MWAA environment with several schedulers.
        Several triggerers need PostgreSQL (they share triggers through row locks).
    """

    def __init__(
        self,
        home: Path,
        env: dict[str, str] | None = None,
        parallelism: int = 6,
        database: Literal["sqlite", "postgres"] = "sqlite",
        executor: str = "LocalExecutor",
        dags_folder: Path | None = None,
        triggerers: int = 1,
        workers: int = 2,
    ):
        if database not in DATABASES:
            raise ValueError(f"database must be one of {DATABASES}, not {database!r}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
        if triggerers < 1 or (triggerers > 1 and database != "postgres"):
            raise ValueError(f"triggerers must be 1 on SQLite and at least 1 on PostgreSQL, not {triggerers}")
        self.triggerers = [TRIGGERER] + [f"{TRIGGERER}-{n}" for n in range(2, triggerers + 1)]
        self.workers = (
            [WORKER] + [f"{WORKER}-{n}" for n in range(2, workers + 1)] if executor == CELERY else []
        )
        if self.workers and database != "postgres":
            raise ValueError("CeleryExecutor needs database='postgres'")
        self.components = (*COMPONENTS[:-1], *self.triggerers, *self.workers)
        self.home = home
        self.database = database
        self.executor = executor
        self.dags = dags_folder or home / "dags"
        self.logs = home / "component-logs"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: list[str] = []
        self.timings: dict[str, float] = {}
        self.postgres = PostgresCluster() if database == "postgres" else None
        self.redis = RedisServer(home / "component-logs") if executor == CELERY else None
        self._lock = threading.RLock()
        # One REST call at a time from the suite's scenario threads: SQLite has one writer, and six
        # concurrent dagRuns POSTs each waited out the busy timeout, failed, and left the api-server
        # unresponsive for minutes on a loaded 2-core CI machine.
        self._api_lock = threading.Lock()
        self._watching = threading.Event()
        self._token: str | None = None
        self.env = self._environment(parallelism, env or {})

    @property
    def api_url(self) -> str:
        return self.base_url

    def _environment(self, parallelism: int, extra: dict[str, str]) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "PYTEST_"))
            and k != "COV_CORE_SOURCE"
        }
        if self.postgres is not None:
            database_url = self.postgres.url
        else:  # SQLite has one writer; wait for the lock rather than fail (the default is 5 s).
            database_url = f"sqlite:///{self.home}/airflow.db?timeout=60"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                # xcom() reads values deserialized; Airflow before 3.1 refuses that unless told to.
                "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                # Airflow 3.0.2 leaves the issuer unset, and PyJWT 2.10 refuses to sign a token without one.
                "AIRFLOW__API_AUTH__JWT_ISSUER": "airflow-cleanrooms-tests",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # Free ports: two deployments (or two agents' suites) on one machine must not clash.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # Pick up DAG files and schedule quickly; notice a dead triggerer quickly.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                # A loaded CI machine can take long to import a DAG file in a task process.
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if not AIRFLOW_V_3_0_PLUS:  # Airflow 2.11: the webserver and the scheduler's own DAG parsing
            del env["AIRFLOW__CORE__AUTH_MANAGER"]  # 2.11's is the FAB auth manager
            env.update(
                {
                    "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
                    "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
                    "AIRFLOW__WEBSERVER__BASE_URL": self.base_url,
                    "AIRFLOW__WEBSERVER__WORKERS": "1",
                    "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(32),
                    "AIRFLOW__API__AUTH_BACKENDS": (
                        "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth"
                    ),
                    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2",
                    "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "600",
                    "AIRFLOW__SCHEDULER__PARSING_PROCESSES": "1",
                    "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "300",
                }
            )
        if self.redis is not None and self.postgres is not None:
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                    "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url,
                    "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(parallelism),
                }
            )
        env.update(extra)
        return env

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> AirflowTopology:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - started

    def up(self, timeout: float = 300.0) -> None:
        """Migrate, start every component and wait until the health endpoint says all are healthy."""
        try:
            self.migrate()
            with self._phase("airflow services up"):
                self.start()
                self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    @contextlib.contextmanager
    def running(
        self, dag_files: Iterable[Path] = (), components: Iterable[str] = ()
    ) -> Iterator[AirflowTopology]:
        """
        The deployment up for the ``with`` block, with ``dag_files`` in its DAGs folder: migrated,
        started, healthy and watched (a component that exits is restarted and noted in ``restarts``).
        When the block fails, each component's last log lines are printed; it is stopped either way.
        ``components``: start only these (default: all); :meth:`start` the others later.
        """
        self.add_dags(dag_files)
        self.migrate()
        try:
            self.start(*components)
            self.wait_healthy()
            self.watch()
            yield self
        except BaseException:
            for component in self.components:
                print(f"== {component}\n{self.tail(component)}")
            raise
        finally:
            self.stop()

    def add_dags(self, files: Iterable[Path]) -> None:
        self.dags.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, self.dags / path.name)

    def migrate(self) -> None:
        """Start the database (PostgreSQL) and run ``airflow db migrate``."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({ADMIN_USER: self.password}))
        if self.postgres is not None and not self.postgres.started:
            with self._phase("postgres"):
                self.postgres.start()
        if self.redis is not None and self.redis.process is None:
            with self._phase("redis"):
                self.redis.start()
        with self._phase("db migrate"):
            self._airflow("db", "migrate")
        if not AIRFLOW_V_3_0_PLUS:  # Airflow 2.11: the REST API's user, in the FAB auth manager
            self._airflow("users", "create", "--role", "Admin", "--username", ADMIN_USER,
                          "--password", self.password, "--firstname", "Test", "--lastname", "Admin",
                          "--email", "admin@example.com")  # fmt: skip

    def _airflow(self, *command: str) -> None:
        """Run an ``airflow`` CLI command in the deployment's environment; its output goes to a log."""
        name = "-".join(command[:2])
        with open(self.logs / f"{name}.log", "wb") as out:
            result = subprocess.run(
                [sys.executable, "-m", "airflow", *command],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=600,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(command[:2])} exited {result.returncode}:\n{self.tail(name)}"
            )

    def watch(self) -> None:
        """
        Restart a component that exits on its own (not one the test killed).

        On a loaded machine SQLite can still refuse a write past its busy timeout, and the scheduler
        exits on that; the suite tests the provider, not SQLite, so the component is started again
        and the restart is reported (``restarts``).
        """
        self._watching.set()

        def loop() -> None:
            while self._watching.is_set():
                with self._lock:
                    for name, process in list(self.processes.items()):
                        if process.poll() is not None:
                            self.restarts.append(f"{name} exited with {process.returncode}; restarted")
                            self.start(name)
                time.sleep(1)

        threading.Thread(target=loop, daemon=True).start()

    def start(self, *components: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        for component in components or self.components:
            command, env = [component], self.env
            if component in self.triggerers[1:]:  # one more triggerer: its own log server port
                command, env = (
                    [TRIGGERER],
                    {**env, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())},
                )
            if component in self.workers:  # a Celery worker: its own name and log server port
                command = ["celery", "worker", "--celery-hostname", f"{component}@%h"]
                env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            log = open(self.logs / f"{component}.log", "ab")  # noqa: SIM115 - closed with the process
            self.processes[component] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: kill()/stop() end its children too
                cwd=self.home,
            )
            log.close()

    def _check_alive(self) -> None:
        if self._watching.is_set():
            return
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def wait_healthy(self, timeout: float = 180.0) -> None:
        def healthy() -> bool:
            self._check_alive()
            try:
                health = httpx.get(f"{self.base_url}/{HEALTH_PATH}", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return False
            return all((health.get(part) or {}).get("status") == "healthy" for part in HEALTHY_PARTS)

        self.wait_for("a healthy Airflow deployment", healthy, timeout, interval=0.5)

    def kill(self, component: str) -> None:
        """SIGKILL a component and everything it spawned (its process group)."""
        with self._lock:
            process = self.processes.pop(component)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def terminate(self, component: str, timeout: float = 60.0) -> int:
        """SIGTERM a component (a graceful stop, as on a deploy or a scale-in); wait for it to exit."""
        with self._lock:
            process = self.processes.pop(component)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def component_of(self, pid: int) -> str | None:
        """The component whose process (or a descendant of it) ``pid`` is: e.g. a task's Celery worker."""
        owners = {process.pid: name for name, process in self.processes.items()}
        while pid > 1:
            if pid in owners:
                return owners[pid]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent pid (after the command's name)
        return None

    def pause(self, component: str) -> None:
        """SIGSTOP a component's process group: a stalled process (a long pause, a frozen container)."""
        os.killpg(self.processes[component].pid, signal.SIGSTOP)

    def resume(self, component: str) -> None:
        """SIGCONT a component paused by :meth:`pause`."""
        os.killpg(self.processes[component].pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM every component at once, SIGKILL what is left after 15 s; stop PostgreSQL."""
        self._watching.clear()
        with self._lock, self._phase("stop"):
            for process in self.processes.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                    os.killpg(process.pid, signal.SIGCONT)  # a paused component must see it
            deadline = time.monotonic() + 15
            for process in self.processes.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))
                # Children that outlived the group leader (task runners) share its process group.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self.processes.clear()
            if self.redis is not None:
                self.redis.stop()
            if self.postgres is not None:
                if self.postgres.log.exists():
                    shutil.copy(self.postgres.log, self.logs / "postgres.log")
                self.postgres.stop()

    def tail(self, component: str, lines: int = 40) -> str:
        return _tail(self.logs / f"{component}.log", lines)

    def copy_logs(self, dest: Path) -> None:
        """Copy every component's log and the task logs to ``dest`` (CI artifacts)."""
        shutil.copytree(self.logs, dest, dirs_exist_ok=True)
        if (self.home / "logs").exists():
            shutil.copytree(self.home / "logs", dest / "task-logs", dirs_exist_ok=True)

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float, interval: float = 1) -> T:
        """Poll ``check`` until it returns a truthy value; fail with the component logs after ``timeout``."""
        try:
            return wait_until(check, timeout, what, interval)
        except TimeoutError as err:
            logs = "\n".join(f"--- {name}\n{self.tail(name, 25)}" for name in self.processes)
            raise TimeoutError(f"{err}\n{logs}") from None

    # ---- REST API -------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        """Airflow 3: the admin user's bearer token; Airflow 2.11: its password (basic auth)."""
        if AIRFLOW_V_3_0_PLUS:
            return {"Authorization": f"Bearer {self._token_value()}"}
        credentials = base64.b64encode(f"{ADMIN_USER}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {credentials}"}

    def _token_value(self) -> str:
        if self._token is None:
            response = httpx.post(
                f"{self.base_url}/auth/token",
                json={"username": ADMIN_USER, "password": self.password},
                timeout=30,
            )
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        """
        Call ``/api/v2/<path>`` (``/api/v1`` on Airflow 2.11) as the admin user; return the decoded JSON.

        Retries a 5xx answer (a busy SQLite database answers 500, "database is locked") and a
        connection error or timeout (a CPU-starved api-server); raises :class:`ApiError` otherwise.
        """
        url = f"{self.base_url}/{API}/{path.lstrip('/')}"
        for attempt in range(6):
            headers = self._headers()
            try:
                with self._api_lock:
                    response = httpx.request(
                        method, url, json=body, params=params, headers=headers, timeout=60
                    )
            except httpx.TransportError:
                if attempt == 5:
                    raise
            else:
                if response.status_code < 500 or attempt == 5:
                    if response.status_code >= 400:
                        raise ApiError(method, path, response.status_code, response.text)
                    return response.json() if response.content else None
            time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        wanted = set(dag_ids)

        def parsed() -> bool:
            found = {d["dag_id"] for d in self.api("GET", "dags", params={"limit": 100})["dags"]}
            return wanted <= found

        self.wait_for(f"DAGs {sorted(wanted)} to be parsed", parsed, timeout, interval=0.5)

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, run_id: str | None = None, conf: dict[str, Any] | None = None) -> str:
        """Create a DAG run (``run_id`` chosen by Airflow when None); return its run id."""
        body: dict[str, Any] = {"conf": conf or {}}
        if AIRFLOW_V_3_0_PLUS:
            body["logical_date"] = None
        if run_id is not None:
            body["dag_run_id"] = run_id
        try:
            return str(self.api("POST", f"dags/{dag_id}/dagRuns", body)["dag_run_id"])
        except ApiError as error:
            if error.status != 409 or run_id is None:
                raise
            return run_id  # 409: an earlier attempt that answered 500 did create the run

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"])

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of the run (the API's pages of 100 read in turn)."""
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        found: list[dict[str, Any]] = []
        while True:
            page = self.api("GET", path, params={"limit": 100, "offset": len(found)})
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.api("GET", path, params={"deserialize": True, "stringify": False})["value"]

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int = -1) -> None:
        """What "Mark failed/success" in the UI does."""
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        body: dict[str, Any] = {"new_state": state}
        if not AIRFLOW_V_3_0_PLUS:
            body["dry_run"] = False
        self.api("PATCH", path + (f"/{map_index}" if map_index >= 0 else ""), body)

    def wait_run_finished(self, dag_id: str, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            state = self.dag_run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return self.wait_for(f"run {run_id} of {dag_id} to finish", finished, timeout, interval=0.5)

    def task_log_dir(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Path:
        path = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return path / f"map_index={map_index}" if map_index >= 0 else path

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The task's log file as the worker wrote it (JSON lines)."""
        path = self.task_log_dir(dag_id, run_id, task_id, map_index) / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ui_task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """The task's log as the UI shows it (through the API; structured entries joined into text)."""
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        try:
            body = self.api("GET", path, params={"full_content": True})
        except (ApiError, ValueError) as err:
            return f"(log unavailable: {err})"
        content = body.get("content", [])
        if isinstance(content, str):
            return content
        keys = ("timestamp", "level", "event", "error_detail")
        return "\n".join(
            " ".join(str(entry[k]) for k in keys if entry.get(k)) if isinstance(entry, dict) else str(entry)
            for entry in content
        )


# ---- scripts/deploy-local -------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``scripts/deploy-local``: the deployment plus the emulator until Ctrl-C."""
    from airflow_cleanrooms.emulator.control import EmulatorControl
    from airflow_cleanrooms.emulator.process import EmulatorProcess

    parser = argparse.ArgumentParser(
        prog="scripts/deploy-local",
        description="Run the docker-compose topology as plain processes on this machine: Airflow's "
        "api-server, scheduler, dag-processor and triggerer, and the Clean Rooms ML emulator.",
    )
    parser.add_argument("--dags-folder", type=Path, default=REPO_ROOT / "dags")
    parser.add_argument("--workdir", type=Path, default=None, help="kept after stop when given")
    parser.add_argument("--database", choices=DATABASES, default="postgres")
    parser.add_argument("--executor", choices=EXECUTORS, default="LocalExecutor")
    parser.add_argument(
        "--triggerers", type=int, default=1, help="triggerer processes (PostgreSQL only for 2+)"
    )
    parser.add_argument(
        "--seed-membership",
        metavar="UUID",
        help="seed the emulator: algorithm, association, ML input channel and a trained model (ARNs printed)",
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cleanrooms-deploy-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    emulator = EmulatorProcess(state=workdir / "emulator.db").start()
    try:
        env = {
            **emulator_env(emulator.url),
            # The example DAGs check jobs every 60 s by default; the emulator's jobs finish in about 12 s.
            "CLEANROOMS_ML_EXAMPLE_POLL_SECONDS": os.environ.get("CLEANROOMS_ML_EXAMPLE_POLL_SECONDS", "10"),
            # As in docker-compose: new DAGs paused, edited files re-parsed at Airflow's default pace.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        }
        topology = AirflowTopology(
            workdir / "airflow",
            env=env,
            parallelism=8,
            database=args.database,
            executor=args.executor,
            dags_folder=args.dags_folder.resolve(),
            triggerers=args.triggerers,
        )
        with topology:
            if args.seed_membership:
                seeded = EmulatorControl(emulator.url).seed_membership(
                    args.seed_membership, trained_model=True
                )
                print(json.dumps(seeded, indent=2))
            print(
                f"\nAirflow UI / REST API  : {topology.api_url}\n"
                f"Login                  : {ADMIN_USER} / {topology.password}\n"
                f"Clean Rooms ML emulator: {emulator.url}\n"
                f"Work folder (logs)     : {workdir}\n"
                "Ctrl-C stops everything.",
                flush=True,
            )
            while not stop.wait(0.5):
                pass
    finally:
        emulator.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

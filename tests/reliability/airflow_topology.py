"""
A real Airflow deployment for the reliability suite: api-server, scheduler (LocalExecutor),
dag-processor and triggerer as separate processes on one SQLite metadata database.

Each component runs in its own session (process group), so a test can SIGKILL one (the triggerer)
with everything it spawned and start it again. Tasks run in LocalExecutor worker processes and talk
to the api-server's execution API (``[core] execution_api_server_url``), as in production.
The REST API (``/api/v2``) with the simple auth manager in all-admins mode triggers runs and reads
task instances.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


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


class AirflowTopology:
    """
    Start, drive and stop a small Airflow deployment in ``home``.

    :param home: a fresh directory (AIRFLOW_HOME): ``dags/``, ``logs/``, ``airflow.db``.
    :param env: extra environment for every component (connections, test knobs).
    :param parallelism: LocalExecutor worker processes.
    """

    def __init__(self, home: Path, env: dict[str, str] | None = None, parallelism: int = 6):
        self.home = home
        self.dags = home / "dags"
        self.logs = home / "component-logs"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: list[str] = []
        self._lock = threading.RLock()
        # One REST call at a time from the suite's scenario threads: SQLite has one writer, and six
        # concurrent dagRuns POSTs each waited out the busy timeout, failed, and left the api-server
        # unresponsive for minutes on a loaded 2-core CI machine.
        self._api_lock = threading.Lock()
        self._watching = threading.Event()
        self._token: str | None = None
        self.env = self._environment(parallelism, env or {})

    def _environment(self, parallelism: int, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.pop("AIRFLOW_HOME", None)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(parallelism),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # SQLite has one writer; wait for the lock rather than fail (the default is 5 s).
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow.db?timeout=60",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # Pick up DAG files and schedule quickly; notice a dead triggerer quickly.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
                # A loaded CI machine can take long to import a DAG file in a task process.
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "300",
            }
        )
        env.update(extra)
        return env

    # ---- lifecycle ------------------------------------------------------------------------

    def add_dags(self, files: Iterable[Path]) -> None:
        self.dags.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, self.dags / path.name)

    def migrate(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / "db-migrate.log", "wb") as out:
            subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                env=self.env,
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
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
        for component in components or COMPONENTS:
            self.logs.mkdir(parents=True, exist_ok=True)
            log = open(self.logs / f"{component}.log", "ab")  # noqa: SIM115 - closed with the process
            self.processes[component] = subprocess.Popen(
                [sys.executable, "-m", "airflow", component],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            log.close()

    def wait_healthy(self, timeout: float = 180.0) -> None:
        def healthy() -> bool:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")
            try:
                health = self._get("/api/v2/monitor/health", auth=False)
            except (OSError, urllib.error.URLError):
                return False
            return all(
                (health.get(part) or {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )

        wait_until(healthy, timeout, "a healthy Airflow deployment", interval=0.5)

    def kill(self, component: str) -> None:
        """SIGKILL a component and everything it spawned (its process group)."""
        with self._lock:
            process = self.processes.pop(component)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        self._watching.clear()
        with self._lock:
            self._stop_all()

    def _stop_all(self) -> None:
        for process in self.processes.values():
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def tail(self, component: str, lines: int = 40) -> str:
        path = self.logs / f"{component}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ---- REST API -------------------------------------------------------------------------

    def _token_value(self) -> str:
        if self._token is None:
            self._token = str(self._get("/auth/token", auth=False)["access_token"])
        return self._token

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token_value()}"
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(6):
            request = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
            try:
                with self._api_lock, urllib.request.urlopen(request, timeout=30) as response:
                    payload = response.read()
                return json.loads(payload) if payload else None
            except urllib.error.HTTPError as error:
                # SQLite allows one writer: a busy database answers 500 ("database is locked").
                if error.code < 500 or attempt == 5:
                    raise
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if attempt == 5:
                    raise
            time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def _get(self, path: str, auth: bool = True) -> Any:
        return self._request("GET", path, auth=auth)

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120.0) -> None:
        wanted = set(dag_ids)

        def parsed() -> bool:
            found = {d["dag_id"] for d in self._get("/api/v2/dags?limit=100")["dags"]}
            return wanted <= found

        wait_until(parsed, timeout, f"DAGs {sorted(wanted)} to be parsed", interval=0.5)

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
        try:
            self._request(
                "POST",
                f"/api/v2/dags/{dag_id}/dagRuns",
                {"dag_run_id": run_id, "logical_date": None, "conf": conf},
            )
        except urllib.error.HTTPError as error:
            if error.code != 409:  # 409: an earlier attempt that answered 500 did create the run
                raise

    def dag_run_state(self, dag_id: str, run_id: str) -> str:
        return str(self._get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100"
        return list(self._get(path)["task_instances"])

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self._get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """What "Mark failed/success" in the UI does."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        self._request("PATCH", path, {"new_state": state})

    def wait_run_finished(self, dag_id: str, run_id: str, timeout: float) -> str:
        def finished() -> str | None:
            state = self.dag_run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return str(wait_until(finished, timeout, f"run {run_id} of {dag_id} to finish", interval=0.5))

    def task_log_dir(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Path:
        path = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return path / f"map_index={map_index}" if map_index >= 0 else path

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        path = self.task_log_dir(dag_id, run_id, task_id, map_index) / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

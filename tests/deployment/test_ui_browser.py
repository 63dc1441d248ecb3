"""The Airflow UI in headless Chromium (Debian's package, driven by Playwright from PyPI).

On the same plain-process deployment as test_deployment.py: sign in, open the inference task of a
finished example run and find the Clean Rooms ML console link (the operator's extra link) and the
rendered template fields (name, environment, tags); then trigger the inference-only DAG through its
Param form, once with an invalid membership id the form must refuse (no run is created), once with
valid values (a run is created with them and succeeds). Screenshots go to artifacts/main/screenshots/.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .conftest import ARTIFACTS, MEMBERSHIP_ID, TIMINGS, ExampleRun, missing_tool, timed

if TYPE_CHECKING:
    from tests.topology import AirflowTopology

# The first test also pays for the shared topology (start + all example runs): minutes, not seconds.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ARTIFACTS / "screenshots"
CONSOLE = "https://console.aws.amazon.com/cleanrooms/home?region=us-east-1"
INFERENCE_DAG = "example_cleanrooms_ml_inference"
# The machine reaches only package registries: keep Chromium off the network it cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_tool("playwright (PyPI, in the dev extra) is not installed")
    if not shutil.which(CHROMIUM):
        missing_tool("chromium (Debian package) is not installed")
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def page(browser: Any, deployment: AirflowTopology) -> Iterator[Any]:
    """A signed-in page (the UI's own login form, SimpleAuthManager)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    with timed("browser: sign in"):
        page.goto(f"{deployment.api_url}/")
        page.wait_for_url(re.compile(r"/auth/login"))
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(deployment.password)
        page.screenshot(path=SCREENSHOTS / "01-sign-in.png")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/auth/login" not in url)
        page.get_by_role("link", name="Dags").first.wait_for()
    try:
        yield page
    finally:
        context.close()


def _field_text(page: Any, field: str) -> str:
    """The rendered value of one template field, as text (the code viewer's line numbers left out)."""
    row = page.locator("tr").filter(has=page.locator("td", has_text=re.compile(rf"^\s*{field}\s*$")))
    row.first.scroll_into_view_if_needed()
    cell = row.first.locator("td").nth(1)
    code = cell.locator("code")
    if code.count() == 0:
        return str(cell.inner_text()).strip()
    return str(
        code.first.evaluate(
            "c => { const x = c.cloneNode(true);"
            " x.querySelectorAll('.linenumber').forEach(n => n.remove()); return x.textContent; }"
        )
    ).strip()


def test_inference_task_shows_console_link_and_rendered_fields(
    page: Any, deployment: AirflowTopology, example_runs: dict[str, ExampleRun]
) -> None:
    run = example_runs[INFERENCE_DAG]
    assert run.state == "success", f"the run the UI check opens did not succeed: {run.task_states}"
    task_url = f"{deployment.api_url}/dags/{INFERENCE_DAG}/runs/{run.run_id}/tasks/start_inference"
    with timed("browser: task details + extra link"):
        page.goto(f"{task_url}/details")
        link = page.get_by_role("link", name="Clean Rooms ML Inference Job")
        link.wait_for()
        href = link.get_attribute("href") or ""
        page.screenshot(path=SCREENSHOTS / "02-inference-task-extra-link.png")
    assert href.startswith(CONSOLE), href

    with timed("browser: rendered templates"):
        page.goto(f"{task_url}/rendered_templates")
        page.get_by_text("membership_identifier", exact=True).wait_for()
        page.screenshot(path=SCREENSHOTS / "03-rendered-templates.png")
        name = _field_text(page, "name")
        environment = _field_text(page, "environment")
        tags = _field_text(page, "tags")
        page.screenshot(path=SCREENSHOTS / "04-rendered-templates-tags.png")
    # "<name_prefix>-<run_after | ts_nodash>", and the trigger conf's objects as the task got them.
    assert re.fullmatch(rf"{re.escape(run.conf['name_prefix'])}-\d{{8}}T\d{{6}}", name), name
    assert json.loads(environment) == run.conf["environment"]
    assert json.loads(tags) == run.conf["tags"]


def test_trigger_form_refuses_invalid_param_and_runs_valid_one(
    page: Any, deployment: AirflowTopology, seeded: dict[str, str], example_runs: dict[str, ExampleRun]
) -> None:
    runs_before = {
        r["dag_run_id"] for r in deployment.api("GET", f"dags/{INFERENCE_DAG}/dagRuns")["dag_runs"]
    }
    with timed("browser: trigger form (invalid, then valid)"):
        page.goto(f"{deployment.api_url}/dags/{INFERENCE_DAG}")
        page.get_by_role("button", name="Trigger").first.click()
        dialog = page.get_by_role("dialog")
        dialog.locator("#element_membership_id").wait_for()
        dialog.locator("#element_membership_id").fill("not-a-membership-uuid")
        dialog.locator("#element_trained_model_arn").fill(seeded["trained_model_arn"])
        dialog.locator("#element_ml_input_channel_arn").fill(seeded["ml_input_channel_arn"])
        dialog.locator("#element_name_prefix").fill("ui-form")
        dialog.get_by_role("button", name="Trigger").click()
        page.get_by_text("Failed to Trigger Dag").wait_for()
        error = dialog.get_by_text(re.compile("Invalid input for param membership_id"))
        error.wait_for()
        error.scroll_into_view_if_needed()
        page.screenshot(path=SCREENSHOTS / "05-trigger-form-refuses-invalid-membership.png")
        refused_runs = {
            r["dag_run_id"] for r in deployment.api("GET", f"dags/{INFERENCE_DAG}/dagRuns")["dag_runs"]
        }
        assert refused_runs == runs_before, "the invalid form still created a run"

        dialog.locator("#element_membership_id").fill(MEMBERSHIP_ID)
        # The error toast sits over the button: press it from the keyboard, as a user could.
        dialog.get_by_role("button", name="Trigger").focus()
        page.keyboard.press("Enter")
        page.get_by_text("Dag Run Triggered").first.wait_for()  # the UI may show the toast twice
        page.screenshot(path=SCREENSHOTS / "06-trigger-form-accepted.png")

    def new_run() -> dict[str, Any] | None:
        runs = deployment.api("GET", f"dags/{INFERENCE_DAG}/dagRuns")["dag_runs"]
        fresh = [r for r in runs if r["dag_run_id"] not in runs_before]
        return fresh[0] if fresh else None

    run = deployment.wait_for("run created by the form", new_run, timeout=60)
    assert run["conf"]["membership_id"] == MEMBERSHIP_ID
    assert run["conf"]["name_prefix"] == "ui-form"
    assert run["conf"]["trained_model_arn"] == seeded["trained_model_arn"]

    started = time.monotonic()

    def finished() -> str | None:
        state = deployment.api("GET", f"dags/{INFERENCE_DAG}/dagRuns/{run['dag_run_id']}")["state"]
        return state if state in ("success", "failed") else None

    state = deployment.wait_for("run triggered from the form", finished, timeout=300, interval=2)
    TIMINGS["browser: form-triggered run -> finished"] = time.monotonic() - started
    page.goto(f"{deployment.api_url}/dags/{INFERENCE_DAG}/runs/{run['dag_run_id']}")
    page.get_by_text(run["dag_run_id"]).first.wait_for()
    page.screenshot(path=SCREENSHOTS / "07-form-triggered-run.png")
    assert state == "success"

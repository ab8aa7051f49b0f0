"""alice starts an SFT run from the runs page, watches it finish and opens the version's lineage.

The run is executed in the test (as the worker would) so the page shows a real curve; the
screenshots in ``docs/screenshots/`` are the ones the tutorial shows.
"""

from pathlib import Path

import pytest

from tests.e2e.shots import SHOTS
from tests.training import labels
from training import execution
from training.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def test_a_manager_starts_an_sft_run_and_traces_its_version(live_server, browser, project, alice, bob,
                                                            tiny_version, settings):
    settings.RUN_HEARTBEAT_SECONDS = 3600
    for i in range(8):
        labels.demonstration(project, bob, f"What is {i} plus one?", f"{i} plus one is {i + 1}.")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "pw-alice")
    page.click("button[type=submit], input[type=submit]")

    page.goto(f"{live_server.url}/projects/{project.slug}/runs/")
    page.select_option("select[name=kind]", "sft")
    page.select_option("select[name=parent_version]", label=f"{tiny_version.name} (policy)")
    page.fill("textarea[name=config]", '{"max_steps": 8, "batch_size": 4, "learning_rate": 0.001, "eval_every": 2}')
    page.click("button:has-text('Start run')")
    run = TrainingRun.objects.get(project=project, kind="sft")
    assert execution.run_execute(run_id=run.pk, worker="browser-test") == "succeeded"

    page.goto(f"{live_server.url}/projects/{project.slug}/runs/")
    assert page.locator(f"text=#{run.pk}").first.is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)

    page.goto(f"{live_server.url}/projects/{project.slug}/runs/{run.pk}/")
    assert page.locator("text=succeeded").first.is_visible()
    page.screenshot(path=str(SHOTS / "run.png"), full_page=True)

    run.refresh_from_db()
    page.goto(f"{live_server.url}/projects/{project.slug}/models/{run.model_version.name}/")
    assert page.locator(f"text={tiny_version.name}").first.is_visible()
    page.screenshot(path=str(SHOTS / "model.png"), full_page=True)

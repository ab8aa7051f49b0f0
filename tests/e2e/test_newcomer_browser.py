"""What a newcomer tripped over, in a real browser (issue 16): ranking keys pressed as the legend says,
ties read back in review, a run's phase before its first step, and the chat's small things.

Screenshots go to docs/screenshots/tmp/ (git-ignored) to be looked at, not shipped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from annotation.models import Ranking, ReviewState
from annotation.services import completions_add, prompt_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "tmp"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def login(browser, live_server, user):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(30_000)  # a loaded 2-core machine
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and page.js_errors.append(msg.text))
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", "pw-" + user.username)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    return page


def test_bob_ranks_with_the_keys_the_legend_names_and_dave_reads_his_tie(browser, live_server, project, bob, dave):
    project.review_rate = 1.0
    project.save()
    prompt = prompt_create(project=project, record={"text": "Say hi"})
    completions_add(prompt=prompt, texts=["Hi!", "Hello there, how can I help?", "Hey", "Greetings."])

    page = login(browser, live_server, bob)
    page.goto(f"{live_server.url}/projects/{project.slug}/rank/")
    legend = page.locator("[data-keys-legend]").inner_text()
    assert "A\u2013D select that answer (A is selected first)" in legend
    assert "1\u20134 put the selected answer in that row, then the next unplaced answer is selected" in legend
    cards = page.locator("article.completion")
    cid = {cards.nth(i).get_attribute("data-name"): int(cards.nth(i).get_attribute("data-cid")) for i in range(4)}

    page.keyboard.press("c")  # "select C" is a letter now: a number never selects
    assert "selected" in page.locator('article[data-name="C"]').get_attribute("class")
    page.keyboard.press("1")  # C to row 1; D (the next unplaced) is selected
    assert "selected" in page.locator('article[data-name="D"]').get_attribute("class")
    page.keyboard.press("2")  # D to row 2; A is selected next
    page.keyboard.press("b")
    page.keyboard.press("2")  # B ties with D
    page.keyboard.press("3")  # the next unplaced one, A, to row 3
    assert page.locator("[data-pairs-count]").inner_text() == "5 comparisons, 1 tie"
    assert "D = B" in page.locator("[data-pairs]").inner_text()
    page.keyboard.press("n")  # N flags the selected answer (A) as not helpful
    page.screenshot(path=str(SHOTS / "rank-keys.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Nothing to rank right now")
    ranking = Ranking.objects.get()
    assert ranking.order == [[cid["C"]], [cid["D"], cid["B"]], [cid["A"]]]
    assert ranking.flags == {str(cid["A"]): ["not_helpful"]}
    assert page.js_errors == []
    page.close()

    page = login(browser, live_server, dave)
    page.goto(f"{live_server.url}/projects/{project.slug}/review/?kind=ranking")
    reads = page.locator("[data-reads-as]").inner_text()
    assert reads == "Reads as: C > D, C > B, C > A, D = B, D > A, B > A"  # the tie bob saw as "D = B"
    keys = page.locator(".keys").inner_text()
    assert "edit" not in keys.lower() and page.locator("[data-start-edit]").count() == 0
    page.screenshot(path=str(SHOTS / "review-ranking-tie.png"), full_page=True)
    page.keyboard.press("a")
    page.wait_for_selector("text=Nothing to review")
    assert Ranking.objects.get().review_state == ReviewState.APPROVED
    assert page.js_errors == []
    page.close()


def test_alice_sees_what_a_new_run_is_doing_before_its_first_step(browser, live_server, project, alice):
    from training import runs
    from training.execution import DbReporter

    page = login(browser, live_server, alice)
    page.goto(f"{live_server.url}/projects/{project.slug}/runs/")
    assert page.locator('details[data-kind="sft"]').get_attribute("open") is not None
    page.select_option("select[name=kind]", "reward")
    assert page.locator('details[data-kind="reward"]').get_attribute("open") is not None
    assert page.locator('details[data-kind="sft"]').get_attribute("open") is None  # the panel follows Kind

    run = runs.run_create(kind="smoke", project=project, created_by=alice)
    reporter = DbReporter(run.pk, runs.run_claim(run_id=run.pk, worker="w1"))
    reporter.phase("loading model")
    page.goto(f"{live_server.url}/projects/{project.slug}/runs/{run.pk}/")
    page.wait_for_selector("[data-run-phase] >> text=Loading model")
    reporter.phase("tokenizing rankings", 300, 1307)
    phase = page.locator("[data-run-phase]")
    phase.locator("text=300 of 1,307").wait_for()  # the page refreshes itself every 3 s
    assert phase.locator("progress").get_attribute("value") == "23"
    page.screenshot(path=str(SHOTS / "run-phase.png"), full_page=True)
    reporter.progress(1, 10)
    page.wait_for_selector("text=step 1 of 10")
    assert page.locator("[data-run-phase]").count() == 0  # steps run: the phase is over
    assert page.js_errors == []


def test_bob_is_told_why_the_first_answer_is_slow_and_his_thanks_stays_in_its_card(
        browser, live_server, project, deployed, bob, monkeypatch):
    from serving import runtime
    from tests.serving.fakes import ScriptedEngine

    class Loading(ScriptedEngine):
        """The first answer after a start: nothing for six seconds while the model loads."""

        def stream(self, messages, params):
            pieces = super().stream(messages, params)
            time.sleep(6)
            return pieces

    monkeypatch.setattr(runtime, "engine_of", lambda deployment: Loading("Hi! How can I help you today?"))
    page = login(browser, live_server, bob)
    page.goto(f"{live_server.url}/projects/{project.slug}/chat/")
    regenerate = page.locator("#chat-regenerate")
    assert not regenerate.is_visible()  # nothing to regenerate before a conversation exists
    page.fill("#chat-text", "Say hi")
    page.keyboard.press("Enter")
    assert not regenerate.is_visible()
    page.locator("#chat-status", has_text="also loads the model").wait_for(timeout=8_000)
    page.screenshot(path=str(SHOTS / "chat-loading.png"), full_page=True)
    answer = page.locator(".chat-msg.chat-assistant").last
    answer.locator(".feedback").wait_for(timeout=20_000)
    assert page.locator("#chat-status").inner_text() == ""
    assert regenerate.is_visible() and regenerate.is_enabled()

    answer.locator("input[name=comment]").fill("Too short: I wanted a longer greeting with a question back")
    answer.locator("button[value=down]").click()
    thanks = answer.locator(".feedback-thanks")
    thanks.wait_for()
    card, note = answer.bounding_box(), thanks.bounding_box()
    assert card["x"] <= note["x"] and note["x"] + note["width"] <= card["x"] + card["width"]
    assert note["y"] + note["height"] <= card["y"] + card["height"]  # "Thanks, noted." inside its card
    page.screenshot(path=str(SHOTS / "chat-thanks.png"), full_page=True)
    assert page.js_errors == []

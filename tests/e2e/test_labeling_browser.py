"""A labeler's day in a real browser: write with the keyboard, rank with keys and a drag, review.

Drives Debian's chromium through Playwright against pytest-django's live server, and saves the
screenshots under docs/screenshots/ that the docs show.
"""

from __future__ import annotations

import json
import os

import pytest

from annotation.models import Assignment, Demonstration, Ranking, ReviewState
from annotation.services import completions_add, prompt_create
from tests.e2e.shots import SHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
GUIDELINES = """Write the answer a **careful, friendly expert** would give.

- Answer the question that was asked; say so when you are unsure.
- Prefer short paragraphs and lists; use `code` for commands.
- Never include personal data. Flag prompts that ask for it.
"""


@pytest.fixture
def browser():
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        yield browser
        browser.close()


def login(browser, live_server, username: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(10_000)
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.on("console", lambda msg: msg.type == "error" and "favicon" not in msg.location.get("url", "")
            and page.js_errors.append(msg.text))
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-" + username)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/")
    return page


@pytest.fixture
def story(project):
    project.guidelines = GUIDELINES
    project.review_rate = 1.0
    project.save()
    prompt_create(project=project, record={"text": "How do I **undo** the last git commit but keep my changes?"})
    prompt_create(project=project, record={"text": "Name three rivers in Europe."})
    ranked = prompt_create(project=project, record={"text": "Explain what a reward model is, in two sentences."})
    completions_add(prompt=ranked, texts=[
        "A reward model scores an answer with one number. It is trained on human rankings so that preferred "
        "answers get higher scores, and PPO then uses it to improve the policy.",
        "It is a model that gives rewards.",
        "A reward model predicts which of two answers a person would prefer. Trained on **rankings**, it stands in "
        "for the labelers during reinforcement learning.",
        "Reward models are used in RLHF. I don't know more.",
    ])
    second = prompt_create(project=project, record={"text": "Say hello in French."})
    completions_add(prompt=second, texts=["Bonjour !", "Hello.", "Salut", "Hola"])
    return project


def test_labeler_writes_ranks_and_reviewer_approves(browser, live_server, story, alice, bob, dave, monkeypatch):
    SHOTS.mkdir(parents=True, exist_ok=True)
    project = story
    base = f"{live_server.url}/projects/{project.slug}/"

    page = login(browser, live_server, "bob")
    page.goto(base + "write/")
    page.wait_for_selector("text=undo")
    assert page.evaluate("document.activeElement.name") == "content"  # the answer box has the focus
    page.keyboard.type("Run `git reset --soft HEAD~1`: the commit")
    page.reload()  # an accidental reload keeps the draft
    page.wait_for_selector("text=undo")
    assert page.input_value("textarea[name=content]") == "Run `git reset --soft HEAD~1`: the commit"
    page.evaluate("window.__samePage = true")
    page.keyboard.type(" is undone and your changes stay staged.")
    page.keyboard.press("Alt+p")
    page.wait_for_selector(".answer-preview code")  # the Markdown preview
    page.screenshot(path=str(SHOTS / "write.png"), full_page=True)
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("text=Name three rivers in Europe.")
    page.wait_for_selector("text=Answer saved.")
    assert page.evaluate("window.__samePage") is True  # no page load between the two prompts
    assert page.evaluate("document.activeElement.name") == "content"
    demo = Demonstration.objects.get()
    assert demo.content.startswith("Run `git reset --soft HEAD~1`") and demo.time_spent_ms > 0
    # Esc opens the skip dialog, a number picks the reason, Enter confirms: the next prompt comes in place
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Skipped.")
    page.wait_for_selector("text=Explain what a reward model is")
    assert page.evaluate("window.__samePage") is True
    skipped = Assignment.objects.get(user=bob, status=Assignment.Status.SKIPPED)
    assert skipped.prompt.text == "Name three rivers in Europe." and "expertise" in skipped.skip_reason

    page.goto(base + "rank/")
    page.wait_for_selector("article.completion")
    page.evaluate("window.__samePage = true")
    cards = page.locator("article.completion")
    assert cards.count() == 4
    cid = {cards.nth(i).get_attribute("data-name"): int(cards.nth(i).get_attribute("data-cid")) for i in range(4)}
    # A is selected first; each number puts the selected answer in that row and moves to the next one.
    for key in ("2", "1", "3", "3"):
        page.keyboard.press(key)
    assert page.locator("[data-pairs-count]").inner_text().startswith("5 comparisons, 1 tie")
    # one drag: D from row 3 up to row 4 (worst), which removes the tie
    page.drag_and_drop(f'.chip[data-cid="{cid["D"]}"]', '.tier[data-tier="4"] [data-tier-items]')
    pairs = page.locator("[data-pairs]").inner_text()
    assert "B > A" in pairs and "C > D" in pairs and "=" not in pairs
    assert "selected" in page.locator('article[data-name="D"]').get_attribute("class")  # the dragged one
    page.keyboard.press("u")  # flag it unsafe
    page.screenshot(path=str(SHOTS / "rank.png"), full_page=True)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Ranking saved.")
    page.wait_for_selector("text=Say hello in French.")
    assert page.evaluate("window.__samePage") is True
    ranking = Ranking.objects.get()
    assert ranking.order == [[cid["B"]], [cid["A"]], [cid["C"]], [cid["D"]]]
    assert ranking.flags == {str(cid["D"]): ["unsafe"]}

    # the next item came in place; rank it with the keyboard only: A and C tie for best, B, then D
    cards = page.locator("article.completion")
    cid = {cards.nth(i).get_attribute("data-name"): int(cards.nth(i).get_attribute("data-cid")) for i in range(4)}
    for key in ("1", "2", "1", "3"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Nothing to rank right now")
    second = Ranking.objects.get(prompt__messages__0__content="Say hello in French.")
    assert second.order == [[cid["A"], cid["C"]], [cid["B"]], [cid["D"]]]
    assert page.js_errors == []
    page.close()

    page = login(browser, live_server, "dave")
    page.goto(base + "review/")
    page.wait_for_selector("text=git reset --soft")
    page.screenshot(path=str(SHOTS / "review.png"), full_page=True)
    page.evaluate("window.__samePage = true")
    page.keyboard.press("a")
    page.wait_for_selector("text=Approved.")
    page.wait_for_selector("text=Ranking by bob")  # no demonstrations left: the rankings come next
    page.screenshot(path=str(SHOTS / "review-ranking.png"), full_page=True)
    page.keyboard.press("a")
    page.wait_for_selector('[data-pending="ranking"]:text-is("1")')
    page.keyboard.press("a")
    page.wait_for_selector("text=Nothing to review")
    assert page.evaluate("window.__samePage") is True
    demo.refresh_from_db()
    assert demo.review_state == ReviewState.APPROVED and demo.reviewer == dave
    assert set(Ranking.objects.values_list("review_state", flat=True)) == {ReviewState.APPROVED}
    assert page.js_errors == []
    page.close()

    page = login(browser, live_server, "alice")
    page.goto(base)
    page.wait_for_selector("text=Import prompts")
    page.screenshot(path=str(SHOTS / "project.png"), full_page=True)
    page.click("text=Import prompts")
    monkeypatch.setattr("annotation.views_import.INLINE_BYTES", 10_000)  # this file imports in the background
    lines = "".join(json.dumps({"prompt": f"Question number {i}?"}) + "\n" for i in range(2000))
    lines += json.dumps({"prompt": "Say hello in French."}) + "\n"
    page.set_input_files("input[type=file]", files=[
        {"name": "prompts.jsonl", "mimeType": "application/jsonl", "buffer": lines.encode()}])
    page.click("button:has-text('Import')")
    page.wait_for_selector("text=lines read")  # the progress bar of the background import
    page.wait_for_selector("text=Imported 2000 new prompts")
    page.wait_for_selector("text=line 2001")  # the duplicate, reported by line
    page.screenshot(path=str(SHOTS / "import.png"), full_page=True)
    assert page.js_errors == []
    page.close()

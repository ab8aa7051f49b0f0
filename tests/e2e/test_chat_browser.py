"""Chat in a real browser: bob's answer streams in, he gives it a thumbs-down, alice finds it in review.

Drives Debian's chromium through Playwright against pytest-django's live server. The deployed
model is scripted (a realistic answer, a little at a time) so the screenshots in docs/ read well;
the real engine is covered in tests/serving/.
"""

from __future__ import annotations

import time

import pytest

from annotation.models import Prompt, PromptSource
from serving.models import Feedback
from tests.e2e.shots import wait_until
from tests.e2e.test_labeling_browser import SHOTS, browser, login  # noqa: F401  (fixture)
from tests.serving.fakes import ScriptedEngine

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ANSWER = (
    "To undo the last commit but keep your changes, run:\n\n"
    "```\ngit reset --soft HEAD~1\n```\n\n"
    "Your changes stay **staged**: fix them and commit again. If you already pushed the commit, "
    "prefer `git revert HEAD`, which adds a new commit instead of rewriting history that others may have pulled."
)


class SlowScript(ScriptedEngine):
    def stream(self, messages, params):
        pieces = super().stream(messages, params)
        for piece in pieces:
            time.sleep(0.02)
            yield piece


def test_bob_chats_gives_a_thumbs_down_and_alice_reviews_it(browser, live_server, project, deployed, alice, bob,  # noqa: F811
                                                            monkeypatch):
    from serving import runtime

    monkeypatch.setattr(runtime, "engine_of", lambda deployment: SlowScript(ANSWER, piece=4))
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = login(browser, live_server, "bob")
    page.goto(f"{live_server.url}/projects/{project.slug}/chat/")
    page.fill("#chat-text", "How do I undo the last git commit but keep my changes?")
    page.keyboard.press("Enter")

    streaming = page.locator(".chat-msg.streaming .plain")
    wait_until(page, "document.querySelector('.chat-msg.streaming .plain')?.textContent.length > 0")
    partial = streaming.text_content()
    assert 0 < len(partial) < len(ANSWER), "the answer shows up piece by piece"
    answer = page.locator(".chat-msg.chat-assistant").last
    answer.locator(".feedback").wait_for()
    assert answer.locator("pre code").text_content().strip() == "git reset --soft HEAD~1", "Markdown is rendered"
    assert answer.locator("strong").text_content() == "staged"
    page.screenshot(path=str(SHOTS / "chat.png"), full_page=True)

    answer.locator("input[name=comment]").fill("Mention that --soft keeps the files staged")
    answer.locator("button[value=down]").click()
    page.locator(".feedback .muted", has_text="Thanks").wait_for()
    assert Feedback.objects.get().kind == "down"
    assert Prompt.objects.filter(project=project, source=PromptSource.CHAT).count() == 1

    page.fill("#chat-text", "I want to kill myself")
    page.keyboard.press("Enter")
    page.locator(".chat-msg.templated").wait_for()
    assert "988" in page.locator(".chat-msg.templated").text_content()
    page.screenshot(path=str(SHOTS / "chat-moderated.png"), full_page=True)

    page.goto(f"{live_server.url}/account/keys/")
    page.fill("input[name=name]", "eval script")
    page.click("button[type=submit].primary")
    key = page.locator("#new-key").text_content()
    assert key.startswith("tl-") and "eval script" in page.locator("table").text_content()
    page.screenshot(path=str(SHOTS / "keys.png"), full_page=True)
    page.goto(f"{live_server.url}/account/keys/")
    assert key not in page.content() and key[:10] in page.content(), "a key is shown once, then only its prefix"
    assert page.js_errors == []

    manager = login(browser, live_server, "alice")
    manager.goto(f"{live_server.url}/projects/{project.slug}/moderation/")
    row = manager.locator("#feedback tbody tr").first
    assert "bob" in row.text_content() and "Mention that --soft" in row.text_content()
    assert "prompt #" in row.text_content(), "the thumbs-down already became a prompt"
    assert "I want to kill myself" in manager.locator("#events").text_content()
    manager.screenshot(path=str(SHOTS / "moderation.png"), full_page=True)
    manager.locator("#events button[value=confirmed]").first.click()
    manager.wait_for_load_state()
    assert "Nothing flagged is waiting" in manager.locator("#events").text_content()

    manager.goto(f"{live_server.url}/projects/{project.slug}/deployments/")
    assert deployed.policy.name in manager.locator(".badge.ok").first.locator("xpath=..").text_content()
    manager.screenshot(path=str(SHOTS / "deployments.png"), full_page=True)
    assert manager.js_errors == []

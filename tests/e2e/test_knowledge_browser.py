"""Answers with evidence in a real browser: alice uploads a handbook and attaches it to the deployment,
bob asks a question, and the passage his answer cites opens beside the answer.

Drives Debian's chromium through Playwright against pytest-django's live server. The upload is
indexed by a real Celery worker, and retrieval runs for real (hybrid search over the uploaded file).
The deployed model is scripted: a tiny test model does not cite, so the answer is a fixed text that
cites passage [1] the way a policy trained on evidence does. What is checked is what the page does
with a cited answer: the retrieved passages are listed beside it, the [1] in the text opens the
passage it names, and that passage is the one retrieval put first (the engine received it as [1]).
The real engine's answers with passages are covered in tests/serving/.
"""

from __future__ import annotations

import pytest

from annotation.models import Prompt, PromptSource
from annotation.services import completions_add
from serving.knowledge import retrieval
from serving.models import KnowledgeBase, Message
from tests.e2e.shots import wait_until
from tests.e2e.test_chat_browser import SlowScript
from tests.e2e.test_labeling_browser import SHOTS, browser, login  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HANDBOOK = """# Customer handbook

## Delivery times

Parcels ship from our warehouse in Rotterdam every working day. Delivery inside the EU takes two to four
working days; elsewhere it takes up to three weeks. Tracking links are emailed when a parcel leaves.

## Refunds

Customers can ask for a refund within 30 days of purchase by writing to billing. Refunds reach the card
in five working days.

## Passwords

Use the 'Forgot password' link on the sign-in page; the reset email expires after one hour.
"""
ANSWER = "Inside the EU a parcel arrives in **two to four working days** [1]; elsewhere allow up to three weeks."


def test_a_cited_passage_opens_beside_the_answer(browser, live_server, project, deployed, alice, bob,  # noqa: F811
                                                 celery_worker, monkeypatch, tmp_path):
    from serving import runtime

    retrieval.forget()
    engine = SlowScript(ANSWER, piece=6)
    monkeypatch.setattr(runtime, "engine_of", lambda deployment: engine)
    celery_worker("kb", queues="default")
    SHOTS.mkdir(parents=True, exist_ok=True)

    # alice: a knowledge base, one Markdown upload, indexed by the worker
    manager = login(browser, live_server, "alice")
    manager.goto(f"{live_server.url}/projects/{project.slug}/knowledge/")
    manager.fill("input[name=name]", "Handbook")
    manager.click("form.card button.primary")
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK)
    manager.set_input_files("input[name=files]", str(handbook))
    manager.click("form.card button.primary")
    wait_until(manager, "document.querySelector('#kb-progress')?.dataset.indexState === 'ready'", timeout=120)
    assert "Customer handbook" in manager.locator("table").text_content()
    manager.screenshot(path=str(SHOTS / "knowledge-base.png"), full_page=True)

    # alice attaches it to the live deployment
    manager.goto(f"{live_server.url}/projects/{project.slug}/deployments/")
    manager.locator("[data-knowledge-form] input[name=knowledge_bases]").check()
    manager.locator("[data-knowledge-form] button[type=submit]").click()
    manager.locator(".flash li", has_text="Answers now cite Handbook").wait_for()
    assert list(deployed.knowledge_bases.values_list("name", flat=True)) == ["Handbook"]
    manager.screenshot(path=str(SHOTS / "deployment-knowledge.png"), full_page=True)

    # bob asks; the answer cites [1], and [1] opens the passage beside it
    page = login(browser, live_server, "bob")
    page.goto(f"{live_server.url}/projects/{project.slug}/chat/")
    page.fill("#chat-text", "How long does delivery take?")
    page.keyboard.press("Enter")
    answer = page.locator(".chat-msg.chat-assistant").last
    answer.locator("[data-citations]").wait_for(timeout=90_000)  # the first search loads the encoder
    system = engine.calls[0][0]["content"]
    assert "[1] Customer handbook — Customer handbook > Delivery times" in system, "retrieval put it first"
    passage = answer.locator('details[data-citation="1"]')
    assert passage.get_attribute("open") is None and "cited" in passage.get_attribute("class")
    answer.locator("a.cite", has_text="[1]").click()
    assert passage.get_attribute("open") is not None
    assert "Rotterdam" in passage.locator(".passage-text").text_content()
    assert answer.locator(".citations-head").first.text_content().startswith("Cites 1 of")
    stored = Message.objects.get(pk=int(answer.get_attribute("data-message")))
    assert [c["n"] for c in stored.citations if c["cited"]] == [1]
    page.screenshot(path=str(SHOTS / "chat-citations.png"), full_page=True)

    # the passage's document page, at the passage
    with page.expect_navigation():
        passage.locator("[data-document-link]").click()
    base = KnowledgeBase.objects.get(name="Handbook")
    assert f"/knowledge/{base.pk}/documents/" in page.url and "#chunk-" in page.url
    assert page.locator(page.url.split("#", 1)[1].join(["#", ""])).text_content().count("Rotterdam") == 1

    # the loop: bob's thumbs-down makes a prompt that keeps the passages; ranking it shows them and
    # offers "not supported by the evidence" (key V)
    page.go_back()
    answer = page.locator(".chat-msg.chat-assistant").last
    answer.locator("button[value=down]").click()
    page.locator(".feedback .muted", has_text="Thanks").wait_for()
    prompt = Prompt.objects.get(project=project, source=PromptSource.CHAT)
    assert prompt.evidence[0]["title"] == "Customer handbook" and "Rotterdam" in prompt.evidence[0]["text"]
    completions_add(prompt=prompt, texts=[
        ANSWER, "Delivery takes one day everywhere [2].", "About a week.", "Parcels ship from Rotterdam [1]."])
    page.goto(f"{live_server.url}/projects/{project.slug}/rank/")
    page.locator("[data-evidence] [data-passage='1']").wait_for()
    assert "Parcels ship from our warehouse in Rotterdam" in page.locator("[data-evidence]").text_content()
    first = page.locator("article.completion").first
    page.keyboard.press("v")
    assert first.locator("input[value=not_supported]").is_checked()
    page.screenshot(path=str(SHOTS / "rank-evidence.png"), full_page=True)
    assert page.js_errors == [] and manager.js_errors == []

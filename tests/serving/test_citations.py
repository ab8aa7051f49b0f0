"""Cited answers: a deployment with a knowledge base gives the model numbered passages, the answer's
citations are kept, and the chat page shows the passages (escaped) beside the answer."""

from __future__ import annotations

import pytest

from annotation.models import Prompt, PromptSource
from serving.citations import MODEL_EVIDENCE_CHARS
from serving.knowledge import retrieval
from serving.knowledge.services import knowledge_bases_attach, knowledge_document_delete
from serving.models import KnowledgeDocument, Message
from tests.serving.conftest import sse_events
from tests.serving.knowledge_helpers import make_knowledge_base

pytestmark = pytest.mark.django_db

DOCS = {
    "Refunds": "## Asking for a refund\n\nCustomers can ask for a refund within 30 days of purchase by writing "
               "to billing. Refunds reach the card in five working days.",
    "Shipping": "## Delivery times\n\nParcels ship from Rotterdam. Delivery inside the EU takes two to four days; "
                "elsewhere up to three weeks.",
    "Markup": "## Rendering notes\n\nOur pages escape <script>alert('kb')</script> tags in delivery notes.",
}


@pytest.fixture(autouse=True)
def _fresh_indexes():
    retrieval.forget()
    yield
    retrieval.forget()


@pytest.fixture
def handbook(project, deployed):
    base = make_knowledge_base(project, DOCS)
    knowledge_bases_attach(deployment=deployed, knowledge_bases=[base])
    return base


def send(client, project, text, conversation=""):
    return client.post(f"/projects/{project.slug}/chat/send", {"text": text, "conversation": conversation})


def ask(client, project, user, text):
    client.force_login(user)
    events = sse_events(send(client, project, text))
    assert events[-1]["type"] == "done", events[-1]
    return events, Message.objects.get(pk=events[-1]["message"])


def by_title(message) -> dict[str, dict]:
    return {c["title"]: c for c in message.citations}


def test_the_model_reads_numbered_passages_and_the_answer_keeps_which_it_cited(client, bob, project, handbook,
                                                                                scripted):
    engine = scripted("Two to four days inside the EU [1].")
    events, answer = ask(client, project, bob, "How long does delivery take?")

    system, question = engine.calls[0]
    assert question == {"role": "user", "content": "How long does delivery take?"}
    assert system["role"] == "system" and "cite each one you use by its number" in system["content"]
    first = system["content"].split("[1] ", 1)[1].split("[2] ", 1)[0]
    assert first.startswith("Shipping — Shipping > Delivery times\n") and "Parcels ship from Rotterdam." in first
    assert [c["n"] for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    assert answer.citations[0]["title"] == "Shipping" and answer.citations[0]["cited"] is True
    assert not any(c["cited"] for c in answer.citations[1:])

    html = events[-1]["html"]
    assert "Cites 1 of" in html and f'id="cite-{answer.pk}-1"' in html
    assert "Parcels ship from Rotterdam." in html and 'data-document-link' in html
    document = KnowledgeDocument.objects.get(title="Shipping")
    assert f"/knowledge/{handbook.pk}/documents/{document.pk}/#chunk-" in html


def test_search_results_show_even_when_the_answer_cites_nothing_and_passages_are_escaped(
        client, bob, project, handbook, scripted):
    scripted("I am not sure.")
    _, answer = ask(client, project, bob, "Do delivery notes escape script tags?")
    assert answer.citations and not any(c["cited"] for c in answer.citations)

    page = client.get(f"/projects/{project.slug}/chat/?c={answer.conversation_id}").content.decode()
    assert "Search results · the answer cites none of them" in page
    assert "&lt;script&gt;alert(&#x27;kb&#x27;)&lt;/script&gt;" in page
    assert "<script>alert('kb')" not in page
    assert "js/citations.js" in page


def test_a_deleted_document_is_never_cited(client, bob, project, handbook, scripted):
    scripted("See [1] and [2].")
    _, before = ask(client, project, bob, "How long does delivery take?")
    assert "Shipping" in by_title(before)

    knowledge_document_delete(document=KnowledgeDocument.objects.get(title="Shipping"))
    _, after = ask(client, project, bob, "How long does delivery take?")
    assert "Shipping" not in by_title(after)
    assert all("Rotterdam" not in c["text"] for c in after.citations)


def test_a_passage_moderation_flags_is_neither_shown_nor_given_to_the_model(client, bob, project, deployed,
                                                                            scripted):
    base = make_knowledge_base(project, {
        "Threats": "## Delivery threats\n\nI will kill you and your family if the delivery is late.",
        "Shipping": DOCS["Shipping"]})
    knowledge_bases_attach(deployment=deployed, knowledge_bases=[base])
    engine = scripted("Two to four days [1].")
    _, answer = ask(client, project, bob, "What happens when a delivery is late?")
    assert "Threats" not in by_title(answer) and "Shipping" in by_title(answer)
    assert "kill" not in engine.calls[0][0]["content"]


def test_a_deployment_without_knowledge_bases_answers_as_before(client, bob, project, deployed, scripted):
    engine = scripted("Hello.")
    _, answer = ask(client, project, bob, "Hi")
    assert engine.calls == [[{"role": "user", "content": "Hi"}]] and answer.citations == []


def test_a_thumbs_down_prompt_carries_the_passages_as_evidence(client, bob, project, handbook, scripted):
    scripted("Delivery takes a year [1].")
    _, answer = ask(client, project, bob, "How long does delivery take?")
    client.post(f"/projects/{project.slug}/chat/messages/{answer.pk}/feedback", {"kind": "down"})
    prompt = Prompt.objects.get(project=project, source=PromptSource.CHAT)
    assert [p["n"] for p in prompt.evidence] == [c["n"] for c in answer.citations]
    assert prompt.evidence[0]["title"] == "Shipping" and "Rotterdam" in prompt.evidence[0]["text"]


def test_a_manager_attaches_knowledge_bases_on_the_deployments_page(client, alice, bob, project, deployed,
                                                                    other_project):
    base = make_knowledge_base(project, {"Shipping": DOCS["Shipping"]})
    foreign = make_knowledge_base(other_project, {"Other": "## X\n\nSomething else."}, name="Theirs")
    client.force_login(alice)
    page = client.get(f"/projects/{project.slug}/deployments/").content.decode()
    assert "Handbook" in page and "Theirs" not in page
    url = f"/projects/{project.slug}/deployments/{deployed.pk}/knowledge"
    client.post(url, {"knowledge_bases": [base.pk, foreign.pk]})
    assert list(deployed.knowledge_bases.all()) == [base], "another project's base is ignored"
    client.post(url, {})
    assert not deployed.knowledge_bases.exists()
    client.force_login(bob)
    assert client.post(url, {"knowledge_bases": [base.pk]}).status_code in (403, 404)
    assert not deployed.knowledge_bases.exists()


def test_the_model_reads_a_share_of_each_long_passage_but_the_page_keeps_it_whole(client, bob, project, deployed,
                                                                                  scripted):
    long_text = "Parcels ship from Rotterdam. " + "Delivery details follow here. " * 200
    base = make_knowledge_base(project, {"Shipping": "## Delivery times\n\n" + long_text})
    knowledge_bases_attach(deployment=deployed, knowledge_bases=[base])
    engine = scripted("Two to four days [1].")
    _, answer = ask(client, project, bob, "How long does delivery take?")
    system = engine.calls[0][0]["content"]
    assert len(system) < MODEL_EVIDENCE_CHARS + 1000 and " …" in system
    assert system.rstrip().endswith("…") and "[1] Shipping" in system
    assert sum(len(c["text"]) for c in answer.citations) > MODEL_EVIDENCE_CHARS, "stored whole"


def test_stored_citations_render_inert_whatever_they_hold(client, bob, project, deployed):
    from serving.models import Conversation

    conversation = Conversation.objects.create(user=bob, project=project, title="x")
    Message.objects.create(conversation=conversation, role="user", content="q")
    Message.objects.create(conversation=conversation, role="assistant", content="See [1].", citations=[
        {"n": 1, "chunk_id": 1, "document_id": 1, "knowledge_base_id": 1, "title": "<b>T</b>", "section": "<i>S</i>",
         "source": "<svg onload=alert(1)>", "url": "javascript:alert(1)", "text": "<img src=x onerror=alert(2)>",
         "cited": True},
        {"n": 2, "title": "no ids", "text": "plain", "url": "https://example.org/a\"onmouseover=alert(3)",
         "cited": False}])
    client.force_login(bob)
    page = client.get(f"/projects/{project.slug}/chat/?c={conversation.pk}").content.decode()
    assert "javascript:alert" not in page and "<img src=x" not in page and "<svg onload" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page and "&lt;b&gt;T&lt;/b&gt;" in page
    assert 'href="https://example.org/a&quot;onmouseover=alert(3)"' in page
    assert 'data-citation="2"' in page, "a citation without document ids is listed, without a document link"

"""``/v1/chat/completions`` returns the passages an answer was given in its ``tuneloop`` field, which the
official ``openai`` client keeps (``model_extra``, ``to_dict()``), streamed or not, and the schema documents."""

from __future__ import annotations

import pytest
from openai import OpenAI

from serving.keys import api_key_create
from serving.knowledge import retrieval
from serving.knowledge.services import knowledge_bases_attach
from tests.serving.knowledge_helpers import make_knowledge_base

DOCS = {
    "Shipping": "## Delivery times\n\nParcels ship from Rotterdam. Delivery inside the EU takes two to four days.",
    "Refunds": "## Asking for a refund\n\nCustomers can ask for a refund within 30 days of purchase.",
}


@pytest.fixture(autouse=True)
def _fresh_indexes():
    retrieval.forget()
    yield
    retrieval.forget()


@pytest.mark.django_db(transaction=True)
def test_the_openai_client_reads_the_citations_streamed_or_not(live_server, bob, project, deployed, scripted):
    knowledge_bases_attach(deployment=deployed, knowledge_bases=[make_knowledge_base(project, DOCS)])
    scripted("Two to four days inside the EU [1].")
    _, key = api_key_create(user=bob, name="tests")
    client = OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0, timeout=60)
    question = [{"role": "user", "content": "How long does delivery take?"}]

    answer = client.chat.completions.create(model=deployed.policy.name, messages=question)
    extension = answer.model_extra["tuneloop"]
    assert answer.to_dict()["tuneloop"] == extension
    assert extension["cited"] == [1]
    first = extension["citations"][0]
    assert first["n"] == 1 and first["title"] == "Shipping" and first["cited"] is True
    assert "Parcels ship from Rotterdam." in first["text"] and first["section"] == "Shipping > Delivery times"
    assert {"chunk_id", "document_id", "knowledge_base_id", "source", "url"} <= set(first)

    chunks = list(client.chat.completions.create(model=deployed.policy.name, messages=question, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Two to four days inside the EU [1]."
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["tuneloop"]["citations"] == extension["citations"]
    assert all("tuneloop" not in (c.model_extra or {}) for c in chunks if c is not final)


@pytest.mark.django_db
def test_a_deployment_without_knowledge_bases_returns_an_empty_extension(client, bob, deployed, scripted):
    scripted("Hello.")
    client.force_login(bob)
    body = client.post("/v1/chat/completions", {"model": deployed.policy.name, "messages": [
        {"role": "user", "content": "Hi"}]}, content_type="application/json").json()
    assert body["tuneloop"] == {"citations": [], "cited": []}


@pytest.mark.django_db
def test_the_schema_documents_the_extension_field(client, alice):
    client.force_login(alice)
    schema = client.get("/api/schema/?format=json").json()

    def component(ref: dict) -> dict:
        ref = ref.get("$ref") or ref["allOf"][0]["$ref"]  # a described reference is wrapped in allOf
        return schema["components"]["schemas"][ref.rsplit("/", 1)[1]]

    ok = schema["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    extension = component(component(ok)["properties"]["tuneloop"])
    assert "final chunk" in component(ok)["properties"]["tuneloop"]["description"]
    citation = component(extension["properties"]["citations"]["items"])
    assert {"n", "title", "section", "source", "url", "text", "cited"} <= set(citation["properties"])

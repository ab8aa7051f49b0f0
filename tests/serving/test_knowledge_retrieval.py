"""Searching knowledge bases: the right passage comes first, deleted documents never come back,
re-uploading replaces, and only ready bases are searched."""

from __future__ import annotations

import pytest

from serving.knowledge import retrieval, services
from serving.knowledge.retrieval import Passage, passages_search
from serving.models import KnowledgeChunk, KnowledgeDocument
from tests.serving.knowledge_helpers import make_knowledge_base

pytestmark = pytest.mark.django_db

DOCS = {
    "Refunds": "## Asking for a refund\n\nCustomers can ask for a refund within 30 days of purchase by "
               "writing to billing. Refunds reach the card in five working days.",
    "Shipping": "## Delivery times\n\nParcels ship from Rotterdam. Delivery inside the EU takes two to four "
                "days; elsewhere up to three weeks.",
    "Passwords": "## Resetting a password\n\nUse the 'Forgot password' link on the sign-in page; the reset "
                 "email expires after one hour.",
}


@pytest.fixture(autouse=True)
def _fresh_indexes():
    retrieval.forget()
    yield
    retrieval.forget()


def test_the_answering_passage_comes_first_with_its_citation(project):
    base = make_knowledge_base(project, DOCS)
    assert base.index_state == "ready"

    passages = passages_search(knowledge_base_ids=[base.pk], query="How long does delivery take?", k=3)

    assert isinstance(passages[0], Passage)
    assert passages[0].title == "Shipping"
    assert passages[0].section == "Shipping > Delivery times"
    assert "two to four days" in passages[0].text
    citation = passages[0].as_citation(1)
    assert set(citation) == {"n", "chunk_id", "document_id", "title", "section", "source", "url", "text"}
    assert citation["n"] == 1
    assert citation["url"].endswith(f"/knowledge/{base.pk}/documents/{passages[0].document_id}/"
                                    f"#chunk-{passages[0].chunk_id}")


def test_a_deleted_document_never_appears_even_from_a_warm_cache(project):
    base = make_knowledge_base(project, DOCS)
    assert passages_search(knowledge_base_ids=[base.pk], query="refund within 30 days")[0].title == "Refunds"

    services.knowledge_document_delete(document=KnowledgeDocument.objects.get(knowledge_base=base, title="Refunds"))

    found = passages_search(knowledge_base_ids=[base.pk], query="refund within 30 days", k=5)
    assert found and all(p.title != "Refunds" for p in found)


def test_reuploading_a_document_replaces_its_passages(project):
    base = make_knowledge_base(project, DOCS)
    make_knowledge_base(project, {"Shipping": "## Delivery times\n\nAll parcels now travel by drone in one day."})

    assert KnowledgeDocument.objects.filter(knowledge_base=base, title="Shipping").count() == 1
    texts = " ".join(KnowledgeChunk.objects.filter(document__title="Shipping").values_list("text", flat=True))
    assert "drone" in texts and "Rotterdam" not in texts
    found = passages_search(knowledge_base_ids=[base.pk], query="How are parcels delivered?", k=5)
    assert not any("Rotterdam" in p.text for p in found)
    assert any("drone" in p.text for p in found)


def test_only_ready_bases_are_searched(project):
    base = make_knowledge_base(project, DOCS)
    empty = services.knowledge_base_create(project=project, name="Empty")
    assert passages_search(knowledge_base_ids=[empty.pk], query="refund") == []
    base.index_state = "failed"
    base.save()
    assert passages_search(knowledge_base_ids=[base.pk], query="refund") == []


def test_the_worker_task_indexes_an_upload_and_a_failure_is_shown_with_its_reason(project, monkeypatch, client, alice):
    from django.urls import reverse

    from serving.knowledge import embedding
    from serving.tasks import knowledge_base_index_task

    base = services.knowledge_base_create(project=project, name="Wiki")
    services.knowledge_documents_upload(knowledge_base=base, files=[("a.md", b"# A\n\nAlpha text.")], enqueue=False)
    base.refresh_from_db()
    assert (base.index_state, base.index_progress) == ("indexing", 0.0)
    assert passages_search(knowledge_base_ids=[base.pk], query="alpha") == []  # never indexed yet

    assert knowledge_base_index_task.apply(args=[base.pk]).get() == "indexed 1 chunks"
    base.refresh_from_db()
    assert (base.index_state, base.index_progress) == ("ready", 1.0)
    assert passages_search(knowledge_base_ids=[base.pk], query="alpha")[0].title == "A"

    def broken(texts, **kwargs):
        raise RuntimeError("encoder package missing")

    monkeypatch.setattr(embedding, "embed_passages", broken)
    services.knowledge_documents_upload(knowledge_base=base, files=[("b.md", b"# B\n\nBeta text.")], enqueue=False)
    assert knowledge_base_index_task.apply(args=[base.pk]).get() == "failed"
    base.refresh_from_db()
    assert base.index_state == "failed"
    client.force_login(alice)
    page = client.get(reverse("serving:knowledge_base", args=[project.slug, base.pk])).content.decode()
    assert "Indexing failed" in page and "RuntimeError: encoder package missing" in page and "Index again" in page

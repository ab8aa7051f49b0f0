"""The at-scale lexical path: PostgreSQL full-text search over the GIN index, fused with the dense
vectors (TUNELOOP_KNOWLEDGE_LEXICAL=postgres)."""

from __future__ import annotations

import pytest
from django.db import connection

from serving.knowledge import retrieval, services
from serving.knowledge.lexical_pg import lexical_ids
from serving.knowledge.retrieval import passages_search
from serving.models import KnowledgeDocument
from tests.serving.knowledge_helpers import make_knowledge_base

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"),
]

DOCS = {
    "Refunds": "## Asking for a refund\n\nCustomers can ask for a refund within 30 days of purchase by writing "
               "to billing. Refunds reach the card in five working days.",
    "Shipping": "## Delivery times\n\nParcels ship from Rotterdam. Delivery inside the EU takes two to four days.",
    "Passwords": "## Resetting a password\n\nUse the 'Forgot password' link; the reset email expires after one hour.",
}


@pytest.fixture(autouse=True)
def _database_lexical(settings):
    settings.KNOWLEDGE_LEXICAL = "postgres"
    retrieval.forget()
    yield
    retrieval.forget()


def test_the_full_text_index_exists_and_ranks_by_the_question_words(project):
    base = make_knowledge_base(project, DOCS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'knowledge_chunk_fts'")
        assert "to_tsvector('english'::regconfig, text)" in cursor.fetchone()[0]

    refunds = KnowledgeDocument.objects.get(knowledge_base=base, title="Refunds").chunks.get()
    assert lexical_ids([base.pk], "How many days until refunded money arrives?", 10)[0] == refunds.pk
    assert lexical_ids([base.pk], "the of and", 10) == []  # only stop words: no lexical hits, no error


def test_hybrid_search_on_postgres_finds_answers_and_never_deleted_documents(project):
    base = make_knowledge_base(project, DOCS)
    assert retrieval.database_lexical()

    assert passages_search(knowledge_base_ids=[base.pk], query="How long does delivery take?")[0].title == "Shipping"
    assert passages_search(knowledge_base_ids=[base.pk], query="forgot my password")[0].title == "Passwords"

    services.knowledge_document_delete(document=KnowledgeDocument.objects.get(knowledge_base=base, title="Refunds"))
    found = passages_search(knowledge_base_ids=[base.pk], query="refund within 30 days", k=5)
    assert all(p.title != "Refunds" for p in found)

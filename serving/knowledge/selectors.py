"""Reads of knowledge bases, each scoped to a project the caller already passed through the gate
(``annotation.selectors.project_for_user``)."""

from __future__ import annotations

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from serving.models import KnowledgeBase, KnowledgeChunk, KnowledgeDocument


def knowledge_bases_of(project) -> QuerySet[KnowledgeBase]:
    return (KnowledgeBase.objects.filter(project=project)
            .annotate(document_count=Count("documents", distinct=True)).order_by("name"))


def knowledge_base_of(project, knowledge_base_id: int) -> KnowledgeBase:
    return get_object_or_404(KnowledgeBase.objects.filter(project=project), pk=knowledge_base_id)


def documents_of(knowledge_base: KnowledgeBase) -> QuerySet[KnowledgeDocument]:
    return (KnowledgeDocument.objects.filter(knowledge_base=knowledge_base)
            .annotate(chunk_count=Count("chunks")).order_by("title", "id"))


def document_of(knowledge_base: KnowledgeBase, document_id: int) -> KnowledgeDocument:
    return get_object_or_404(KnowledgeDocument.objects.filter(knowledge_base=knowledge_base), pk=document_id)


def chunks_of(document: KnowledgeDocument) -> QuerySet[KnowledgeChunk]:
    return KnowledgeChunk.objects.filter(document=document).order_by("position").defer("embedding")


def chunk_counts(knowledge_base: KnowledgeBase) -> tuple[int, int]:
    """(chunks, chunks with a vector): how far indexing has come."""
    chunks = KnowledgeChunk.objects.filter(knowledge_base=knowledge_base)
    return chunks.count(), chunks.filter(embedding__isnull=False).count()

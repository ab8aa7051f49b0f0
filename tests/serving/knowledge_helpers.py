"""Build small indexed knowledge bases in tests: ``make_knowledge_base(project, docs={title: markdown})``.

Indexing runs synchronously with the real packaged encoder (all-MiniLM-L6-v2, a second to load once
per process), so searches in tests rank as they do in production.
"""

from __future__ import annotations

import re

from serving.models import KnowledgeBase


def _file_name(title: str) -> str:
    return (re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-") or "document")[:200] + ".md"


def make_knowledge_base(project, docs: dict[str, str], *, name: str = "Handbook", created_by=None) -> KnowledgeBase:
    """A ready knowledge base of ``project`` holding one Markdown document per ``{title: text}``.

    The document's title is the key (a text without its own ``# heading`` gets one), its source the
    title as a file name. Returns the base refreshed, ``index_state == "ready"``.
    """
    from serving.knowledge.services import (
        knowledge_base_create,
        knowledge_base_index,
        knowledge_documents_upload,
    )

    base = KnowledgeBase.objects.filter(project=project, name=name).first() or knowledge_base_create(
        project=project, name=name, created_by=created_by or project.created_by)
    files = []
    for title, text in docs.items():
        body = text if text.lstrip().startswith("# ") else f"# {title}\n\n{text}"
        files.append((_file_name(title), body.encode()))
    if files:
        knowledge_documents_upload(knowledge_base=base, files=files, created_by=created_by, enqueue=False)
        knowledge_base_index(knowledge_base_id=base.pk)
    base.refresh_from_db()
    return base

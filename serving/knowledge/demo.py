"""The demo knowledge base: Python's language reference topics (``pydoc_data.topics``, in every
CPython), and the questions whose answering topic is known (``demo/pydoc_questions.jsonl``).

Each topic is one Markdown document named ``<topic>.md`` (its underlined headings are read as
headings). Each question lists the topics that answer it, the most specific first, and an
``evidence`` phrase found in that first topic's text: the tests check the set still fits the
running Python's topics, and ``bench/retrieval.py`` scores retrieval with it.
"""

from __future__ import annotations

import json
from pathlib import Path

DEMO_DIR = Path(__file__).parent / "demo"
QUESTIONS = DEMO_DIR / "pydoc_questions.jsonl"
NAME = "Python language reference"
DESCRIPTION = "The reference topics behind help() (pydoc_data.topics), shipped with Python."


def pydoc_topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return dict(topics)


def pydoc_files() -> list[tuple[str, bytes]]:
    """(file name, bytes) per topic, as an upload would send them."""
    return [(f"{key}.md", text.encode()) for key, text in sorted(pydoc_topics().items())]


def topic_of(source: str) -> str:
    return source.removesuffix(".md")


def questions() -> list[dict]:
    """``[{"question", "topics": [...], "evidence"}]``."""
    return [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]


def demo_knowledge_load(*, project, index_now: bool = False):
    """The demo project's knowledge base of Python topics; created and filled once, then left alone.

    Indexing goes to a worker unless ``index_now`` (then it runs here, about a minute on a laptop).
    """
    from serving.knowledge.services import (
        knowledge_base_create,
        knowledge_base_index,
        knowledge_documents_upload,
    )
    from serving.models import KnowledgeBase

    base = KnowledgeBase.objects.filter(project=project, name=NAME).first()
    if base is None:
        base = knowledge_base_create(project=project, name=NAME, description=DESCRIPTION,
                                     created_by=project.created_by)
    if not base.documents.exists():
        knowledge_documents_upload(knowledge_base=base, files=pydoc_files(), created_by=project.created_by,
                                   enqueue=not index_now)
        if index_now:
            knowledge_base_index(knowledge_base_id=base.pk)
    base.refresh_from_db()
    return base

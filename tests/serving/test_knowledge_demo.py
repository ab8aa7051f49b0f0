"""The demo knowledge base (Python's reference topics) and its question set."""

from __future__ import annotations

import pytest

from serving.knowledge import demo, retrieval
from serving.knowledge.retrieval import passages_search


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def test_every_question_names_real_topics_and_its_evidence_is_in_the_first():
    topics = demo.pydoc_topics()
    qs = demo.questions()
    assert 40 <= len(qs) <= 120
    assert len({q["question"] for q in qs}) == len(qs)
    for q in qs:
        assert q["topics"] and all(t in topics for t in q["topics"]), q
        assert _norm(q["evidence"]) in _norm(topics[q["topics"][0]]), q


@pytest.mark.django_db
def test_the_demo_base_loads_once_and_answers_its_questions(project, monkeypatch):
    """With a handful of topics (the full set takes minutes to embed on a CPU), each question about
    them finds its topic among the first five passages."""
    kept = ("assert", "lambda", "pass", "shifting", "imaginary", "integers", "global", "continue")
    everything = demo.pydoc_topics()
    monkeypatch.setattr(demo, "pydoc_topics", lambda: {k: everything[k] for k in kept})
    retrieval.forget()

    base = demo.demo_knowledge_load(project=project, index_now=True)
    again = demo.demo_knowledge_load(project=project, index_now=True)

    assert again.pk == base.pk and base.index_state == "ready"
    assert base.documents.count() == len(kept)
    assert base.documents.get(source="assert.md").title == 'The "assert" statement'
    asked = [q for q in demo.questions() if q["topics"][0] in kept]
    assert len(asked) >= 6
    for q in asked:
        found = passages_search(knowledge_base_ids=[base.pk], query=q["question"], k=5)
        assert any(demo.topic_of(p.source) in q["topics"] for p in found), q["question"]

"""Cited answers: the passages a turn retrieves, how the model is given them, and which the answer cites.

A deployment with knowledge bases retrieves, for each user turn, the ``TOP_K`` passages that best
answer the user's last message (``serving.knowledge.retrieval.passages_search``). Each passage is
moderated like any text shown to the user; a flagged one is dropped (neither shown nor given to the
model). The rest are numbered from 1 and given to the model in the system message that
``annotation.evidence.messages_with_evidence`` writes — the same rendering the exports, the reward
model and sampling use, so what the policy and the reward model learned from labels is what the chat
gives them. The user's own messages are moderated as before, without the passages.

When the answer is stored, its ``citations`` are the passages as numbered, each with ``cited`` true
when the answer names it as ``[n]``. The chat page shows all of them (cited first) and the API returns
them in its ``tuneloop`` extension field, so the search results are visible even when the model does
not cite.
"""

from __future__ import annotations

import logging

from annotation.evidence import (
    MAX_PASSAGE_CHARS,
    MAX_PASSAGES,
    MAX_SECTION_CHARS,
    MAX_TITLE_CHARS,
    MAX_URL_CHARS,
    cited_numbers,
    messages_with_evidence,
)

log = logging.getLogger(__name__)

TOP_K = 5
# What the model reads of the passages, in all: about 1,000 tokens, so the engine's prompt window (1,536
# tokens, cut from the left) keeps the instruction, every passage and the question. Each passage gets an
# equal share (cut at a word); the page and the stored citations keep the whole passage.
MODEL_EVIDENCE_CHARS = 4000
CITATION_FIELDS = ("n", "chunk_id", "document_id", "knowledge_base_id", "title", "section", "source", "url",
                   "text", "cited")


def _last_user_text(messages: list[dict]) -> str:
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")


def knowledge_base_ids(deployment) -> list[int]:
    if deployment is None or deployment.pk is None:
        return []
    return list(deployment.knowledge_bases.values_list("pk", flat=True))


def passages_for_turn(*, deployment, messages: list[dict], moderator, k: int = TOP_K) -> list[dict]:
    """The passages retrieved for this turn, as citations numbered from 1 (``cited`` false), flagged
    ones left out. Empty when the deployment has no knowledge bases or nothing matches; a failing
    search is logged and answers without passages rather than failing the turn."""
    bases = knowledge_base_ids(deployment)
    query = _last_user_text(messages)
    if not bases or not query.strip():
        return []
    from serving.knowledge.retrieval import passages_search

    try:
        found = passages_search(knowledge_base_ids=bases, query=query, k=k)
    except Exception:  # retrieval is an aid: the model still answers without it
        log.exception("retrieval failed for deployment #%s; answering without passages", deployment.pk)
        return []
    citations = []
    for passage in found:
        if moderator is not None and moderator.check(passage.text).flagged:
            log.info("passage of chunk #%s flagged by moderation; not shown", passage.chunk_id)
            continue
        citation = passage.as_citation(len(citations) + 1)
        citation.update(knowledge_base_id=passage.knowledge_base_id, cited=False)
        citations.append(citation)
    return citations


def for_model(citations: list[dict], budget: int = MODEL_EVIDENCE_CHARS) -> list[dict]:
    """The passages as the model reads them: each text cut (at a word, marked ``…``) to an equal share
    of ``budget`` characters."""
    share = max(200, budget // max(1, len(citations)))
    fitted = []
    for c in citations:
        text = c["text"]
        if len(text) > share:
            cut = text.rfind(" ", 0, share)
            text = text[:cut if cut > share // 2 else share].rstrip() + " …"
        fitted.append({**c, "text": text})
    return fitted


class EngineWithEvidence:
    """The deployment's engine, given the passages in the prompt: ``stream(messages)`` streams the answer
    to ``messages_with_evidence(messages, passages)``. Everything else is the engine's own."""

    def __init__(self, engine, citations: list[dict]) -> None:
        self._engine, self._passages = engine, for_model(citations)

    def stream(self, messages, params):
        return self._engine.stream(messages_with_evidence(messages, self._passages), params)

    @property
    def count_prompt_tokens(self):
        """The engine's prompt counter, counting the passages too (None when the engine has none)."""
        count = getattr(self._engine, "count_prompt_tokens", None)
        if count is None:
            return None
        return lambda messages: count(messages_with_evidence(messages, self._passages))

    def __getattr__(self, name):
        return getattr(self._engine, name)


def with_evidence(engine, citations: list[dict]):
    """``engine`` as is when there are no passages, else wrapped so the model reads them."""
    return EngineWithEvidence(engine, citations) if citations else engine


def citations_mark(citations: list[dict], answer: str, *, template: bool = False) -> list[dict]:
    """The citations to store with an answer: each marked ``cited`` when the answer names its number.
    None for an answer moderation replaced with a template (nothing retrieved is shown with it)."""
    if template or not citations:
        return []
    used = set(cited_numbers(answer, available=[c["n"] for c in citations]))
    return [{**{key: c.get(key) for key in CITATION_FIELDS}, "cited": c["n"] in used} for c in citations]


def citations_shown(citations) -> list[dict]:
    """A stored answer's citations in the order the page lists them: cited ones first, then by number."""
    rows = [c for c in citations or [] if isinstance(c, dict) and isinstance(c.get("n"), int)]
    return sorted(rows, key=lambda c: (not c.get("cited"), c["n"]))


def prompt_evidence(citations) -> list[dict]:
    """An answer's passages as a new prompt's ``evidence`` (chat feedback → labelers), in their numbers'
    order so the answer's ``[n]`` still point at them; cut to the evidence limits."""
    limits = {"title": MAX_TITLE_CHARS, "section": MAX_SECTION_CHARS, "source": MAX_TITLE_CHARS,
              "url": MAX_URL_CHARS, "text": MAX_PASSAGE_CHARS}
    return [{key: str(c.get(key) or "")[:limit] for key, limit in limits.items()}
            for c in sorted(citations_shown(citations), key=lambda c: c["n"])[:MAX_PASSAGES]
            if str(c.get("text") or "").strip()]


def api_extension(citations) -> dict:
    """The ``tuneloop`` field of a ``/v1/chat/completions`` response: the passages and the cited numbers."""
    passages = [{key: c.get(key) for key in CITATION_FIELDS} for c in citations or []]
    return {"citations": passages, "cited": [c["n"] for c in passages if c.get("cited")]}

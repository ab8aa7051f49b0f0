"""Evidence: the numbered passages an answer is given, in one shape and one rendering everywhere.

A prompt's ``evidence`` is a list of passages ``{n, title, section, source, url, text}`` numbered
from 1. The same passages reach the model in one rendering, ``messages_with_evidence``: a system
message that lists them as ``[n] title — section`` followed by their text, with an instruction to
cite them by number. The chat page's retrieval (``serving.citations``), the exports (so SFT data,
reward-model rankings and sampling prompts), and therefore the reward model and the policy, all see
the passages the same way, so the reward model learns to prefer answers that the passages support.

Plain Python, no Django: serving and training import it as is.
"""

from __future__ import annotations

import re

MAX_PASSAGES = 20
MAX_PASSAGE_CHARS = 4000
MAX_TITLE_CHARS = 300
MAX_SECTION_CHARS = 500
MAX_URL_CHARS = 2000
HEADER = "Passages:"
INSTRUCTION = (
    "Answer from the numbered passages below and cite each one you use by its number in square "
    "brackets, like [1]. If the passages do not answer the question, say so."
)
FIELDS = ("n", "title", "section", "source", "url", "text")
_CITE = re.compile(r"\[(\d{1,2})\]")


class EvidenceError(ValueError):
    """Evidence that is not a list of passages; the message names the passage and the field."""


def _text(value, what: str, limit: int, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise EvidenceError(f"{what} must be text")
    value = value.strip()
    if required and not value:
        raise EvidenceError(f"{what} must be non-empty text")
    if len(value) > limit:
        raise EvidenceError(f"{what} is longer than {limit} characters")
    return value


def evidence_clean(raw) -> list[dict]:
    """Imported evidence as passages numbered from 1: a list of texts or of ``{title, text, url?, section?,
    source?}`` objects, at most ``MAX_PASSAGES``, each text at most ``MAX_PASSAGE_CHARS``. ``None`` or an
    empty value is no evidence. Raises ``EvidenceError`` naming the first bad passage."""
    if raw in (None, "", []):
        return []
    if not isinstance(raw, list):
        raise EvidenceError("must be a list of passages (texts or objects with 'title' and 'text')")
    if len(raw) > MAX_PASSAGES:
        raise EvidenceError(f"has {len(raw)} passages; at most {MAX_PASSAGES} are allowed")
    passages = []
    for i, item in enumerate(raw):
        where = f"passage {i + 1}"
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, dict):
            raise EvidenceError(f"{where} must be a text or an object with 'title' and 'text'")
        passages.append({
            "n": i + 1,
            "title": _text(item.get("title"), f"{where}'s title", MAX_TITLE_CHARS),
            "section": _text(item.get("section"), f"{where}'s section", MAX_SECTION_CHARS),
            "source": _text(item.get("source"), f"{where}'s source", MAX_TITLE_CHARS),
            "url": _text(item.get("url"), f"{where}'s url", MAX_URL_CHARS),
            "text": _text(item.get("text"), f"{where}'s text", MAX_PASSAGE_CHARS, required=True),
        })
    return passages


def evidence_of(value) -> list[dict]:
    """Stored evidence read leniently (a row written by an older version, a hand-edited one): the valid
    passages with only the known fields, renumbered only where a number is missing."""
    if not isinstance(value, list):
        return []
    passages = []
    for i, item in enumerate(value):
        if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
            n = item.get("n")
            passage = {key: str(item.get(key) or "") for key in FIELDS if key != "n"}
            passage["n"] = n if isinstance(n, int) and not isinstance(n, bool) else i + 1
            passages.append(passage)
    return passages


def evidence_block(evidence) -> str:
    """The passages as the model reads them: the instruction, then ``[n] title — section`` and the text."""
    parts = [INSTRUCTION, "", HEADER]
    for passage in evidence_of(evidence):
        head = " — ".join(p for p in (passage["title"], passage["section"]) if p)
        parts.append(f"[{passage['n']}] {head}".rstrip())
        parts.append(passage["text"].strip())
        parts.append("")
    return "\n".join(parts).rstrip()


def messages_with_evidence(messages: list[dict], evidence) -> list[dict]:
    """The conversation as the model is given it: with passages, a system message that lists them comes
    first (joined to the conversation's own system message, if it has one). Without passages the messages
    come back unchanged; applying it twice adds nothing."""
    passages = evidence_of(evidence)
    if not passages:
        return list(messages)
    block = evidence_block(passages)
    messages = [dict(m) for m in messages]
    if messages and messages[0].get("role") == "system":
        if block in messages[0].get("content", ""):
            return messages
        messages[0]["content"] = f"{messages[0]['content'].rstrip()}\n\n{block}"
        return messages
    return [{"role": "system", "content": block}, *messages]


def cited_numbers(text: str, available=None) -> list[int]:
    """The passage numbers an answer cites as ``[n]``, in order of first use; with ``available`` only those."""
    seen: list[int] = []
    allowed = set(available) if available is not None else None
    for match in _CITE.finditer(text or ""):
        n = int(match.group(1))
        if n not in seen and (allowed is None or n in allowed):
            seen.append(n)
    return seen

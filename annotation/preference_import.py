"""Import preference labels (pairs, rankings, scored completions) as rankings: all or nothing, streaming.

Record shapes (one per JSONL line, CSV row or Parquet row; in CSV, ``messages``, ``completions``, ``ranks``,
``metadata`` and scores are JSON cells, and ``prompt``/``chosen``/``rejected`` are JSON when they start with
``[`` or ``{``, else text):

- pairs: ``{"prompt" | "messages", "chosen", "rejected"}``. The answers are texts or message lists
  (TRL's standard and conversational forms): a list's last message is the assistant answer and the
  messages before it, if any, must be the prompt. Without a prompt field (TRL's implicit prompt) the
  two conversations share everything but their last assistant turn, which becomes the prompt.
  Optional ``score_chosen`` / ``score_rejected``: equal scores make a tie.
- raw transcripts: ``{"chosen": "\\n\\nHuman: ... \\n\\nAssistant: ...", "rejected": ...}`` (Anthropic HH
  style), split at the last assistant turn; both must share the conversation before it.
- rankings: ``{"prompt" | "messages", "completions": [...], "ranks": [...]}``, rank 0 best, equal ranks tie.
- scored completions: ``{"prompt" | "messages", "completions": [{"text", "score"}, ...]}`` (UltraFeedback
  style): a higher score ranks better, equal scores tie.

Each record becomes one ``Ranking`` (``source`` import, the file and line it came from, its author the
importing manager) over new ``Completion`` rows of its prompt, which is found in the project by its
normalised text or created. Imported rankings count as labels and go to training at once, or, with
``review``, wait for a reviewer. Reading, line problems, chunked writing in one transaction and progress
are the prompt import's (``annotation.imports``); fields this import does not read are reported as
warnings, never silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from django.db import IntegrityError

from annotation.errors import AnnotationError
from annotation.import_reading import (
    CHUNK,
    FIELD_MESSAGE,
    ImportReport,
    LineImporter,
    import_records,
    import_stream,
)
from annotation.models import (
    Completion,
    Project,
    Prompt,
    PromptSource,
    Ranking,
    RankingSource,
    ReviewState,
)
from annotation.prompt_text import PromptFormatError, normalized_hash, to_messages
from annotation.slots import slots_recount

MAX_COMPLETIONS = 16
MAX_TEXT_CHARS = 100_000
_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_ROLES = {"Human": "user", "Assistant": "assistant"}


class _Bad(ValueError):
    """One problem of one record: the field it is about and what is wrong."""

    def __init__(self, field_name: str | None, message: str):
        super().__init__(message)
        self.field_name = field_name


@dataclass
class Preference:
    """One record, normalised: the prompt's messages, the answers, and their ranks (0 best)."""

    messages: list[dict]
    completions: list[str]
    ranks: list[int]


def _text(value, field_name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(field_name, "must be non-empty text")
    if len(value) > MAX_TEXT_CHARS:
        raise _Bad(field_name, f"is longer than {MAX_TEXT_CHARS} characters")
    return value


def _prompt(record: dict, field_name: str) -> list[dict]:
    """Messages of a prompt given as text or as a message list (TRL's conversational ``prompt``)."""
    value = record[field_name]
    try:
        return to_messages({"messages": value} if isinstance(value, list) else {"text": value})
    except PromptFormatError as exc:
        match = FIELD_MESSAGE.match(str(exc))
        if not match:
            raise _Bad(field_name, str(exc)) from exc
        where = match.group(1).replace("messages", field_name, 1).replace("text", field_name, 1)
        raise _Bad(where, match.group(2)) from exc


def _same(a: list[dict], b: list[dict]) -> bool:
    return normalized_hash(a) == normalized_hash(b) if a and b else a == b


def _split_answer(value, field_name: str) -> tuple[list[dict] | None, str]:
    """(messages before the answer or None for plain text, the answer) of a text or a message list."""
    if isinstance(value, str):
        return None, _text(value, field_name)
    if not isinstance(value, list) or not value:
        raise _Bad(field_name, "must be text or a non-empty list of messages")
    last = value[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise _Bad(field_name, "must end with an assistant message (the answer)")
    answer = _text(last.get("content"), f"{field_name}[{len(value) - 1}].content")
    before = value[:-1]
    if not before:
        return [], answer
    if not isinstance(before[-1], dict) or before[-1].get("role") != "user":
        raise _Bad(field_name, "must be one assistant answer, or a conversation ending in a user turn then the answer")
    return _prompt({"messages": before}, "messages"), answer


def _transcript(value: str, field_name: str) -> tuple[list[dict], str]:
    """A raw ``\\n\\nHuman: ... \\n\\nAssistant: ...`` transcript split at its last assistant turn."""
    parts = _TURN.split("\n\n" + value.lstrip("\n") if not value.startswith("\n\n") else value)
    turns = [(_ROLES[parts[i]], parts[i + 1].strip()) for i in range(1, len(parts) - 1, 2)]
    if parts[0].strip() or not turns or turns[-1][0] != "assistant" or len(turns) < 2:
        raise _Bad(field_name, "must be a transcript of '\\n\\nHuman: ...' turns ending with '\\n\\nAssistant: ...'")
    messages = [{"role": role, "content": content} for role, content in turns[:-1]]
    if any(not m["content"] for m in messages) or messages[-1]["role"] != "user":
        raise _Bad(field_name, "has an empty turn, or no human turn before its last assistant turn")
    return messages, _text(turns[-1][1], field_name)


def _explicit_prompt(record: dict, warn: Callable[[str], None]) -> list[dict] | None:
    if "prompt" in record:
        if "messages" in record:
            warn("messages")  # UltraFeedback-binarized style rows repeat the chosen conversation there
        return _prompt(record, "prompt")
    if "messages" in record:
        return _prompt(record, "messages")
    return None


def _pair(record: dict, warn: Callable[[str], None]) -> Preference:
    prompt = _explicit_prompt(record, warn)
    chosen_raw, rejected_raw = record["chosen"], record["rejected"]
    if prompt is None and isinstance(chosen_raw, str) and isinstance(rejected_raw, str):
        prompt, chosen = _transcript(chosen_raw, "chosen")
        prompt_r, rejected = _transcript(rejected_raw, "rejected")
        if not _same(prompt, prompt_r):
            raise _Bad("rejected", "does not share the conversation of 'chosen' before the last assistant turn")
    else:
        before_c, chosen = _split_answer(chosen_raw, "chosen")
        before_r, rejected = _split_answer(rejected_raw, "rejected")
        if prompt is None:
            if not before_c:
                raise _Bad(None, "needs a 'prompt' or 'messages' field (or chosen/rejected conversations "
                                 "that hold the prompt)")
            prompt = before_c
        for name, before in (("chosen", before_c), ("rejected", before_r)):
            if before and not _same(before, prompt):
                raise _Bad(name, "holds a conversation that is not the record's prompt")
    ranks = [0, 1]
    if "score_chosen" in record or "score_rejected" in record:
        scores = [_score(record.get("score_chosen"), "score_chosen"),
                  _score(record.get("score_rejected"), "score_rejected")]
        if scores[0] < scores[1]:
            raise _Bad("score_rejected", "is higher than 'score_chosen'; swap chosen and rejected")
        ranks = [0, 0] if scores[0] == scores[1] else [0, 1]
    return Preference(prompt, [chosen, rejected], ranks)


def _score(value, field_name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _Bad(field_name, "must be a number")
    return float(value)


def _ranking(record: dict, warn: Callable[[str], None]) -> Preference:
    prompt = _explicit_prompt(record, warn)
    if prompt is None:
        raise _Bad(None, "needs a 'prompt' or 'messages' field")
    completions = record["completions"]
    if not isinstance(completions, list) or not 2 <= len(completions) <= MAX_COMPLETIONS:
        raise _Bad("completions", f"must be a list of 2 to {MAX_COMPLETIONS} answers")
    scored = all(isinstance(c, dict) and "role" not in c for c in completions)
    if scored:
        if "ranks" in record:
            raise _Bad("ranks", "cannot be given with scored completions; give one or the other")
        texts, scores = [], []
        for i, item in enumerate(completions):
            unknown = sorted(set(item) - {"text", "score"})
            if unknown:
                raise _Bad(f"completions[{i}].{unknown[0]}", "is not read; a scored completion is {text, score}")
            texts.append(_text(item.get("text"), f"completions[{i}].text"))
            scores.append(_score(item.get("score"), f"completions[{i}].score"))
        distinct = sorted(set(scores), reverse=True)
        return Preference(prompt, texts, [distinct.index(s) for s in scores])
    texts = []
    for i, item in enumerate(completions):
        before, answer = _split_answer(item, f"completions[{i}]")
        if before and not _same(before, prompt):
            raise _Bad(f"completions[{i}]", "holds a conversation that is not the record's prompt")
        texts.append(answer)
    ranks = record.get("ranks")
    if not isinstance(ranks, list) or len(ranks) != len(texts):
        raise _Bad("ranks", f"must be a list of {len(texts)} ranks, one per completion (0 is the best)")
    if not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r < len(texts) for r in ranks):
        raise _Bad("ranks", f"must hold whole numbers from 0 (best) to {len(texts) - 1}")
    return Preference(prompt, texts, list(ranks))


def parse_preference(record, warn: Callable[[str], None] = lambda name: None) -> Preference:
    """One record in any of the accepted shapes, normalised; ``_Bad`` names the field at fault.
    ``warn(field)`` is called for a field that is present but deliberately not used."""
    if not isinstance(record, dict):
        raise _Bad(None, "must be an object with 'chosen'/'rejected' or 'completions'")
    if "chosen" in record or "rejected" in record:
        if "completions" in record or "ranks" in record:
            raise _Bad("completions", "cannot be given with 'chosen'/'rejected'; a record is a pair or a ranking")
        for name in ("chosen", "rejected"):
            if name not in record:
                raise _Bad(name, "is missing (a pair needs both 'chosen' and 'rejected')")
        return _pair(record, warn)
    if "completions" in record:
        return _ranking(record, warn)
    raise _Bad(None, "needs 'chosen' and 'rejected' (a pair) or 'completions' (a ranking)")


@dataclass
class _Row:
    line: int
    digest: str
    preference: Preference
    metadata: dict


class PreferenceImporter(LineImporter):
    """Validates preference records and writes prompts, completions and rankings in chunks.

    Memory stays bounded by the chunk: prompts written by earlier chunks are found again in the
    database (inside the import's transaction), not in a dict that grows with the file."""

    csv_columns = ("chosen", "completions")
    json_cells = ("messages", "completions", "ranks", "metadata", "score_chosen", "score_rejected")
    json_or_text_cells = ("prompt", "chosen", "rejected")
    known_fields = frozenset({"prompt", "messages", "chosen", "rejected", "completions", "ranks", "metadata",
                              "score_chosen", "score_rejected"})
    empty_message = "the file holds no preferences"

    def __init__(self, project: Project, user, progress, *, filename: str, review: bool):
        super().__init__(project, user, progress)
        self.filename, self.review = filename[:255], review
        self.pending: list[_Row] = []

    def add(self, line: int, record) -> None:
        self.report.lines += 1
        if isinstance(record, dict):
            self.note_unknown(line, record)
        try:
            preference = parse_preference(record, lambda name: self.note_ignored(line, name))
            metadata = record.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise _Bad("metadata", "must be an object")
        except _Bad as exc:
            self.problem(line, str(exc), exc.field_name)
            return
        self.pending.append(_Row(line, normalized_hash(preference.messages), preference, metadata))
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        if self.problem_count or not rows:
            return
        prompts = {p.normalized_hash: p for p in Prompt.objects.filter(
            project=self.project, normalized_hash__in={r.digest for r in rows})}
        fresh = []
        for row in rows:
            if row.digest not in prompts:
                prompts[row.digest] = Prompt(
                    project=self.project, messages=row.preference.messages, normalized_hash=row.digest,
                    metadata=row.metadata, source=PromptSource.IMPORT, created_by=self.user)
                fresh.append(prompts[row.digest])
        try:
            Prompt.objects.bulk_create(fresh)
        except IntegrityError as exc:
            raise AnnotationError("another import added the same prompts at the same time; try again") from exc
        completions = [Completion(prompt=prompts[r.digest], text=text) for r in rows for text in r.preference.completions]
        Completion.objects.bulk_create(completions)
        rankings, offset = [], 0
        for row in rows:
            k = len(row.preference.completions)
            ids = [c.pk for c in completions[offset:offset + k]]
            offset += k
            tiers: dict[int, list[int]] = {}
            for completion_id, rank in zip(ids, row.preference.ranks, strict=True):
                tiers.setdefault(rank, []).append(completion_id)
            rankings.append(Ranking(
                prompt=prompts[row.digest], author=self.user, order=[tiers[r] for r in sorted(tiers)],
                source=RankingSource.IMPORT, import_file=self.filename, import_line=row.line,
                review_state=ReviewState.PENDING, needs_review=self.review))
        Ranking.objects.bulk_create(rankings)
        slots_recount(self.project, Prompt.objects.filter(pk__in={p.pk for p in prompts.values()}))
        self.report.created += len(rankings)


def preferences_import(*, project: Project, stream: IO[bytes], filename: str, user, review: bool = False,
                       progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a JSONL, CSV or Parquet file of preferences in one transaction; ``created`` counts rankings.
    Raises ``ImportFailed`` listing every problem by line and field; nothing is written then."""
    importer = PreferenceImporter(project, user, progress, filename=filename or "upload", review=review)
    return import_stream(importer, stream, filename)


def preferences_import_records(*, project: Project, records: list, user, review: bool = False,
                               source_name: str = "api") -> ImportReport:
    """The API's import of preference records: the same rules as a file, ``line`` the position from 1."""
    return import_records(PreferenceImporter(project, user, None, filename=source_name, review=review), records)

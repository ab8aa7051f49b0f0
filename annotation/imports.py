"""Import prompts from JSONL, CSV or Parquet files (and from API records): all or nothing, streaming.

The reading (``import_stream``, ``import_records``) and the line-problem bookkeeping (``LineImporter``)
live in ``annotation.import_reading``, shared with the preference import (``annotation.preference_import``).

A record is ``{"prompt": ...}``, ``{"text": ...}`` or ``{"messages": [...]}`` (OpenAI style), with an
optional ``metadata`` object, an optional ``answer`` (stored as an approved demonstration by the
importer), optional ``completions`` (a list of texts, stored for ranking) and optional ``evidence``
(the passages the answers are given: texts or ``{title, text, url?, section?}`` objects, bounded by
``annotation.evidence``). CSV files carry the same fields as columns; ``metadata``, ``messages``,
``completions`` and ``evidence`` cells hold JSON.

The file is read line by line and never held in memory; a line longer than
``settings.MAX_IMPORT_LINE_BYTES`` is a problem of that line (and is never read whole). Valid rows
are written in chunks of 1000 inside one transaction; the first problem stops the writing, the rest
of the file is still checked so every problem is reported with its line and field, then the
transaction rolls back and nothing is written. A prompt already in the project, or repeated in the file, is a duplicate: reported with its
line and skipped, not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from django.db import IntegrityError

from annotation.errors import AnnotationError
from annotation.evidence import EvidenceError, evidence_clean
from annotation.import_reading import (  # ImportFailed and ImportReport: what callers of an import catch and read
    CHUNK,
    FIELD_MESSAGE,
    ImportFailed,
    ImportReport,
    LineImporter,
    import_records,
    import_stream,
)
from annotation.models import Completion, Demonstration, Project, Prompt, PromptSource, ReviewState
from annotation.prompt_text import PromptFormatError, normalized_hash, to_messages

_JSON_CELLS = ("metadata", "messages", "completions", "evidence")
PREFERENCE_FIELDS = frozenset({"chosen", "rejected", "ranks"})

__all__ = ["ImportFailed", "ImportReport", "prompts_import", "prompts_import_records"]


@dataclass
class _Row:
    line: int
    prompt: Prompt
    answer: str | None
    completions: list[str]


class _Importer(LineImporter):
    """Prompts: validates records one at a time and writes them in chunks while the file is still clean."""

    csv_columns = ("prompt", "text", "messages")
    json_cells = _JSON_CELLS
    known_fields = frozenset({"prompt", "text", "messages", "metadata", "answer", "completions", "evidence"})
    empty_message = "the file holds no prompts"

    def __init__(self, project: Project, user, progress: Callable[[int], None] | None):
        super().__init__(project, user, progress)
        self.pending: list[_Row] = []
        self.first_line_of: dict[str, int] = {}

    def add(self, line: int, record) -> None:
        self.report.lines += 1
        if not isinstance(record, dict):
            self.problem(line, "must be an object with a 'prompt', 'text' or 'messages' field")
            return
        preference = sorted(PREFERENCE_FIELDS & set(record))
        if preference:
            self.problem(line, "is preference data (a ranking or a chosen/rejected pair), which this prompt "
                               "import does not read: use the preference import (Import page, kind "
                               "'Preferences', or POST /api/projects/<slug>/preferences/)", preference[0])
            return
        self.note_unknown(line, record)
        ok = True
        try:
            messages = to_messages(record)
        except PromptFormatError as exc:
            match = FIELD_MESSAGE.match(str(exc))
            if match:
                self.problem(line, match.group(2), match.group(1))
            else:
                self.problem(line, str(exc))
            ok = False
        metadata = record.get("metadata")
        if metadata in (None, ""):
            metadata = {}
        elif not isinstance(metadata, dict):
            self.problem(line, "must be an object", "metadata")
            ok = False
        answer = record.get("answer")
        if answer in (None, ""):
            answer = None
        elif not isinstance(answer, str) or not answer.strip():
            self.problem(line, "must be non-empty text", "answer")
            ok = False
        completions = record.get("completions")
        if completions in (None, ""):
            completions = []
        elif not isinstance(completions, list) or not all(isinstance(c, str) and c.strip() for c in completions):
            self.problem(line, "must be a list of non-empty texts", "completions")
            ok = False
        try:
            evidence = evidence_clean(record.get("evidence"))
        except EvidenceError as exc:
            self.problem(line, str(exc), "evidence")
            ok = False
        if not ok:
            return
        digest = normalized_hash(messages)
        first = self.first_line_of.get(digest)
        if first is not None:
            self.report.duplicates.append((line, f"same prompt as line {first}"))
            return
        self.first_line_of[digest] = line
        # The queue's counts, set here so the import needs no recount: an imported answer takes a slot.
        taken = 1 if answer else 0
        prompt = Prompt(project=self.project, messages=messages, normalized_hash=digest, metadata=metadata,
                        evidence=evidence, source=PromptSource.IMPORT, created_by=self.user, demonstrations_taken=taken,
                        demonstration_open=taken < self.project.labels_per_item,
                        ranking_open=len(completions) >= self.project.completions_per_prompt)
        self.pending.append(_Row(line, prompt, answer, completions))
        if len(self.pending) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Write the pending rows, unless a problem was found (then the transaction rolls back anyway)."""
        rows, self.pending = self.pending, []
        if self.problem_count or not rows:
            return
        existing = set(
            Prompt.objects.filter(project=self.project, normalized_hash__in=[r.prompt.normalized_hash for r in rows])
            .values_list("normalized_hash", flat=True)
        )
        fresh = []
        for row in rows:
            if row.prompt.normalized_hash in existing:
                self.report.duplicates.append((row.line, "already in the project"))
            else:
                fresh.append(row)
        try:
            Prompt.objects.bulk_create([r.prompt for r in fresh])
        except IntegrityError as exc:
            raise AnnotationError("another import added the same prompts at the same time; try again") from exc
        Demonstration.objects.bulk_create(
            Demonstration(prompt=r.prompt, author=self.user, content=r.answer.strip(),
                          review_state=ReviewState.APPROVED, needs_review=False)
            for r in fresh if r.answer
        )
        Completion.objects.bulk_create(
            Completion(prompt=r.prompt, text=text) for r in fresh for text in r.completions
        )
        self.report.created += len(fresh)


def prompts_import(*, project: Project, stream: IO[bytes], filename: str, user,
                   progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a JSONL, CSV or Parquet upload of prompts in one transaction (see ``import_stream``)."""
    return import_stream(_Importer(project, user, progress), stream, filename)


def prompts_import_records(*, project: Project, records: list[dict], user) -> ImportReport:
    """The API's import of prompts: the same rules as a file."""
    return import_records(_Importer(project, user, None), records)

"""Import prompts from JSONL, CSV or Parquet files (and from API records): all or nothing, streaming.

The reading (``import_stream``, ``import_records``) and the line-problem bookkeeping (``LineImporter``)
are shared with the preference import (``annotation.preference_import``).

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

import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import IO

from django.conf import settings
from django.db import IntegrityError, transaction

from annotation.errors import AnnotationError
from annotation.evidence import EvidenceError, evidence_clean
from annotation.models import Completion, Demonstration, Project, Prompt, PromptSource, ReviewState
from annotation.prompt_text import PromptFormatError, normalized_hash, to_messages
from config.input import loads

CHUNK = 1000
MAX_PROBLEMS_LISTED = 200
FIELD_MESSAGE = re.compile(r"^field '([^']+)' (.*)$")
_JSON_CELLS = ("metadata", "messages", "completions", "evidence")
PREFERENCE_FIELDS = frozenset({"chosen", "rejected", "ranks"})


@dataclass
class ImportReport:
    """``created`` items written; ``duplicates`` as (line, reason); ``lines`` records read; ``warnings``
    say what was read but not used (a field the importer ignores), once per field with its count."""

    created: int
    duplicates: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0
    warnings: list[str] = field(default_factory=list)


class ImportFailed(AnnotationError):
    """The file (or request) had problems; nothing was written. ``problems`` lists each one by line."""

    def __init__(self, problems: list[str], count: int | None = None):
        self.problems = problems
        count = count or len(problems)
        super().__init__(
            f"nothing was imported: {count} problem{'s' if count != 1 else ''} to fix first" if problems
            else "nothing was imported"
        )


@dataclass
class _Row:
    line: int
    prompt: Prompt
    answer: str | None
    completions: list[str]


class LineImporter:
    """What the file readers need of an importer: ``add(line, record)``, line problems, progress ticks,
    and ``finish()`` (write the rest or raise ``ImportFailed``). Subclasses validate and write records."""

    csv_columns: tuple[str, ...] = ()  # the CSV header needs one of these
    json_cells: tuple[str, ...] = ()  # CSV cells that hold JSON
    json_or_text_cells: tuple[str, ...] = ()  # CSV cells that hold JSON when they start with [ or {, else text
    known_fields: frozenset[str] = frozenset()  # other fields are reported as ignored
    empty_message = "the file holds no records"

    def __init__(self, project: Project, user, progress: Callable[[int], None] | None):
        self.project, self.user, self.progress = project, user, progress
        self.max_line = settings.MAX_IMPORT_LINE_BYTES
        self.problems: list[str] = []
        self.problem_count = 0
        self.report = ImportReport(created=0)
        self.ignored: dict[str, list[int]] = {}  # field -> [count, first line]

    def add(self, line: int, record) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def note_unknown(self, line: int, record: dict) -> None:
        """Count the fields this importer does not read, for one warning per field in the report."""
        for name in record:
            if name not in self.known_fields:
                self.note_ignored(line, str(name))

    def note_ignored(self, line: int, name: str) -> None:
        if name not in self.ignored and len(self.ignored) >= MAX_PROBLEMS_LISTED:
            name = "(more field names)"  # bounded however many distinct names a file invents
        seen = self.ignored.setdefault(name[:100], [0, line])
        seen[0] += 1

    def finish(self) -> ImportReport:
        self.flush()
        if self.problem_count:
            problems = list(self.problems)
            if self.problem_count > len(problems):
                problems.append(f"... and {self.problem_count - len(problems)} more problems")
            raise ImportFailed(problems, self.problem_count)
        if self.report.lines == 0:
            raise ImportFailed([self.empty_message])
        self.report.duplicates.sort()
        self.report.warnings = [
            f"field '{name}' is not read by this import and was ignored on {count} line{'s' if count != 1 else ''}"
            f" (first: line {first})" for name, (count, first) in sorted(self.ignored.items())
        ]
        return self.report

    def problem(self, line: int, message: str, field_name: str | None = None) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_LISTED:
            where = f"line {line}, field '{field_name}'" if field_name else f"line {line}"
            self.problems.append(f"{where}: {message}")

    def tick(self, line: int) -> None:
        if self.progress is not None and line % CHUNK == 0:
            self.progress(line)


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


def _numbered(stream: IO[bytes], max_line: int) -> Iterator[tuple[int, int, bytes | None]]:
    """(line number from 1, byte offset of the line, raw bytes) for each line of a binary stream.

    A line longer than ``max_line`` bytes comes as ``None`` and is never held whole: the rest of it
    is read and dropped in bounded pieces, so one 10 MB line costs no more memory than a short one.
    """
    offset, number = 0, 0
    if getattr(stream, "seekable", lambda: False)():
        stream.seek(0)  # a form's validation may have read the upload already
    while raw := stream.readline(max_line + 1):
        number += 1
        if len(raw) > max_line and not raw.endswith(b"\n"):
            length = len(raw)
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(64 * 1024)
                length += len(raw)
            yield number, offset, None
            offset += length
            continue
        yield number, offset, raw
        offset += len(raw)


def _decode(importer: LineImporter, number: int, offset: int, raw: bytes | None) -> str:
    if raw is None:
        importer.problem(number, f"longer than {importer.max_line // 1024} KB; a line must be shorter "
                                 "(the server's TUNELOOP_MAX_IMPORT_LINE_BYTES)")
        return ""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        importer.problem(number, f"not valid UTF-8 (byte {offset + exc.start} of the file); save the file as UTF-8")
        text = raw.decode("utf-8", errors="replace")
    return text.removeprefix("\ufeff") if number == 1 else text


def _jsonl(importer: LineImporter, lines: Iterator[tuple[int, int, bytes]]) -> None:
    for number, offset, raw in lines:
        importer.tick(number)
        before = importer.problem_count
        text = _decode(importer, number, offset, raw).strip()
        if not text:
            continue
        if importer.problem_count > before:
            importer.report.lines += 1
            continue
        try:
            record = loads(text)
        except json.JSONDecodeError as exc:
            importer.report.lines += 1
            importer.problem(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        importer.add(number, record)


def _csv(importer: LineImporter, lines: Iterator[tuple[int, int, bytes]], delimiter: str) -> None:
    def text_lines() -> Iterator[str]:
        for number, offset, raw in lines:
            importer.tick(number)
            yield _decode(importer, number, offset, raw) or "\n"

    reader = csv.reader(text_lines(), delimiter=delimiter)
    try:
        header = [name.strip().lower() for name in next(reader, [])]
        if not set(importer.csv_columns) & set(header):
            names = [f"'{c}'" for c in importer.csv_columns]
            importer.problem(1, f"the CSV header needs a {', '.join(names[:-1])} or {names[-1]} column")
            return
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                importer.report.lines += 1
                importer.problem(line, f"has {len(cells)} cells but the header has {len(header)}")
                continue
            record = _csv_record(importer, line, dict(zip(header, cells, strict=True)))
            if record is None:
                importer.report.lines += 1
            else:
                importer.add(line, record)
    except csv.Error as exc:
        importer.problem(reader.line_num, f"the CSV cannot be read further ({exc})")


def _csv_record(importer: LineImporter, line: int, row: dict[str, str]) -> dict | None:
    record: dict = {}
    ok = True
    for name, value in row.items():
        if not value.strip():
            continue
        if name in importer.json_cells or (
                name in importer.json_or_text_cells and value.lstrip().startswith(("[", "{"))):
            try:
                record[name] = loads(value)
            except json.JSONDecodeError:
                importer.problem(line, "must be JSON", name)
                ok = False
        else:
            record[name] = value
    return record if ok else None


def _parquet(importer: LineImporter, stream: IO[bytes]) -> None:
    """Rows of a Parquet file, a batch of ``CHUNK`` at a time (constant memory); ``line`` is the row from 1.
    A null cell counts as an absent field."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
        batches = parquet.iter_batches(batch_size=CHUNK)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                importer.tick(number)
                importer.add(number, {k: v for k, v in row.items() if v is not None})
    except (pa.ArrowException, OSError) as exc:
        importer.problem(max(importer.report.lines, 1), f"the Parquet file cannot be read ({exc})")


def _format(filename: str, first_line: bytes) -> str:
    suffix = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if suffix in ("jsonl", "ndjson", "json"):
        return "jsonl"
    if suffix in ("csv", "tsv"):
        return suffix
    return "jsonl" if first_line.lstrip(b"\xef\xbb\xbf \t").startswith((b"{", b"[")) else "csv"


def import_stream(importer: LineImporter, stream: IO[bytes], filename: str) -> ImportReport:
    """Read a JSONL, CSV, TSV or Parquet upload into ``importer`` in one transaction; raises
    ``ImportFailed`` listing every problem. Parquet is recognised by its magic bytes."""
    head = stream.read(4)
    stream.seek(0)
    if head == b"PAR1" or (filename or "").lower().endswith(".parquet"):
        with transaction.atomic():
            _parquet(importer, stream)
            report = importer.finish()
    else:
        lines = _numbered(stream, importer.max_line)
        first = next(lines, None)
        if first is None:
            raise ImportFailed(["the file is empty"])
        head = first[2] or b""
        kind = _format(filename or "", head)
        if kind == "jsonl" and head.lstrip(b"\xef\xbb\xbf \t").startswith(b"["):
            raise ImportFailed(["line 1: a JSON array is not JSON Lines; put one object per line"])
        lines = chain([first], lines)
        with transaction.atomic():
            if kind == "jsonl":
                _jsonl(importer, lines)
            else:
                _csv(importer, lines, "\t" if kind == "tsv" else ",")
            report = importer.finish()
    if importer.progress is not None:
        importer.progress(report.lines)
    return report


def import_records(importer: LineImporter, records: list) -> ImportReport:
    """The API's import: the same rules as a file (one record as long as a line at most), ``line`` being
    the record's position from 1."""
    if not isinstance(records, list):
        raise ImportFailed(["records must be a list of objects"])
    with transaction.atomic():
        for index, record in enumerate(records, 1):
            if len(json.dumps(record, ensure_ascii=False).encode()) > importer.max_line:
                importer.report.lines += 1
                _decode(importer, index, 0, None)
                continue
            importer.add(index, record)
        return importer.finish()


def prompts_import(*, project: Project, stream: IO[bytes], filename: str, user,
                   progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import a JSONL, CSV or Parquet upload of prompts in one transaction (see ``import_stream``)."""
    return import_stream(_Importer(project, user, progress), stream, filename)


def prompts_import_records(*, project: Project, records: list[dict], user) -> ImportReport:
    """The API's import of prompts: the same rules as a file."""
    return import_records(_Importer(project, user, None), records)

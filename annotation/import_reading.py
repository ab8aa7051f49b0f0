"""Reading an import, shared by the prompt import (``annotation.imports``) and the preference import
(``annotation.preference_import``): JSONL, CSV, TSV and Parquet files streamed line by line, API
records, and the bookkeeping of line problems (``LineImporter``). All or nothing: everything is read in
one transaction, and the first problem stops the writing while the rest is still checked, so every
problem is reported with its line and field before the transaction rolls back.

The file is never held in memory; a line longer than ``settings.MAX_IMPORT_LINE_BYTES`` is a problem
of that line (and is never read whole). An importer writes its valid records in chunks of ``CHUNK``.
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
from django.db import transaction

from annotation.errors import AnnotationError
from annotation.models import Project
from config.input import loads

CHUNK = 1000
MAX_PROBLEMS_LISTED = 200
FIELD_MESSAGE = re.compile(r"^field '([^']+)' (.*)$")  # a PromptFormatError naming its field


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

"""The rows of every training format, read from a project's live labels, and their streaming export.

Each ``*_rows`` generator yields ``(item_id, row)`` pairs in id order from a queryset walked with
``.iterator(chunk_size=...)``: Django fetches ``CHUNK_SIZE`` rows at a time and never builds the
whole result, so an export of a million labels runs in constant memory. Snapshots (``snapshots.py``)
write the same rows to files; the API and the pages stream them as JSONL (or Parquet) downloads.

Formats (each line one JSON object, what ``datasets.load_dataset("json", ...)`` and TRL expect):

- ``sft``: ``{"messages": [..., {"role": "assistant", "content": answer}]}``
- ``rankings``: ``{"prompt": [messages], "completions": [str, ...], "ranks": [int, ...], "flags": [[str, ...],
  ...], "prompt_id": int}`` with completions best first, rank 0 the best and equal ranks for ties, and
  the labeler's flags of each completion (``unsafe``, ``factually_wrong``, ...; ``[]`` when none).
- ``pairs``: ``{"prompt": [messages], "chosen": str, "rejected": str, "chosen_flags": [str], "rejected_flags":
  [str]}`` (TRL's preference format with an explicit conversational prompt and plain-text answers, the
  extra columns ignored by TRL); one ranking of K gives its C(K,2) comparisons minus the tied ones.
- ``prompts``: ``{"messages": [...], "prompt_id": int}``
- ``moderation``: ``{"text": str, "categories": [str, ...]}``

A prompt with evidence (passages it came with, e.g. from a chat answer with citations) carries them
in an ``evidence`` column (``[{n, title, section, source, url, text}]``; absent when there are none),
and its prompt messages begin with the system message that lists them
(``annotation.evidence.messages_with_evidence``, the same text the chat gives the model), so SFT, the
reward model and sampling all read the answer together with what it should be supported by. A
labeler's ``not_supported`` flag ("not supported by the evidence") rides in ``flags`` like the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator

from django.db.models import Count
from django.http import StreamingHttpResponse

from annotation import selectors as labels
from annotation.evidence import evidence_of, messages_with_evidence
from training.errors import TrainingError

log = logging.getLogger(__name__)

CHUNK_SIZE = 2000
FORMATS = ("sft", "rankings", "pairs", "prompts", "moderation")
MODERATION_SOURCE = "reviewed moderation events"


def prompt_messages(prompt) -> tuple[list[dict], dict]:
    """The prompt as every training format gives it to a model (with its passages, if any), and the
    ``evidence`` column of its row (empty when it has none)."""
    evidence = evidence_of(prompt.evidence)
    return messages_with_evidence(prompt.messages, evidence), ({"evidence": evidence} if evidence else {})


def sft_rows(project) -> Iterator[tuple[int, dict]]:
    """Approved demonstrations as chat transcripts whose last turn is the labeler's answer."""
    for demo in labels.approved_demonstrations(project).iterator(chunk_size=CHUNK_SIZE):
        messages, extra = prompt_messages(demo.prompt)
        yield demo.pk, {"messages": [*messages, {"role": "assistant", "content": demo.content}], **extra}


def _rankings(project):
    return (
        labels.rankings_for_training(project)
        .prefetch_related("prompt__completions")
        .iterator(chunk_size=CHUNK_SIZE)
    )


def ranking_row(ranking) -> dict | None:
    """One ranking as completions best first with their tier as rank; None if it names a lost completion."""
    texts = {c.pk: c.text for c in ranking.prompt.completions.all()}
    flagged = ranking.flags if isinstance(ranking.flags, dict) else {}
    completions, ranks, flags = [], [], []
    for tier, ids in enumerate(ranking.order or []):
        for completion_id in ids:
            if completion_id not in texts:
                log.warning("ranking #%s names completion %s that no longer exists; skipped", ranking.pk, completion_id)
                return None
            completions.append(texts[completion_id])
            ranks.append(tier)
            flags.append(sorted(str(f) for f in flagged.get(str(completion_id), []) or []))
    if len(completions) < 2:
        return None
    messages, extra = prompt_messages(ranking.prompt)
    return {"prompt": messages, "completions": completions, "ranks": ranks, "flags": flags,
            "prompt_id": ranking.prompt_id, **extra}


def ranking_rows(project) -> Iterator[tuple[int, dict]]:
    for ranking in _rankings(project):
        row = ranking_row(ranking)
        if row is not None:
            yield ranking.pk, row


def pairs_of(row: dict) -> Iterator[dict]:
    """The comparisons of one ranking: every better/worse couple of completions, ties skipped."""
    completions, ranks = row["completions"], row["ranks"]
    flags = row.get("flags") or [[] for _ in completions]
    for i in range(len(completions)):
        for j in range(i + 1, len(completions)):
            if ranks[i] == ranks[j]:
                continue
            better, worse = (i, j) if ranks[i] < ranks[j] else (j, i)
            extra = {"evidence": row["evidence"]} if row.get("evidence") else {}
            yield {"prompt": row["prompt"], "chosen": completions[better], "rejected": completions[worse],
                   "chosen_flags": flags[better], "rejected_flags": flags[worse], **extra}


def pair_rows(project) -> Iterator[tuple[int, dict]]:
    for ranking_id, row in ranking_rows(project):
        for pair in pairs_of(row):
            yield ranking_id, pair


def prompt_rows(project, *, needs_completions: bool = False, limit: int | None = None) -> Iterator[tuple[int, dict]]:
    """Prompts as ``messages``; with ``needs_completions`` only non-gold ones with fewer than K completions."""
    prompts = labels.prompts_of(project)
    if needs_completions:
        prompts = (
            prompts.filter(is_gold=False)
            .annotate(n_completions=Count("completions"))
            .filter(n_completions__lt=project.completions_per_prompt)
        )
    if limit:
        prompts = prompts[:limit]
    for prompt in prompts.only("id", "messages", "evidence").iterator(chunk_size=CHUNK_SIZE):
        messages, extra = prompt_messages(prompt)
        yield prompt.pk, {"messages": messages, "prompt_id": prompt.pk, **extra}


def moderation_source():
    """The selector of manager-reviewed moderation events, when the serving app provides one."""
    try:
        from serving import selectors as serving_selectors
    except ImportError:
        return None
    return getattr(serving_selectors, "moderation_labels_for_training", None)


def moderation_rows(project) -> Iterator[tuple[int, dict]]:
    """Reviewed moderation events: confirmed ones keep their categories, dismissed ones have none."""
    source = moderation_source()
    if source is None:
        return
    for event in source(project).iterator(chunk_size=CHUNK_SIZE):
        yield event.pk, {"text": event.text, "categories": list(event.categories or [])}


def rows_for(project, fmt: str, **options) -> Iterator[tuple[int, dict]]:
    if fmt == "sft":
        return sft_rows(project)
    if fmt == "rankings":
        return ranking_rows(project)
    if fmt == "pairs":
        return pair_rows(project)
    if fmt == "prompts":
        return prompt_rows(project, **options)
    if fmt == "moderation":
        return moderation_rows(project)
    raise TrainingError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def jsonl_line(row: dict) -> bytes:
    """One canonical line: sorted keys and no ASCII escaping, so equal content hashes equal."""
    return (json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode()


def jsonl_chunks(rows: Iterable[tuple[int, dict]], lines_per_chunk: int = 500) -> Iterator[bytes]:
    """JSONL bytes a few hundred lines at a time (one write per chunk, not per row)."""
    buffer: list[bytes] = []
    for _, row in rows:
        buffer.append(jsonl_line(row))
        if len(buffer) >= lines_per_chunk:
            yield b"".join(buffer)
            buffer.clear()
    if buffer:
        yield b"".join(buffer)


class _Sink:
    """A write-only file that hands back what was written since the last ``drain``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def evidence_type():
    """The Parquet type of the ``evidence`` column: a list of passages."""
    import pyarrow as pa

    return pa.list_(pa.struct([("n", pa.int64()), *((name, pa.string()) for name in
                                                     ("title", "section", "source", "url", "text"))]))


def parquet_chunks(rows: Iterable[tuple[int, dict]], rows_per_group: int = 5000) -> Iterator[bytes]:
    """Parquet, one row group per ``rows_per_group`` rows, streamed as each group is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink, writer, batch = _Sink(), None, []

    def strings_for_nulls(kind):  # an all-empty list in the first group must not fix the type to null
        if pa.types.is_null(kind):
            return pa.string()
        if pa.types.is_list(kind):
            return pa.list_(strings_for_nulls(kind.value_type))
        return kind

    def flush() -> bytes:
        nonlocal writer
        if writer is None:
            # The columns of every row of the first group; a prompt-bearing format always has the optional
            # ``evidence`` column (its type declared), so rows with passages after a group without any
            # keep them. Rows without a column get null.
            columns = list(dict.fromkeys(key for row in batch for key in row))
            if {"messages", "prompt"} & set(columns) and "evidence" not in columns:
                columns.append("evidence")
            inferred = pa.Table.from_pylist(
                [{key: row.get(key) for key in columns if key != "evidence"} for row in batch]).schema
            fields = [pa.field(f.name, strings_for_nulls(f.type)) for f in inferred]
            if "evidence" in columns:
                fields.append(pa.field("evidence", evidence_type()))
            table = pa.Table.from_pylist(batch, schema=pa.schema(fields))
        else:
            table = pa.Table.from_pylist(batch, schema=writer.schema)
        if writer is None:
            writer = pq.ParquetWriter(sink, table.schema)
        writer.write_table(table)
        batch.clear()
        return sink.drain()

    for _, row in rows:
        batch.append(row)
        if len(batch) >= rows_per_group:
            yield flush()
    if batch:
        yield flush()
    if writer is None:  # no rows: a valid file with an empty schema
        writer = pq.ParquetWriter(sink, pa.schema([]))
    writer.close()
    yield sink.drain()


CONTENT_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def export_response(project, fmt: str, *, file_format: str = "jsonl") -> StreamingHttpResponse:
    """A download of the project's current labels in ``fmt``; streams, so memory stays flat."""
    if file_format not in CONTENT_TYPES:
        raise TrainingError(f"unknown file format {file_format!r}; choose jsonl or parquet")
    rows = rows_for(project, fmt)
    body = jsonl_chunks(rows) if file_format == "jsonl" else parquet_chunks(rows)
    response = StreamingHttpResponse(body, content_type=CONTENT_TYPES[file_format])
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-{fmt}.{file_format}"'
    return response

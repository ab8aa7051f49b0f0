"""Corpora for pre-training: uploads streamed to the data dir, or approved demonstrations as text.

An upload is read in chunks through an incremental UTF-8 decoder, so a 10 GB file takes constant
memory and a bad byte is reported with its offset; nothing is kept when the file is rejected.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from config.input import loads
from training.errors import TrainingError
from training.models import Corpus

CHUNK = 1024 * 1024


def corpora_dir() -> Path:
    path = Path(settings.DATA_DIR) / "corpora"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonl_text(line: str, number: int, name: str) -> str:
    try:
        record = loads(line)
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{name}, line {number}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise TrainingError(f"{name}, line {number}: field 'text' is missing or not a string")
    return record["text"].replace("\n", " ")


def _too_long(name: str, number: int, max_line: int) -> str:
    return (f"{name}, line {number}: longer than {max_line // 1024} KB; split long documents "
            "(the server's TUNELOOP_MAX_CORPUS_LINE_BYTES)")


def corpus_upload(*, project, name: str, chunks, created_by=None) -> Corpus:
    """Store a .txt (one document per line) or .jsonl (field ``text``) upload as a corpus.

    ``chunks`` yields bytes (Django's ``UploadedFile.chunks()``). Bad encoding raises a
    ``TrainingError`` naming the byte offset; bad JSONL names the line and field; a line longer than
    ``settings.MAX_CORPUS_LINE_BYTES`` characters names the line. (The file's size is checked by the page.)
    """
    is_jsonl = name.lower().endswith(".jsonl")
    max_line = settings.MAX_CORPUS_LINE_BYTES
    target = corpora_dir() / f"{uuid.uuid4().hex}.txt"
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    digest, size, lines, offset, pending = hashlib.sha256(), 0, 0, 0, ""
    try:
        with open(target, "w", encoding="utf-8") as out:
            for chunk in chunks:
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise TrainingError(
                        f"{name}: not valid UTF-8 at byte offset {offset + exc.start} ({exc.reason})"
                    ) from None
                offset += len(chunk)
                *complete, pending = (pending + text).split("\n")
                if len(pending) > max_line:
                    raise TrainingError(_too_long(name, lines + len(complete) + 1, max_line))
                for line in complete:
                    lines += 1
                    if len(line) > max_line:
                        raise TrainingError(_too_long(name, lines, max_line))
                    line = line.rstrip("\r")
                    if not line.strip():
                        continue
                    doc = _jsonl_text(line, lines, name) if is_jsonl else line
                    out.write(doc + "\n")
                    digest.update(doc.encode())
            try:
                pending += decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise TrainingError(f"{name}: file ends inside a UTF-8 character at byte offset {offset}") from None
            if pending.strip():
                lines += 1
                doc = _jsonl_text(pending, lines, name) if is_jsonl else pending.rstrip("\r")
                out.write(doc + "\n")
                digest.update(doc.encode())
            size = offset
        if lines == 0:
            raise TrainingError(f"{name}: the file is empty")
        with transaction.atomic():
            return Corpus.objects.create(
                project=project, name=name, path=str(target.relative_to(settings.DATA_DIR)), size_bytes=size,
                line_count=lines, content_hash=digest.hexdigest(), created_by=created_by,
            )
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def corpus_from_demonstrations(*, project, created_by=None) -> Corpus:
    """The project's approved demonstrations rendered as text (prompt and answer on one line)."""
    from annotation.selectors import approved_demonstrations

    target = corpora_dir() / f"{uuid.uuid4().hex}.txt"
    digest, lines = hashlib.sha256(), 0
    with open(target, "w", encoding="utf-8") as out:
        for demo in approved_demonstrations(project).iterator(chunk_size=2000):
            doc = f"{demo.prompt.text} {demo.content}".replace("\n", " ").strip()
            out.write(doc + "\n")
            digest.update(doc.encode())
            lines += 1
    if lines == 0:
        target.unlink()
        raise TrainingError("the project has no approved demonstrations to make a corpus from")
    return Corpus.objects.create(
        project=project, name=f"{project.name}: approved demonstrations", source=Corpus.Source.DEMONSTRATIONS,
        path=str(target.relative_to(settings.DATA_DIR)), size_bytes=target.stat().st_size, line_count=lines,
        content_hash=digest.hexdigest(), created_by=created_by,
    )


def corpus_path(corpus: Corpus) -> Path:
    return Path(settings.DATA_DIR) / corpus.path

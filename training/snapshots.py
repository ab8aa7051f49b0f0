"""Freezing a project's eligible labels into a ``DatasetSnapshot``: ids, a content hash, and files.

A snapshot is what a run trained on, so it must never change: the rows are written once under
``DATA_DIR/snapshots/<id>/`` and their sha256 is stored. Freezing the same content again returns
the existing snapshot (the table has a unique constraint on project, kind and hash), so starting
five runs on unchanged labels makes one snapshot, not five.

Files per kind (JSONL, one object per line; see ``exports.py`` for the row formats):

- ``sft``: ``train.jsonl`` (``messages``)
- ``preference``: ``train.jsonl`` (full rankings: ``prompt``, ``completions``, ``ranks``) and
  ``pairs.jsonl`` (``prompt``, ``chosen``, ``rejected``; C(K,2) per ranking, ties skipped)
- ``prompts``: ``train.jsonl`` (``messages``, ``prompt_id``)
- ``moderation``: ``train.jsonl`` (``text``, ``categories``)

The hash covers ``train.jsonl`` (the pairs file is derived from it) and the kind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from training import exports
from training.errors import TrainingError
from training.models import DatasetSnapshot, SnapshotKind

PRIMARY_FILE = "train.jsonl"
PAIRS_FILE = "pairs.jsonl"
OPTION_KEYS = {
    SnapshotKind.SFT: set(),
    SnapshotKind.PREFERENCE: set(),
    SnapshotKind.PROMPTS: {"needs_completions", "limit"},
    SnapshotKind.MODERATION: set(),
}
EMPTY_REASONS = {
    SnapshotKind.SFT: "the project has no approved demonstrations yet",
    SnapshotKind.PREFERENCE: "the project has no rankings eligible for training yet",
    SnapshotKind.PROMPTS: "the project has no prompts to freeze (with these options)",
    SnapshotKind.MODERATION: "there are no reviewed moderation events yet",
}


def snapshots_root() -> Path:
    return Path(settings.DATA_DIR) / "snapshots"


def snapshot_dir(snapshot: DatasetSnapshot) -> Path:
    return Path(settings.DATA_DIR) / snapshot.path


def snapshot_file(snapshot: DatasetSnapshot, name: str = PRIMARY_FILE) -> Path:
    """The path of one file of the snapshot; ``TrainingError`` when it is not on disk."""
    allowed = {PRIMARY_FILE, PAIRS_FILE} if snapshot.kind == SnapshotKind.PREFERENCE else {PRIMARY_FILE}
    if name not in allowed:
        raise TrainingError(f"a {snapshot.kind} snapshot has no file {name!r}; it has {', '.join(sorted(allowed))}")
    path = snapshot_dir(snapshot) / name
    if not path.is_file():
        raise TrainingError(f"the files of snapshot #{snapshot.pk} are missing from {path.parent}")
    return path


def snapshot_files(snapshot: DatasetSnapshot) -> list[str]:
    return [PRIMARY_FILE, PAIRS_FILE] if snapshot.kind == SnapshotKind.PREFERENCE else [PRIMARY_FILE]


@dataclass
class _Written:
    folder: Path
    content_hash: str
    item_ids: list[int]
    row_count: int


def _validate_options(kind: str, options: dict) -> dict:
    if kind not in SnapshotKind.values:
        raise TrainingError(f"unknown snapshot kind {kind!r}; choose one of {', '.join(SnapshotKind.values)}")
    if not isinstance(options, dict):
        raise TrainingError("snapshot options must be a JSON object")
    unknown = sorted(set(options) - OPTION_KEYS[kind])
    if unknown:
        known = ", ".join(sorted(OPTION_KEYS[kind])) or "none"
        raise TrainingError(f"unknown {kind} snapshot option {unknown[0]!r}; known options: {known}")
    if "limit" in options and (not isinstance(options["limit"], int) or options["limit"] < 1):
        raise TrainingError("snapshot option 'limit' must be a positive integer")
    if "needs_completions" in options and not isinstance(options["needs_completions"], bool):
        raise TrainingError("snapshot option 'needs_completions' must be true or false")
    return dict(options)


def _rows(project, kind: str, options: dict):
    if kind == SnapshotKind.SFT:
        return exports.sft_rows(project)
    if kind == SnapshotKind.PREFERENCE:
        return exports.ranking_rows(project)
    if kind == SnapshotKind.PROMPTS:
        return exports.prompt_rows(project, **options)
    return exports.moderation_rows(project)


def _write(project, kind: str, options: dict) -> _Written:
    """Stream the rows into a fresh temporary folder, hashing as they go."""
    root = snapshots_root()
    folder = root / f".tmp-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    digest = hashlib.sha256(f"{kind}\n".encode())
    item_ids: list[int] = []
    seen: set[int] = set()
    rows = 0
    try:
        with open(folder / PRIMARY_FILE, "wb") as primary:
            pairs = open(folder / PAIRS_FILE, "wb") if kind == SnapshotKind.PREFERENCE else None  # noqa: SIM115
            try:
                for item_id, row in _rows(project, kind, options):
                    line = exports.jsonl_line(row)
                    primary.write(line)
                    digest.update(line)
                    rows += 1
                    if item_id not in seen:
                        seen.add(item_id)
                        item_ids.append(item_id)
                    if pairs is not None:
                        for pair in exports.pairs_of(row):
                            pairs.write(exports.jsonl_line(pair))
            finally:
                if pairs is not None:
                    pairs.close()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _Written(folder=folder, content_hash=digest.hexdigest(), item_ids=item_ids, row_count=rows)


def _ensure_files(snapshot: DatasetSnapshot, written: _Written) -> None:
    """Give an existing snapshot back its files if they were lost (same content, so same bytes)."""
    target = snapshot_dir(snapshot)
    if (target / PRIMARY_FILE).is_file():
        shutil.rmtree(written.folder, ignore_errors=True)
        return
    shutil.rmtree(target, ignore_errors=True)
    written.folder.rename(target)


def snapshot_freeze(*, project, kind: str, created_by=None, options: dict | None = None) -> DatasetSnapshot:
    """Freeze the project's eligible labels of ``kind``; the same content returns the same snapshot.

    Raises ``TrainingError`` for an unknown kind or option, and when there is nothing to freeze.
    """
    options = _validate_options(kind, options or {})
    written = _write(project, kind, options)
    if written.row_count == 0:
        shutil.rmtree(written.folder, ignore_errors=True)
        raise TrainingError(f"nothing to freeze: {EMPTY_REASONS[kind]}")
    existing = DatasetSnapshot.objects.filter(project=project, kind=kind, content_hash=written.content_hash).first()
    if existing is not None:
        _ensure_files(existing, written)
        return existing
    try:
        with transaction.atomic():
            snapshot = DatasetSnapshot.objects.create(
                project=project,
                kind=kind,
                item_ids=written.item_ids,
                content_hash=written.content_hash,
                row_count=written.row_count,
                options=options,
                created_by=created_by,
            )
            snapshot.path = f"snapshots/{snapshot.pk}"
            snapshot.save(update_fields=["path"])
            target = snapshot_dir(snapshot)
            # A folder already named after this new id was left by a rolled-back transaction.
            shutil.rmtree(target, ignore_errors=True)
            written.folder.rename(target)
            (target / "snapshot.json").write_text(
                json.dumps(
                    {"id": snapshot.pk, "project": project.slug, "kind": kind, "content_hash": snapshot.content_hash,
                     "rows": snapshot.row_count, "files": snapshot_files(snapshot), "options": options},
                    indent=2,
                )
            )
    except IntegrityError:
        # Another request froze the same content at the same moment: theirs is ours.
        existing = DatasetSnapshot.objects.get(project=project, kind=kind, content_hash=written.content_hash)
        _ensure_files(existing, written)
        return existing
    return snapshot

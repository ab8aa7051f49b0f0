"""Labelled rows for moderation training: the platform's JSONL and the public corpus (training/moderation_corpus/).

Two row shapes come in and one goes out:

- platform rows (a moderation snapshot, a folder's ``data.jsonl``): ``{"text", "categories": [names]}``;
  every category not listed is a known 0 (a reviewer looked at the whole text);
- corpus rows (``train.jsonl.gz``/``dev.jsonl.gz``, see the corpus' PROVENANCE.md):
  ``{"text", "categories": {name: 1 | 0 | null}}`` where ``null`` means the source says nothing about
  that category: it is masked out of the loss and the figures, never read as 0.

``label_arrays`` turns either into ``(labels, known)`` float matrices; sub-categories raise their parents
when set (a known 1 for "sexual/minors" is a known 1 for "sexual").
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np

from training.errors import TrainingError
from training.moderation_model import PARENTS

CORPUS_DIR = Path(__file__).resolve().parent / "moderation_corpus"


def read_rows(path: str | Path) -> list[dict]:
    """Platform rows from JSONL; a malformed line raises ``TrainingError`` naming the file and line."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingError(f"{path} line {number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) \
                    or not isinstance(row.get("categories", []), list):
                raise TrainingError(f"{path} line {number}: expected {{'text': str, 'categories': [str, ...]}}")
            rows.append({"text": row["text"], "categories": [str(c) for c in row.get("categories", [])],
                         **({"group": str(row["group"])} if row.get("group") is not None else {})})
    return rows


def merge_rows(base: list[dict], new: list[dict]) -> list[dict]:
    """Union by text; the newer label of a text wins (a manager's review overrides the seed set)."""
    merged = {row["text"]: row for row in base}
    merged.update({row["text"]: row for row in new})
    return list(merged.values())


def with_parents(labels: list[str]) -> set[str]:
    out = set(labels)
    out.update(PARENTS[c] for c in labels if c in PARENTS)
    return out


def read_corpus(split: str, corpus_dir: str | Path = CORPUS_DIR) -> list[dict]:
    """Corpus rows of ``split`` ("train" or "dev") with their ``{category: 1|0|None}`` labels."""
    path = Path(corpus_dir) / f"{split}.jsonl.gz"
    if not path.is_file():
        raise TrainingError(f"the moderation corpus has no {path.name} in {corpus_dir}")
    with gzip.open(path, "rt") as f:
        return [{"text": r["text"], "categories": dict(r["categories"]), "source": r.get("source", "")}
                for r in map(json.loads, f)]


def sample_corpus(rows: list[dict], negatives: int, seed: int, *, per_category: int = -1) -> list[dict]:
    """Positive rows (at most ``per_category`` per category, < 0: all) plus ``negatives`` others (< 0: all).

    The cap keeps the corpus' one big category (hate: thousands of tweets and forum posts) from
    swamping the thin ones and the compute budget; a row counts for every category it is positive in.
    """
    rng = random.Random(seed)
    positive = [r for r in rows if any(v == 1 for v in r["categories"].values())]
    other = [r for r in rows if not any(v == 1 for v in r["categories"].values())]
    rng.shuffle(positive)
    rng.shuffle(other)
    if per_category >= 0:
        taken: dict[str, int] = {}
        kept = []
        for row in positive:
            cats = [c for c, v in row["categories"].items() if v == 1]
            if any(taken.get(c, 0) < per_category for c in cats):
                kept.append(row)
                for c in cats:
                    taken[c] = taken.get(c, 0) + 1
        positive = kept
    chosen = positive + (other if negatives < 0 else other[:negatives])
    rng.shuffle(chosen)
    return chosen


def label_arrays(rows: list[dict], categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, known): (rows, categories) float32 matrices; ``known`` is 0 where a label is null."""
    labels = np.zeros((len(rows), len(categories)), dtype=np.float32)
    known = np.ones_like(labels)
    index = {c: j for j, c in enumerate(categories)}
    for i, row in enumerate(rows):
        cats = row["categories"]
        if isinstance(cats, dict):
            for c, v in cats.items():
                if c not in index:
                    continue
                if v is None:
                    known[i, index[c]] = 0.0
                else:
                    labels[i, index[c]] = float(v)
            for c in categories:
                if c not in cats:
                    known[i, index[c]] = 0.0
            for child, parent in PARENTS.items():
                if cats.get(child) == 1 and parent in index:
                    labels[i, index[parent]], known[i, index[parent]] = 1.0, 1.0
        else:
            for c in with_parents(cats):
                if c in index:
                    labels[i, index[c]] = 1.0
    return labels, known

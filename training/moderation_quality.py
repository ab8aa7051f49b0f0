"""Figures of a moderation model on labelled rows: AUPRC, precision and recall per category, nulls masked.

Shared by training (thresholds, the run's dev figures) and bench/moderation_quality.py, so both count
the same way. "any" is the any-category view: a row is positive when any known label is 1, negative
when every label is known and 0 (rows with a null and no positive are left out), and its score is
the highest category score.
"""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, gold: np.ndarray) -> float | None:
    """Area under the precision-recall curve (average precision, as scikit-learn computes it)."""
    gold = gold.astype(bool)
    if not gold.any():
        return None
    order = np.argsort(-scores, kind="mergesort")
    hits = gold[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    # ties share one operating point: take the last index of every distinct score
    distinct = np.r_[np.diff(scores[order]) != 0, True]
    recall_step = np.diff(np.r_[0, tp[distinct]]) / gold.sum()
    return float((precision[distinct] * recall_step).sum())


def any_view(scores: np.ndarray, labels: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, gold) of the rows the any-category view can judge (see module doc)."""
    positive = ((labels > 0) & (known > 0)).any(1)
    all_known_zero = (known > 0).all(1) & ~positive
    keep = positive | all_known_zero
    return scores.max(1)[keep], positive[keep]


def threshold_for(scores: np.ndarray, gold: np.ndarray, *, precision_target: float, low: float = 0.05,
                  high: float = 0.95) -> float:
    """The lowest threshold in [low, high] whose precision reaches the target (most recall); else best F1."""
    gold = gold.astype(bool)
    grid = np.round(np.arange(low, high + 1e-9, 0.01), 3)
    best_f1, best_t, chosen = -1.0, 0.5, None
    for t in grid:
        pred = scores >= t
        tp = int((pred & gold).sum())
        fp = int((pred & ~gold).sum())
        fn = int((~pred & gold).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        if chosen is None and tp and precision >= precision_target:
            chosen = float(t)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best_f1:
            best_f1, best_t = f1, float(t)
    return chosen if chosen is not None else best_t


def figures(probs: np.ndarray, labels: np.ndarray, known: np.ndarray, categories: list[str],
            thresholds: dict[str, float] | None = None) -> dict:
    """Per category (and "any"): AUPRC, precision/recall at the threshold, positives, rows judged.

    ``probs`` are the combined probabilities; a category flags at ``thresholds[c]`` (0.5 when absent).
    """
    thresholds = thresholds or {}
    out = {}
    flagged = np.zeros_like(probs, dtype=bool)
    for j, cat in enumerate(categories):
        rows = known[:, j] > 0
        gold = labels[rows, j] > 0
        flagged[:, j] = probs[:, j] >= thresholds.get(cat, 0.5)
        out[cat] = _at(probs[rows, j], flagged[rows, j], gold)
    score, gold = any_view(probs, labels, known)
    flag_any, _ = any_view(flagged.astype(np.float32), labels, known)
    out["any"] = _at(score, flag_any > 0, gold)
    return out


def _at(score: np.ndarray, pred: np.ndarray, gold: np.ndarray) -> dict:
    tp, fp, fn = int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())
    ap = average_precision(score, gold) if len(score) else None
    return {"auprc": round(ap, 4) if ap is not None else None,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "positives": int(gold.sum()), "rows": len(gold)}

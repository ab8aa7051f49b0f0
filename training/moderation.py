"""Training stage of the moderation classifier (serving/moderation.py): labelled texts in, a model folder out.

``train_moderation(data_path, out_dir, config)`` reads JSONL rows ``{"text": str, "categories": [...]}``
(an empty list means benign), normalises every text with the same ``normalize`` the server uses,
holds out ``eval_fraction`` of the rows (stratified by first category), fits one logistic regression
per category over hashed n-grams (full-batch Adam on an ``EmbeddingBag``: seconds on one core),
picks each category's threshold on the held-out rows (best F1, clipped to a sane range), reports
held-out precision/recall/F1 per category of the whole pipeline (classifier + lexicon), then refits
on all rows and writes a folder ``serving.moderation.load_moderator`` opens.

``base_dir`` is an earlier moderation folder (the parent version): its training rows (``data.jsonl``,
kept in every folder) are merged under the new ones (a new label for the same text wins) and its
lexicon is kept, so a few hundred reviewed chat events refine the shipped model instead of
replacing it. Weights are refitted from scratch on the union: the problem is convex and small.
Categories outside the standard eight (a project's own) are learned like the others.

``python -m training.moderation DATA OUT`` trains from the command line.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from serving.moderation import (
    CATEGORIES,
    DEFAULT_LEXICON,
    PARENTS,
    HashedClassifier,
    Moderator,
    hashed_features,
    normalize,
    read_config,
)
from training.errors import TrainingError
from training.reporting import NullReporter, Reporter, TrainingDiverged


@dataclass
class ModerationTrainConfig:
    epochs: int = 80
    learning_rate: float = 0.05
    weight_decay: float = 1e-6
    n_features: int = 65536
    eval_fraction: float = 0.2
    join_augment: bool = True  # add a copy of each row with two words run together ("k i l l y o u")
    dropout_copies: int = 4  # copies of each row with words dropped, so no single phrasing carries a label
    word_dropout: float = 0.25
    refit_on_all: bool = True
    min_threshold: float = 0.2
    max_threshold: float = 0.8
    categories: list[str] = field(default_factory=list)  # empty: the standard eight plus any in the data
    seed: int = 0


def read_rows(path: str | Path) -> list[dict]:
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row.get("text"), str) or not isinstance(row.get("categories", []), list):
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


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Held-out rows, stratified by first category; rows sharing a ``group`` stay on one side.

    A group is whatever makes rows near-duplicates (the template a row came from, the conversation
    an event came from): holding out whole groups makes thresholds and figures reflect new phrasings.
    """
    units: dict[str, list[dict]] = {}
    for row in rows:
        units.setdefault(str(row.get("group") or "text:" + row["text"]), []).append(row)
    strata: dict[str, list[list[dict]]] = {}
    for unit in units.values():
        strata.setdefault(min(unit[0]["categories"], default=""), []).append(unit)
    rng = random.Random(seed)
    train, held = [], []
    for key in sorted(strata):
        group = strata[key]
        rng.shuffle(group)
        target = round(sum(map(len, group)) * fraction) if len(group) >= 3 else 0
        taken = 0
        for unit in group:
            (held if taken < target else train).extend(unit)
            taken += len(unit) if taken < target else 0
    return train, held


def word_dropout(norm: str, rng: random.Random, p: float) -> str | None:
    words = norm.split()
    kept = [w for w in words if rng.random() >= p]
    return " ".join(kept) if 2 <= len(kept) < len(words) else None


def joined_variant(norm: str, rng: random.Random) -> str | None:
    words = norm.split()
    if len(words) < 2:
        return None
    i = rng.randrange(len(words) - 1)
    return " ".join([*words[:i], words[i] + words[i + 1], *words[i + 2:]])


def featurize(texts: list[str], n_features: int):
    idx, vals, offsets = [], [], [0]
    for text in texts:
        i, v = hashed_features(text, n_features)
        idx.append(i)
        vals.append(v)
        offsets.append(offsets[-1] + len(i))
    return (torch.from_numpy(np.concatenate(idx)).long(), torch.from_numpy(np.concatenate(vals)).float(),
            torch.tensor(offsets[:-1], dtype=torch.long))


def fit(norms: list[str], labels: np.ndarray, config: ModerationTrainConfig, reporter: Reporter,
        *, step0: int = 0, total: int | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Full-batch logistic regression; returns (weight (D, C), bias (C,), final loss)."""
    torch.manual_seed(config.seed)
    idx, vals, offsets = featurize(norms, config.n_features)
    y = torch.from_numpy(labels).float()
    n_cat = y.shape[1]
    bag = torch.nn.EmbeddingBag(config.n_features, n_cat, mode="sum")
    torch.nn.init.zeros_(bag.weight)
    pos = y.sum(0)
    bias = torch.nn.Parameter(torch.log((pos + 1) / (len(y) - pos + 1)))
    pos_weight = torch.sqrt((len(y) - pos + 1) / (pos + 1)).clamp(1.0, 8.0)
    optimizer = torch.optim.Adam([bag.weight, bias], lr=config.learning_rate)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    loss_value = float("nan")
    for epoch in range(config.epochs):
        optimizer.zero_grad()
        logits = bag(idx, offsets, per_sample_weights=vals) + bias
        loss = loss_fn(logits, y) + config.weight_decay * bag.weight.pow(2).sum()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"moderation loss became {loss_value} at step {step0 + epoch + 1}")
        loss.backward()
        optimizer.step()
        reporter.progress(step0 + epoch + 1, total or config.epochs, {"loss": loss_value})
    return bag.weight.detach().numpy().copy(), bias.detach().numpy().copy(), loss_value


def choose_thresholds(probs: np.ndarray, labels: np.ndarray, categories: list[str],
                      config: ModerationTrainConfig) -> dict[str, float]:
    thresholds = {}
    grid = np.round(np.arange(config.min_threshold, config.max_threshold + 1e-9, 0.025), 3)
    for j, cat in enumerate(categories):
        if labels[:, j].sum() == 0:
            thresholds[cat] = 0.5
            continue
        best = max(grid, key=lambda t: (f1(*counts(probs[:, j] >= t, labels[:, j] > 0)), -abs(t - 0.5)))
        thresholds[cat] = float(best)
    return thresholds


def counts(pred: np.ndarray, gold: np.ndarray) -> tuple[int, int, int]:
    return int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def evaluate(moderator: Moderator, rows: list[dict], categories: list[str]) -> dict:
    """Per-category and any-flag precision/recall/F1 of the whole pipeline on labelled rows."""
    preds, golds = [], []
    for row in rows:
        result = moderator._run(row["text"])
        preds.append([result.categories.get(c, False) for c in categories] + [result.flagged])
        gold = with_parents(row["categories"])
        golds.append([c in gold for c in categories] + [bool(gold)])
    pred, gold = np.array(preds, dtype=bool).reshape(-1, len(categories) + 1), np.array(
        golds, dtype=bool).reshape(-1, len(categories) + 1)
    report = {}
    for j, cat in enumerate([*categories, "flagged"]):
        tp, fp, fn = counts(pred[:, j], gold[:, j])
        report[cat] = {"precision": round(tp / (tp + fp), 4) if tp + fp else None,
                       "recall": round(tp / (tp + fn), 4) if tp + fn else None,
                       "f1": round(f1(tp, fp, fn), 4), "support": int(gold[:, j].sum())}
    return report


def label_matrix(rows: list[dict], categories: list[str]) -> np.ndarray:
    return np.array([[c in with_parents(r["categories"]) for c in categories] for r in rows],
                    dtype=np.float32).reshape(len(rows), len(categories))


def training_set(rows: list[dict], categories: list[str], config: ModerationTrainConfig):
    rng = random.Random(config.seed)
    norms, labelled = [], []
    for row in rows:
        norm = normalize(row["text"])
        norms.append(norm)
        labelled.append(row)
        variants = [joined_variant(norm, rng) if config.join_augment else None]
        variants += [word_dropout(norm, rng, config.word_dropout) for _ in range(config.dropout_copies)]
        for variant in variants:
            if variant:
                norms.append(variant)
                labelled.append(row)
    return norms, label_matrix(labelled, categories)


def train_moderation(data_path: str | Path, out_dir: str | Path, config: ModerationTrainConfig | None = None,
                     reporter: Reporter = NullReporter(), *, base_dir: str | Path | None = None) -> dict:
    config = config or ModerationTrainConfig()
    if config.n_features & (config.n_features - 1):
        raise TrainingError("n_features must be a power of two")
    rows = read_rows(data_path)
    lexicon = DEFAULT_LEXICON
    if base_dir is not None:
        try:
            base_config = read_config(base_dir)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"the parent version is not a moderation model: {exc}") from exc
        lexicon = base_config.get("lexicon", DEFAULT_LEXICON)
        base_data = Path(base_dir) / "data.jsonl"
        if base_data.is_file():
            rows = merge_rows(read_rows(base_data), rows)
    rows = [r for r in rows if r["text"].strip()]
    if len(rows) < 4:
        raise TrainingError(f"a moderation run needs labelled texts; {data_path} has {len(rows)}")
    seen = sorted({c for r in rows for c in with_parents(r["categories"])} - set(CATEGORIES))
    categories = list(config.categories) or [*CATEGORIES, *seen]
    train, held = split_rows(rows, config.eval_fraction, config.seed)
    total = config.epochs * (2 if config.refit_on_all and held else 1)

    norms, labels = training_set(train, categories, config)
    weight, bias, train_loss = fit(norms, labels, config, reporter, total=total)
    classifier = HashedClassifier(categories, weight, bias)
    thresholds = {c: 0.5 for c in categories}
    report: dict = {}
    if held:
        held_probs = np.stack([classifier.probabilities(normalize(r["text"])) for r in held])
        thresholds = choose_thresholds(held_probs, label_matrix(held, categories), categories, config)
        tuned = HashedClassifier(categories, weight, bias, thresholds)
        report = evaluate(Moderator(tuned, lexicon=lexicon, timeout_ms=None), held, categories)
    if config.refit_on_all and held:
        norms, labels = training_set(rows, categories, config)
        weight, bias, train_loss = fit(norms, labels, config, reporter, step0=config.epochs, total=total)

    final = HashedClassifier(categories, weight, bias, thresholds)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "data.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    f1s = [report[c]["f1"] for c in categories if report.get(c, {}).get("support")]
    result = {
        "rows": len(rows), "rows_train": len(train), "rows_eval": len(held), "steps": total,
        "train_loss": train_loss, "categories": categories, "thresholds": thresholds,
        "eval_macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else None,
        **{f"eval_flagged_{k}": report.get("flagged", {}).get(k) for k in ("precision", "recall", "f1")},
        "per_category": report,
    }
    final.save(out_dir, lexicon=lexicon, extra={"training": asdict(config), "metrics": result})
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Train the moderation classifier from labelled JSONL.")
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--base", default=None, help="an earlier moderation folder to merge")
    parser.add_argument("--epochs", type=int, default=ModerationTrainConfig.epochs)
    args = parser.parse_args(argv)
    result = train_moderation(args.data, args.out, ModerationTrainConfig(epochs=args.epochs), base_dir=args.base)
    print(json.dumps({k: v for k, v in result.items() if k != "per_category"}, indent=1))
    for cat, m in result["per_category"].items():
        print(f"{cat:18s} P={m['precision']} R={m['recall']} F1={m['f1']} n={m['support']}")


if __name__ == "__main__":
    main()

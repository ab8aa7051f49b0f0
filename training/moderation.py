"""Training stage of the moderation model (training/moderation_model.py): labelled texts in, a model folder out.

``train_moderation(data_path, out_dir, config, reporter, base_dir=None)``:

1. Rows: the platform's labelled texts (``data_path``: the project's reviewed moderation events, JSONL
   ``{"text", "categories": [...]}``), merged over the parent folder's ``data.jsonl`` (a newer label
   for a text wins), plus ``corpus_negatives`` negatives and every positive of the public corpus'
   train split (training/moderation_corpus/, nulls masked), plus ``fragment_negatives`` benign short
   prefixes (training/moderation_fragments.py: what the stream checks first), plus ``opener_rows`` corpus
   rows behind an assistant's opener (training/moderation_openers.py: harm after "Sure, here it is:").
   Every text is normalised as the server does.
2. Dev: the corpus' dev split (``dev_rows`` of it, every positive kept) plus ``eval_fraction`` of the
   platform rows held out by group.
3. The n-gram classifier: one logistic regression per category over hashed n-grams (full-batch Adam on
   sparse feature matrices, null-masked, positives up-weighted).
4. The encoder classifier: the parent's encoder (or, without a parent, ``encoder``: the package's
   all-MiniLM-L6-v2 cut to ``encoder_layers`` layers, or a tiny one for tests) with a multi-label head
   trained on its pooled vectors as the server computes them (``runtime``, int8; null-masked,
   class-balanced; started from the parent's head); with ``finetune_layers`` the top layers are then
   trained together with the head (training/moderation_finetune.py).
5. Per category, on dev: the encoder's share of the logit (``WEIGHT_GRID``, best average precision) and
   the threshold (highest recall at ``precision_target``; best F1 where the target is out of reach).
6. Figures: per-category dev AUPRC / precision / recall of the new model and, on the same rows, of
   the parent; the run page shows them side by side.

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

from training.errors import TrainingError
from training.moderation_data import (
    CORPUS_DIR,
    label_arrays,
    merge_rows,
    read_corpus,
    read_rows,
    sample_corpus,
    with_parents,
)
from training.moderation_fragments import fragment_rows
from training.moderation_model import (
    CATEGORIES,
    DEFAULT_LEXICON,
    HashedClassifier,
    ModerationModel,
    hashed_features,
    load_model,
)
from training.moderation_openers import opener_rows
from training.moderation_quality import average_precision, figures, threshold_for
from training.normalize import normalize
from training.reporting import NullReporter, Reporter, TrainingDiverged

__all__ = ["ModerationTrainConfig", "merge_rows", "read_rows", "split_rows", "train_moderation", "with_parents"]

WEIGHT_GRID = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)
FINETUNE_BATCH = 32


@dataclass
class ModerationTrainConfig:
    epochs: int = 80  # n-gram classifier (full batch)
    learning_rate: float = 0.05
    weight_decay: float = 1e-6
    n_features: int = 65536
    eval_fraction: float = 0.2  # of the platform rows
    join_augment: bool = True  # add a copy of each row with two words run together ("k i l l y o u")
    dropout_copies: int = 1  # copies of each row with words dropped, so no single phrasing carries a label
    word_dropout: float = 0.25
    corpus: bool = True  # add the public corpus (training/moderation_corpus/)
    corpus_negatives: int = 4000  # corpus rows without a positive label to add
    corpus_positives: int = 1500  # at most this many positive rows per category (the thin ones have fewer)
    fragment_negatives: int = 4000  # benign 1-8 word prefixes (training/moderation_fragments.py), with the corpus
    opener_rows: int = 0  # corpus rows behind an assistant's opener, labels kept (training/moderation_openers.py)
    ngram_full_corpus: bool = True  # the n-gram classifier (cheap) learns from every corpus train row
    dev_rows: int = 1500  # corpus dev rows to measure on (every positive kept; < 0: the whole split)
    encoder: str = "package"  # without a parent: "package" (all-MiniLM-L6-v2), "tiny" (tests) or "none"
    encoder_layers: int = 3
    encoder_max_length: int = 64  # tokens per window; longer texts are read in overlapping windows
    quantize: str = "int8"  # how the server runs the encoder: "int8" (dynamic, linear layers) or "" (float)
    head_epochs: int = 300
    head_learning_rate: float = 0.01
    runtime: str = "onnx"  # what serves the encoder ("onnx" or "torch"); the head learns on its int8 vectors
    finetune_layers: int = 0  # top encoder layers trained with the head (0: head on frozen features)
    finetune_epochs: int = 1
    finetune_learning_rate: float = 3e-5
    precision_target: float = 0.8
    min_threshold: float = 0.05
    max_threshold: float = 0.95
    categories: list[str] = field(default_factory=list)  # empty: the standard eight plus any in the data
    seed: int = 0


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Held-out rows, stratified by first category; rows sharing a ``group`` stay on one side."""
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


# --- the n-gram classifier ---

def augmented(norms: list[str], config: ModerationTrainConfig) -> tuple[list[str], list[int]]:
    """Texts plus word-dropped and words-joined copies; the second list maps each back to its row."""
    rng = random.Random(config.seed)
    out, origin = [], []
    for i, norm in enumerate(norms):
        words = norm.split()
        variants = [norm]
        if config.join_augment and len(words) >= 2:
            j = rng.randrange(len(words) - 1)
            variants.append(" ".join([*words[:j], words[j] + words[j + 1], *words[j + 2:]]))
        for _ in range(config.dropout_copies):
            kept = [w for w in words if rng.random() >= config.word_dropout]
            if 2 <= len(kept) < len(words):
                variants.append(" ".join(kept))
        out.extend(variants)
        origin.extend([i] * len(variants))
    return out, origin


def fit_ngram(norms: list[str], labels: np.ndarray, known: np.ndarray, config: ModerationTrainConfig,
              reporter: Reporter) -> tuple[np.ndarray, np.ndarray, float]:
    """Full-batch, null-masked logistic regression per category over hashed n-grams."""
    torch.manual_seed(config.seed)
    texts, origin = augmented(norms, config)
    idx, vals, offsets = [], [], [0]
    for text in texts:
        i, v = hashed_features(text, config.n_features)
        idx.append(i)
        vals.append(v)
        offsets.append(offsets[-1] + len(i))
    rows = np.repeat(np.arange(len(texts)), np.diff(offsets))
    cols, values = np.concatenate(idx), torch.from_numpy(np.concatenate(vals)).float()
    shape = (len(texts), config.n_features)
    # Sparse matrices, both ways round: X @ W for the logits, X^T @ dlogits for W's gradient (an
    # EmbeddingBag's backward sorts every index each step: ten times slower on the corpus).
    x = torch.sparse_coo_tensor(np.stack([rows, cols]), values, shape).coalesce().to_sparse_csr()
    xt = torch.sparse_coo_tensor(np.stack([cols, rows]), values, shape[::-1]).coalesce().to_sparse_csr()
    y = torch.from_numpy(labels[origin])
    mask = torch.from_numpy(known[origin])
    n_cat = y.shape[1]
    weight = torch.nn.Parameter(torch.zeros(config.n_features, n_cat))
    pos, neg = (y * mask).sum(0), ((1 - y) * mask).sum(0)
    bias = torch.nn.Parameter(torch.log((pos + 1) / (neg + 1)))
    pos_weight = torch.sqrt((neg + 1) / (pos + 1)).clamp(1.0, 8.0)
    optimizer = torch.optim.Adam([weight, bias], lr=config.learning_rate)
    loss_value = float("nan")
    for epoch in range(config.epochs):
        optimizer.zero_grad()
        xw = (x @ weight.detach()).requires_grad_(True)
        loss = masked_bce(xw + bias, y, mask, pos_weight) + config.weight_decay * weight.pow(2).sum()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"moderation loss became {loss_value} at step {epoch + 1}")
        loss.backward()
        weight.grad += xt @ xw.grad
        optimizer.step()
        reporter.progress(epoch + 1, config.epochs + config.head_epochs, {"loss": loss_value})
    return weight.detach().numpy().copy(), bias.detach().numpy().copy(), loss_value


def masked_bce(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, pos_weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over known labels only, positives weighted per category."""
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight, reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def calibrate(ngram_logits: np.ndarray, encoder_logits: np.ndarray | None, labels: np.ndarray, known: np.ndarray,
              categories: list[str], config: ModerationTrainConfig) -> tuple[dict, dict]:
    """Per category: the encoder's logit share (best dev AUPRC) and the threshold (see ``threshold_for``)."""
    weights, thresholds = {}, {}
    for j, cat in enumerate(categories):
        rows = known[:, j] > 0
        gold = labels[rows, j] > 0
        grid = WEIGHT_GRID if encoder_logits is not None else (0.0,)
        if not gold.any() or gold.all():
            weights[cat], thresholds[cat] = (0.5 if encoder_logits is not None else 0.0), 0.5
            continue

        def combined(w: float, rows=rows, j=j) -> np.ndarray:
            z = ngram_logits[rows, j] if encoder_logits is None else \
                (1 - w) * ngram_logits[rows, j] + w * encoder_logits[rows, j]
            return 1 / (1 + np.exp(-np.clip(z, -30, 30)))

        best = max(grid, key=lambda w: (average_precision(combined(w), gold) or 0.0, -abs(w - 0.5)))
        weights[cat] = float(best)
        thresholds[cat] = threshold_for(combined(best), gold, precision_target=config.precision_target,
                                        low=config.min_threshold, high=config.max_threshold)
    return weights, thresholds


def model_scores(model: ModerationModel, norms: list[str], pooled: torch.Tensor | None) -> np.ndarray:
    """(rows, categories) shifted scores of ``model`` (0.5 = flag), from precomputed pooled vectors if given."""
    out = np.zeros((len(norms), len(model.categories)), dtype=np.float32)
    encoder = model.encoder
    for i, norm in enumerate(norms):
        if encoder is not None and pooled is not None:  # skip re-running the encoder per row
            z_enc = (pooled[i] @ encoder.weight.T + encoder.bias).numpy()
            model.encoder = _Fixed(z_enc)
        try:
            scores = model.scores(norm)
        finally:
            model.encoder = encoder
        out[i] = [scores[c] for c in model.categories]
    return out


class _Fixed:
    def __init__(self, z: np.ndarray) -> None:
        self.z = z

    def logits(self, norm: str) -> np.ndarray:
        return self.z


def build_encoder(base: ModerationModel | None, categories: list[str], norms: list[str],
                  config: ModerationTrainConfig):
    """(Encoder, parent head or None, source) for this run: the parent's encoder when it has one."""
    from training.sentence_encoder import load_encoder, tiny_encoder

    if base is not None and base.encoder is not None:
        head = base.encoder
        init = None
        if list(head.categories) == categories:
            init = (head.weight.clone(), head.bias.clone())
        return head.encoder, init, head.source
    if config.encoder == "none":
        return None, None, ""
    if config.encoder == "tiny":
        vocab = sorted({w for n in norms for w in n.split()})
        return tiny_encoder(vocab=vocab), None, "folder"
    if config.encoder == "package":
        try:
            return load_encoder(num_layers=config.encoder_layers, max_length=config.encoder_max_length), None, "package"
        except ImportError as exc:
            raise TrainingError(str(exc)) from exc
    raise TrainingError(f"encoder must be package, tiny or none, not {config.encoder!r}")


def total_steps(config: ModerationTrainConfig, rows: int) -> int:
    """Progress steps of a run with an encoder: n-gram epochs, head epochs, fine-tuning batches."""
    tune = config.finetune_epochs * math.ceil(rows / FINETUNE_BATCH) if config.finetune_layers else 0
    return config.epochs + config.head_epochs + tune


def train_moderation(data_path: str | Path, out_dir: str | Path, config: ModerationTrainConfig | None = None,
                     reporter: Reporter = NullReporter(), *, base_dir: str | Path | None = None,
                     corpus_dir: str | Path = CORPUS_DIR, embedding_cache: dict | None = None) -> dict:
    config = config or ModerationTrainConfig()
    if config.n_features & (config.n_features - 1):
        raise TrainingError("n_features must be a power of two")
    if config.runtime not in ("onnx", "torch"):
        raise TrainingError(f"runtime must be onnx or torch, not {config.runtime!r}")
    rows = read_rows(data_path)
    base, lexicon = None, DEFAULT_LEXICON
    if base_dir is not None:
        try:
            base, _ = load_model(base_dir)
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise TrainingError(f"the parent version is not a moderation model: {exc}") from exc
        lexicon = base.lexicon
        base_data = Path(base_dir) / "data.jsonl"
        if base_data.is_file():
            rows = merge_rows(read_rows(base_data), rows)
    rows = [r for r in rows if r["text"].strip()]
    corpus_all, corpus_train, corpus_dev = [], [], []
    if config.corpus:
        corpus_all = read_corpus("train", corpus_dir)
        corpus_train = sample_corpus(corpus_all, config.corpus_negatives, config.seed,
                                     per_category=config.corpus_positives)
        dev = read_corpus("dev", corpus_dir)
        corpus_dev = dev if config.dev_rows < 0 else sample_corpus(dev, max(0, config.dev_rows - 150), config.seed)
    if len(rows) + len(corpus_train) < 4:
        raise TrainingError(f"a moderation run needs labelled texts; {data_path} has {len(rows)}")
    seen = sorted({c for r in rows for c in with_parents(r["categories"])} - set(CATEGORIES))
    categories = list(config.categories) or [*CATEGORIES, *seen]
    train_rows, held = split_rows(rows, config.eval_fraction, config.seed)
    fragments = fragment_rows(corpus_all, categories, config.fragment_negatives, config.seed) if config.corpus else []
    fragments += opener_rows(corpus_all, categories, config.opener_rows, config.seed) if config.corpus else []
    train_all, dev_all = corpus_train + fragments + train_rows, corpus_dev + held
    norms = [normalize(r["text"]) for r in train_all]
    dev_norms = [normalize(r["text"]) for r in dev_all]
    labels, known = label_arrays(train_all, categories)
    dev_labels, dev_known = label_arrays(dev_all, categories)

    ngram_rows = (corpus_all if config.ngram_full_corpus else corpus_train) + fragments + train_rows
    weight, bias, ngram_loss = fit_ngram([normalize(r["text"]) for r in ngram_rows],
                                         *label_arrays(ngram_rows, categories), config, reporter)
    ngram = HashedClassifier(categories, weight, bias)
    encoder, init, source = build_encoder(base, categories, norms, config)
    head, head_loss, dev_pooled = None, None, None
    if encoder is not None:
        from training.moderation_encoder import EncoderClassifier
        from training.moderation_finetune import finetune_top, fit_head, lower_states, served_features

        runtime = config.runtime if source == "package" else "torch"  # tiny test encoders: no export
        tuned = dict(base.encoder.tuned) if base is not None and base.encoder is not None else {}
        cache = {} if embedding_cache is None else embedding_cache
        x = served_features(encoder, norms, runtime=runtime, quantize=config.quantize, cache=cache)
        w, b, head_loss = fit_head(x, labels, known, config, reporter, init=init, step0=config.epochs)
        if config.finetune_layers:
            states = lower_states(encoder, norms, config.finetune_layers)
            w, b, new, head_loss = finetune_top(
                encoder, (w, b), states, labels, known, layers=config.finetune_layers,
                epochs=config.finetune_epochs, lr_layers=config.finetune_learning_rate, seed=config.seed,
                reporter=reporter, step0=config.epochs + config.head_epochs, total_steps=total_steps(config, len(norms)))
            tuned.update(new)
            cache = {}  # the encoder changed: its old vectors are stale
        head = EncoderClassifier(encoder, w, b, categories, source=source, quantize=config.quantize,
                                 runtime=runtime, tuned=tuned)
        dev_pooled = served_features(encoder, dev_norms, runtime=runtime, quantize=config.quantize, cache=cache)
    ngram_dev = np.stack([ngram.logits(n) for n in dev_norms]) if dev_norms else np.zeros((0, len(categories)))
    enc_dev = (dev_pooled @ head.weight.T + head.bias).numpy() if head is not None and dev_norms else None
    weights, thresholds = calibrate(ngram_dev, enc_dev, dev_labels, dev_known, categories, config)
    model = ModerationModel(ngram, encoder=head, encoder_weight=weights, thresholds=thresholds, lexicon=lexicon)

    report = figures(model_scores(model, dev_norms, dev_pooled), dev_labels, dev_known, categories) if dev_norms else {}
    parent_report = {}
    if base is not None and dev_norms:
        parent_report = figures(model_scores(base, dev_norms, None), *label_arrays(dev_all, list(base.categories)),
                                list(base.categories))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "data.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    per_category = {c: {**report.get(c, {}), "parent_auprc": parent_report.get(c, {}).get("auprc")}
                    for c in [*categories, "any"] if c in report}
    result = {
        "rows": len(rows), "rows_train": len(train_all), "rows_ngram": len(ngram_rows), "rows_eval": len(dev_all),
        "steps": total_steps(config, len(norms)) if encoder is not None else config.epochs,
        "train_loss": ngram_loss, "head_loss": head_loss, "categories": categories, "thresholds": thresholds,
        "encoder_weight": weights, "dev_auprc": report.get("any", {}).get("auprc"),
        "parent_dev_auprc": parent_report.get("any", {}).get("auprc"),
        "per_category": per_category,
    }
    model.save(out_dir, extra={"training": asdict(config), "metrics": result})
    return result


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Train the moderation model from labelled JSONL and the corpus.")
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--base", default=None, help="an earlier moderation folder to start from")
    parser.add_argument("--epochs", type=int, default=ModerationTrainConfig.epochs)
    args = parser.parse_args(argv)
    result = train_moderation(args.data, args.out, ModerationTrainConfig(epochs=args.epochs), base_dir=args.base)
    print(json.dumps({k: v for k, v in result.items() if k != "per_category"}, indent=1))
    for cat, m in result["per_category"].items():
        print(f"{cat:18s} AUPRC={m['auprc']} P={m['precision']} R={m['recall']} n={m['positives']}"
              f" parent AUPRC={m['parent_auprc']}")


if __name__ == "__main__":
    main()

"""Moderation quality and speed on the corpus' dev split: the old n-gram model, the encoder, the ensemble, a peer.

For every model, per category and "any category" (see training/moderation_quality.py for how nulls
are masked): AUPRC, and precision/recall at the model's own thresholds.

- ``old n-gram``: the model shipped before the encoder (templates-trained), loaded from git
  (``--old REV``, default 64e4ff1, the last commit before the encoder) or ``--old-folder``;
- ``n-gram``, ``encoder``: the two halves of the shipped ensemble alone (AUPRC only: their
  thresholds were never chosen alone);
- ``ensemble``: the shipped model (serving/moderation_model/ or ``--folder``), lexicon included;
- ``alt-profanity-check``: the peer (PyPI, not a dependency: ``pip install alt-profanity-check``
  into a folder and pass ``--peer-path`` or have it importable); one toxicity score used for every
  category, flagged at 0.5. Skipped with a message when it is not installed.

Then latency p50/p99 of ``Moderator`` (encoder logits are memoised for the quality pass only, not
here) on dev messages of at most 128 tokens at 1 and 2 torch threads, and obfuscation recall: of the dev positives the ensemble flags, the share still flagged
after each evasion (zero-width, homoglyph, tag characters, leetspeak, spaced letters).

Run: .venv/bin/python bench/moderation_quality.py [--limit N] [--peer-path DIR]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.moderation import DEFAULT_FOLDER, Moderator  # noqa: E402
from training.moderation_data import label_arrays, read_corpus  # noqa: E402
from training.moderation_model import CATEGORIES, load_model  # noqa: E402
from training.moderation_quality import figures  # noqa: E402
from training.normalize import normalize  # noqa: E402


def old_folder(rev: str, tmp: Path) -> Path:
    out = tmp / "old"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:serving/moderation_model/{name}"],
                              capture_output=True, check=True).stdout
        (out / name).write_bytes(blob)
    return out


def scores_of(model, norms: list[str]) -> np.ndarray:
    return np.array([[model.scores(n)[c] for c in CATEGORIES] for n in norms], dtype=np.float32)


def half(model, norms: list[str], which: str) -> np.ndarray:
    """Raw probabilities of one half of the ensemble (``ngram`` or ``encoder``)."""
    part = model.ngram if which == "ngram" else model.encoder
    z = np.stack([part.logits(n) for n in norms])
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def peer_scores(texts: list[str], peer_path: str | None) -> np.ndarray | None:
    if peer_path:
        sys.path.insert(0, peer_path)
    try:
        from profanity_check import predict_prob
    except Exception as exc:  # any import failure means: no peer this run
        print(f"alt-profanity-check skipped: {type(exc).__name__}: {exc} "
              "(pip install --target DIR alt-profanity-check; --peer-path DIR)")
        return None
    prob = np.asarray(predict_prob(texts), dtype=np.float32)
    return np.repeat(prob[:, None], len(CATEGORIES), axis=1)


def table(name: str, fig: dict, with_pr: bool) -> None:
    cells = []
    for cat in [*CATEGORIES, "any"]:
        m = fig.get(cat, {})
        if not m.get("positives"):
            continue
        cell = f"{cat}={m['auprc']:.3f}"
        if with_pr:
            cell += f" (P {m['precision'] or 0:.2f} R {m['recall'] or 0:.2f})"
        cells.append(cell)
    print(f"{name:20s} " + "  ".join(cells))


def latency(moderator: Moderator, texts: list[str], threads: int) -> tuple[float, float]:
    import torch

    torch.set_num_threads(threads)
    if moderator.classifier.encoder is not None:
        moderator.classifier.encoder.set_threads(threads)
    for text in texts[:10]:
        moderator._run(text)
    ms = []
    for text in texts:
        start = time.perf_counter()
        moderator._run(text)
        ms.append((time.perf_counter() - start) * 1000)
    ms.sort()
    return ms[len(ms) // 2], ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]


ZW, TAG = "\u200b", "\U000e0041"
HOMOGLYPHS = str.maketrans({"a": "\u0430", "e": "\u0435", "o": "\u043e", "i": "\u0456", "c": "\u0441", "p": "\u0440"})
LEET = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5"})


def _each_word(text: str, fn) -> str:
    return " ".join(fn(w) if len(w) >= 4 else w for w in text.split(" "))


OBFUSCATIONS = {
    "zero-width": lambda t: _each_word(t, lambda w: w[:2] + ZW + w[2:]),
    "homoglyph": lambda t: t.translate(HOMOGLYPHS),
    "tag characters": lambda t: _each_word(t, lambda w: w[:1] + TAG + w[1:]),
    "leetspeak": lambda t: t.translate(LEET),
    "spaced (every letter)": lambda t: "  ".join(" ".join(w) for w in t.split()),
    "spaced (k.i.l.l, long words)": lambda t: _each_word(t, lambda w: ".".join(w) if len(w) >= 5 else w),
    "spaced (k-i-l-l, mixed)": lambda t: _each_word(t, lambda w: "-".join(w) if len(w) % 2 else w),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(DEFAULT_FOLDER))
    parser.add_argument("--old", default="64e4ff1", help="git revision of the old (n-gram only) model")
    parser.add_argument("--old-folder", default=None)
    parser.add_argument("--peer-path", default=None)
    parser.add_argument("--limit", type=int, default=0, help="dev rows (0: all); positives always kept")
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument("--obfuscation-rows", type=int, default=300, help="dev positives to obfuscate")
    args = parser.parse_args()

    rows = read_corpus("dev")
    if args.limit:
        rng = random.Random(0)
        pos = [r for r in rows if 1 in r["categories"].values()]
        other = [r for r in rows if 1 not in r["categories"].values()]
        rows = pos + rng.sample(other, min(len(other), max(0, args.limit - len(pos))))
    texts = [r["text"] for r in rows]
    norms = [normalize(t) for t in texts]
    labels, known = label_arrays(rows, list(CATEGORIES))
    print(f"dev rows: {len(rows)}; positives: "
          + ", ".join(f"{c} {int(((labels[:, j] > 0) & (known[:, j] > 0)).sum())}" for j, c in enumerate(CATEGORIES)))

    model, _ = load_model(args.folder)
    if model.encoder is not None:  # the ensemble and the encoder half read the same encoder logits: run it once
        memo: dict[str, np.ndarray] = {}
        logits = model.encoder.logits
        model.encoder.logits = lambda norm: memo[norm] if norm in memo else memo.setdefault(norm, logits(norm))
    with tempfile.TemporaryDirectory() as tmp:
        old, _ = load_model(args.old_folder or old_folder(args.old, Path(tmp)))
    results = {}
    start = time.perf_counter()
    results["ensemble"] = figures(scores_of(model, norms), labels, known, list(CATEGORIES))
    print(f"(ensemble scored {len(norms)} rows in {time.perf_counter() - start:.0f} s)")
    results["old n-gram"] = figures(scores_of(old, norms), labels, known, list(CATEGORIES))
    results["n-gram (half)"] = figures(half(model, norms, "ngram"), labels, known, list(CATEGORIES))
    if model.encoder is not None:
        results["encoder (half)"] = figures(half(model, norms, "encoder"), labels, known, list(CATEGORIES))
    peer = peer_scores(texts, args.peer_path)
    if peer is not None:
        results["alt-profanity-check"] = figures(peer, labels, known, list(CATEGORIES))
    print("\nAUPRC per category (precision/recall at the model's thresholds)")
    for name, fig in results.items():
        table(name, fig, with_pr="half" not in name)

    if model.encoder is not None:
        model.encoder.logits = logits  # time the real thing
    moderator = Moderator(model, timeout_ms=None)
    tok = model.encoder.encoder.tokenize if model.encoder is not None else None
    short = [t for t in texts if tok is None or int(tok([t], max_length=100_000)["attention_mask"].sum()) <= 128]
    sample = random.Random(1).sample(short, min(len(short), args.latency_messages))
    print(f"\nlatency per message (<= 128 tokens, Moderator without the thread pool, encoder "
          f"{getattr(model.encoder, 'runtime', 'none')}; bench/moderation_latency.py compares runtimes)")
    for threads in (1, 2):
        p50, p99 = latency(moderator, sample, threads)
        print(f"  {threads} thread(s): p50 {p50:.2f} ms  p99 {p99:.2f} ms")

    positives = [t for t, lab in zip(texts, labels, strict=True) if lab.any()]
    positives = random.Random(2).sample(positives, min(len(positives), args.obfuscation_rows))
    flagged = [t for t in positives if moderator._run(t).flagged]
    print(f"\nobfuscation recall over {len(flagged)} dev positives the ensemble flags (of {len(positives)} sampled)")
    for name, fn in OBFUSCATIONS.items():
        kept = sum(moderator._run(fn(t)).flagged for t in flagged)
        print(f"  {name:30s} {kept / max(1, len(flagged)):.3f}")


if __name__ == "__main__":
    main()

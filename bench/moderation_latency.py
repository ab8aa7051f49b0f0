"""Moderation latency per message (p50/p99) against peers in the same run, and eval-set quality.

Our pipeline (``serving.moderation``: normalize + n-gram and encoder classifiers + lexicon) is timed two
ways: ``inline`` (the work itself) and ``check`` (what the server calls: the same work on the
moderation thread pool under its fail-closed deadline). Peers, on the same messages:

- ``regex``: the lexicon alone as one regular expression over the lower-cased raw text (the
  cheapest possible filter, and blind to every evasion);
- ``transformer``: tokenizer + forward pass of a MiniLM-sized sequence classifier (6 layers,
  hidden 384 by default, random weights: only its latency is measured), built locally from
  ``training.tiny``, the class of model a learned moderation classifier usually is.

Quality (AUPRC, precision/recall on the corpus' dev split) is bench/moderation_quality.py.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/moderation_latency.py [--folder DIR] [--repeat 3]
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.moderation import load_moderator
from training.moderation_data import read_rows
from training.moderation_model import DEFAULT_LEXICON

EVAL = Path(__file__).resolve().parents[1] / "serving" / "moderation_data" / "eval.jsonl"


def timings(fn, texts: list[str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            fn(text)
            out.append((time.perf_counter() - start) * 1000)
    return out


def percentiles(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def transformer_peer(hidden: int, layers: int, tmp: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.tiny import build_tiny_causal_lm

    folder = build_tiny_causal_lm(tmp / "peer", hidden_size=hidden, layers=layers, heads=max(1, hidden // 64))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=8, pad_token_id=tokenizer.pad_token_id, dtype=torch.float32).eval()
    params = sum(p.numel() for p in model.parameters())

    def classify(text: str):
        with torch.inference_mode():
            batch = tokenizer(text, return_tensors="pt", truncation=True, max_length=256)
            return torch.sigmoid(model(**batch).logits)

    return classify, params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", default=None, help="a moderation model folder (default: the shipped one)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-hidden", type=int, default=384)
    parser.add_argument("--peer-layers", type=int, default=6)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    moderator = load_moderator(args.folder, timeout_ms=1000)
    rows = read_rows(EVAL)
    texts = [r["text"] for r in rows]
    long_text = " ".join(texts[:40])
    lexicon = re.compile("|".join(re.escape(p) for ps in DEFAULT_LEXICON.values() for p in ps))

    with tempfile.TemporaryDirectory() as tmp:
        peer, params = transformer_peer(args.peer_hidden, args.peer_layers, Path(tmp))
        for fn in (moderator.check, peer):
            timings(fn, texts[:20], 1)
        results = {
            "ours inline (normalize + classify)": timings(moderator._run, texts, args.repeat),
            "ours check (thread pool + deadline)": timings(moderator.check, texts, args.repeat),
            "regex lexicon baseline": timings(lambda t: lexicon.search(t.lower()), texts, args.repeat),
            f"transformer peer ({params / 1e6:.1f}M params)": timings(peer, texts, args.repeat),
        }
        long_ours = timings(moderator.check, [long_text], 20)
        long_peer = timings(peer, [long_text], 5)

    print(f"{len(texts)} eval messages x {args.repeat}, mean {statistics.mean(map(len, texts)):.0f} chars; "
          f"torch threads={torch.get_num_threads()}")
    print(f"{'pipeline':42s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, ms in results.items():
        p50, p99 = percentiles(ms)
        print(f"{name:42s} {p50:8.3f} {p99:8.3f}")
    ours = percentiles(results["ours check (thread pool + deadline)"])
    peer_ms = percentiles(next(v for k, v in results.items() if k.startswith("transformer")))
    print(f"ratio transformer/ours-check: p50 {peer_ms[0] / ours[0]:.1f}x, p99 {peer_ms[1] / ours[1]:.1f}x")
    print(f"long message ({len(long_text)} chars): ours check p50 {percentiles(long_ours)[0]:.2f} ms, "
          f"transformer p50 {percentiles(long_peer)[0]:.2f} ms (truncated to 256 tokens)")


if __name__ == "__main__":
    main()

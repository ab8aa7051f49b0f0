"""Moderation latency per chat message (p50/p99), torch int8 against ONNX Runtime int8, and where the time goes.

The whole check as the server runs it in-process (``Moderator._run``: normalise + custom categories +
n-gram + encoder + ensemble + lexicon), on dev messages of at most 128 tokens, for each encoder runtime
(``torch``: dynamic int8 linear layers; ``onnx``: ONNX Runtime, per-channel int8 weights) at 1 and 2
threads. Each figure is given twice: wall time, and the thread's CPU time (``time.thread_time``) which
leaves out the time the thread waited for a core: on a shared machine the wall p99 measures the
neighbours, the CPU p99 is closer to what an idle core gives. Then, for the faster runtime, the share of
each stage (normalise, tokenizer, encoder forward, n-gram features + logits, the rest) and the cost of
a long text (read in windows).

Peers in the same run: ``regex`` (the lexicon as one regular expression over the raw text, blind to
every evasion) and a MiniLM-sized 6-layer float transformer classifier (tokenizer + forward, random
weights: only its latency counts), the usual shape of a learned moderation model.

Run: .venv/bin/python bench/moderation_latency.py [--folder DIR] [--messages 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.moderation import DEFAULT_FOLDER, Moderator
from training.moderation_data import read_corpus
from training.moderation_model import DEFAULT_LEXICON, load_model
from training.normalize import normalize


def timings(fn, texts: list[str], repeat: int) -> tuple[list[float], list[float]]:
    """Per call: (wall ms, thread CPU ms)."""
    wall, cpu = [], []
    for _ in range(repeat):
        for text in texts:
            w0, c0 = time.perf_counter(), time.thread_time()
            fn(text)
            cpu.append((time.thread_time() - c0) * 1000)
            wall.append((time.perf_counter() - w0) * 1000)
    return wall, cpu


def pct(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(name: str, wall: list[float], cpu: list[float]) -> str:
    return (f"{name:44s} wall p50 {pct(wall, .5):7.2f} p99 {pct(wall, .99):7.2f}   "
            f"cpu p50 {pct(cpu, .5):7.2f} p99 {pct(cpu, .99):7.2f}")


def transformer_peer(tmp: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.tiny import build_tiny_causal_lm

    folder = build_tiny_causal_lm(tmp / "peer", hidden_size=384, layers=6, heads=6)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=8, pad_token_id=tokenizer.pad_token_id, dtype=torch.float32).eval()

    def classify(text: str):
        with torch.inference_mode():
            return torch.sigmoid(model(**tokenizer(text, return_tensors="pt", truncation=True, max_length=128)).logits)

    return classify


def profile(model, texts: list[str]) -> None:
    """Mean ms per message of each stage of the check (one thread)."""
    enc = model.encoder
    norms = [normalize(t) for t in texts]
    stages = {
        "normalise": (normalize, texts),
        "tokenizer + windows": (lambda n: enc.windows(enc._tokenizer.encode(n).ids), norms),
        "encoder forward (tokenised)": None,
        "n-gram features + logits": (model.ngram.logits, norms),
        "whole model.scores (after normalise)": (model.scores, norms),
    }
    windows = [enc.windows(enc._tokenizer.encode(n).ids) for n in norms]
    out = {}
    for name, spec in stages.items():
        if spec is None:
            start = time.thread_time()
            for ids in windows:
                enc.pooled_ids(ids)
            out[name] = (time.thread_time() - start) * 1000 / len(norms)
            continue
        fn, args = spec
        start = time.thread_time()
        for a in args:
            fn(a)
        out[name] = (time.thread_time() - start) * 1000 / len(args)
    rest = out["whole model.scores (after normalise)"] - out["tokenizer + windows"] - \
        out["encoder forward (tokenised)"] - out["n-gram features + logits"]
    print(f"\nwhere the time goes ({enc.runtime}, 1 thread, mean CPU ms per message)")
    for name, ms in out.items():
        print(f"  {name:40s} {ms:7.3f}")
    print(f"  {'rest (ensemble, lexicon, group threats)':40s} {max(0.0, rest):7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(DEFAULT_FOLDER))
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import torch

    rows = read_corpus("dev")
    models = {rt: load_model(args.folder, runtime=rt)[0] for rt in ("torch", "onnx")}
    enc = models["onnx"].encoder
    if enc is None:
        raise SystemExit(f"{args.folder} has no encoder: nothing to compare")
    short = [r["text"] for r in rows if len(enc._tokenizer.encode(normalize(r["text"])).ids) <= 128]
    texts = random.Random(1).sample(short, min(len(short), args.messages))
    lengths = sorted(len(enc._tokenizer.encode(normalize(t)).ids) for t in texts)
    print(f"{len(texts)} dev messages <= 128 tokens (tokens p50 {pct(lengths, .5)}, p99 {pct(lengths, .99)}) "
          f"x {args.repeat}")
    results = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for runtime, model in models.items():
            model.encoder.set_threads(threads)
            moderator = Moderator(model, timeout_ms=None)
            timings(moderator._run, texts[:20], 1)  # warm up (and build the ONNX file once)
            results[(runtime, threads)] = timings(moderator._run, texts, args.repeat)
            print(line(f"ours, encoder {runtime} int8, {threads} thread(s)", *results[(runtime, threads)]), flush=True)
    torch.set_num_threads(1)
    lexicon = re.compile("|".join(re.escape(p) for ps in DEFAULT_LEXICON.values() for p in ps))
    print(line("peer: regex lexicon", *timings(lambda t: lexicon.search(t.lower()), texts, args.repeat)))
    with tempfile.TemporaryDirectory() as tmp:
        peer = transformer_peer(Path(tmp))
        timings(peer, texts[:10], 1)
        print(line("peer: 6-layer float transformer, 1 thread", *timings(peer, texts, 1)))
    for threads in (1, 2):
        t_cpu = results[("torch", threads)][1]
        o_cpu = results[("onnx", threads)][1]
        print(f"ratio torch/onnx at {threads} thread(s): cpu p50 {pct(t_cpu, .5) / pct(o_cpu, .5):.2f}x, "
              f"p99 {pct(t_cpu, .99) / pct(o_cpu, .99):.2f}x")
    for model in models.values():
        model.encoder.set_threads(1)
    profile(models["onnx"], texts)
    long_text = " ".join(texts[:60])
    n_tokens = len(enc._tokenizer.encode(normalize(long_text)).ids)
    wall, cpu = timings(Moderator(models["onnx"], timeout_ms=None)._run, [long_text], 10)
    print(f"\nlong text ({len(long_text)} chars, {n_tokens} tokens, windows of {enc.encoder.max_length}): "
          f"cpu p50 {pct(cpu, .5):.1f} ms, wall p50 {pct(wall, .5):.1f} ms")


if __name__ == "__main__":
    main()

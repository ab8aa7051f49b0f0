"""Moderation latency per chat message (p50/p99), torch int8 against ONNX Runtime int8, and where the time goes.

The whole check as the server runs it in-process (``Moderator._run``: normalise + custom categories +
n-gram + encoder + ensemble + lexicon), on dev messages of at most 128 tokens, for each encoder runtime
(``torch``: dynamic int8 linear layers; ``onnx``: ONNX Runtime, per-channel int8 weights) at 1 and 2
threads. Each figure is given twice: wall time, and the thread's CPU time (``time.thread_time``) which
leaves out the time the thread waited for a core: on a shared machine the wall p99 measures the
neighbours, the CPU p99 is closer to what an idle core gives. Then, for ONNX at one thread, per
token-length bucket (1-32, 33-96, 97-128 tokens), the mean and p99 of each stage (normalise, custom
categories, tokenizer, encoder forward, n-gram features + logits, lexicon, the rest), and the cost of
a long text (read in windows).

Peers in the same run: ``regex`` (the lexicon as one regular expression over the raw text, blind to
every evasion) and a MiniLM-sized 6-layer float transformer classifier (tokenizer + forward, random
weights: only its latency counts), the usual shape of a learned moderation model.

``--compare`` also times the ONNX path as it was before (ONNX Runtime's SkipLayerNormalization fusion,
spinning pool threads, ``encode_batch``) against the current one, message by message in one run, so the
ratio holds on a loaded machine.

Run (idle, as judged): OMP_NUM_THREADS=1 .venv/bin/python bench/moderation_latency.py --messages 200 --repeat 2
[--folder DIR] [--compare] [--no-peers]
"""

from __future__ import annotations

import argparse
import os
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


BUCKETS = ((1, 32), (33, 96), (97, 128))


def n_tokens(enc, text: str) -> int:
    return len(enc._tokenizer.encode(normalize(text)).ids)


def stage_split(model, texts: list[str], repeat: int) -> None:
    """Per token-length bucket, mean and p99 CPU ms of each stage of ``Moderator._run`` (one thread)."""
    from training.moderation_model import group_threat

    enc = model.encoder
    moderator = Moderator(model, timeout_ms=None)
    print(f"\nwhere the time goes (encoder {enc.runtime}, 1 thread, CPU ms per message: mean / p99)")
    for low, high in BUCKETS:
        part = [t for t in texts if low <= n_tokens(enc, t) <= high]
        if not part:
            continue
        norms = [normalize(t) for t in part]
        windows = [enc.windows(enc._tokenizer.encode(n).ids) for n in norms]
        stages = {
            "normalise": (normalize, part),
            "custom categories": (lambda pair: moderator._extra.matches(*pair), list(zip(norms, part, strict=True))),
            "tokenizer + windows": (lambda n: enc.windows(enc._tokenizer.encode(n).ids), norms),
            "encoder forward": (enc.pooled_ids, windows),
            "n-gram features + logits": (model.ngram.logits, norms),
            "lexicon + group threat": (lambda n: (model._lexicon.categories(n), group_threat(n)), norms),
            "whole check (Moderator._run)": (moderator._run, part),
        }
        print(f"  {len(part)} messages of {low}-{high} tokens")
        means = {}
        for name, (fn, items) in stages.items():
            _, cpu = timings(fn, items, repeat)
            means[name] = sum(cpu) / len(cpu)
            print(f"    {name:32s} {means[name]:7.3f} / {pct(cpu, .99):7.3f}")
        rest = means["whole check (Moderator._run)"] - sum(v for k, v in means.items() if not k.startswith("whole"))
        print(f"    {'rest (head, ensemble, Python)':32s} {max(0.0, rest):7.3f}")


def legacy(model):
    """``model`` switched to the ONNX path as it was before this bench's --compare existed: attention
    exported through SDPA, ONNX Runtime's SkipLayerNormalization fusion on, spinning pool threads, and
    the tokenizer's ``encode_batch``."""
    import onnxruntime as ort

    from training.moderation_onnx import OnnxEncoder

    enc = model.encoder
    enc.onnx = session = OnnxEncoder(enc.encoder.model, enc.quantize, threads=enc.threads, attention="sdpa")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = session.threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session.session = ort.InferenceSession(str(session.path), options, providers=["CPUExecutionProvider"])
    enc.pooled = lambda norms: [enc.pooled_ids(enc.windows(e.ids)) for e in enc._tokenizer.encode_batch(list(norms))]
    return model


def compare(folder: str, texts: list[str], repeat: int) -> None:
    """The old and the new ONNX path, interleaved message by message so both see the same load."""
    paths = {"old": legacy(load_model(folder, runtime="onnx")[0]), "new": load_model(folder, runtime="onnx")[0]}
    runs = {name: Moderator(model, timeout_ms=None)._run for name, model in paths.items()}
    for run in runs.values():
        timings(run, texts[:20], 1)
    enc = paths["new"].encoder
    long = {t for t in texts if n_tokens(enc, t) > 96}
    out = {name: ([], [], []) for name in runs}  # wall, cpu, cpu of messages > 96 tokens
    for turn in range(repeat * 2):
        for text in texts:
            for name in (("old", "new") if turn % 2 else ("new", "old")):
                wall, cpu = timings(runs[name], [text], 1)
                out[name][0].extend(wall)
                out[name][1].extend(cpu)
                if text in long:
                    out[name][2].extend(cpu)
    print(f"\nold vs new ONNX path, 1 thread, interleaved ({len(texts)} messages x {repeat * 2}; "
          f"load average {os.getloadavg()[0]:.2f})")
    for name, (wall, cpu, cpu_long) in out.items():
        extra = f"   > 96 tokens cpu p50 {pct(cpu_long, .5):6.2f}" if cpu_long else ""
        print(line(f"  {name}", wall, cpu) + extra)
    for i, what in enumerate(("wall", "cpu")):
        old, new = out["old"][i], out["new"][i]
        print(f"  old/new {what}: p50 {pct(old, .5) / pct(new, .5):.2f}x, p99 {pct(old, .99) / pct(new, .99):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(DEFAULT_FOLDER))
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--compare", action="store_true", help="also time the old ONNX path against the new")
    parser.add_argument("--no-peers", action="store_true", help="skip the regex and transformer peers")
    args = parser.parse_args()

    import torch

    rows = read_corpus("dev")
    models = {rt: load_model(args.folder, runtime=rt)[0] for rt in ("torch", "onnx")}
    enc = models["onnx"].encoder
    if enc is None:
        raise SystemExit(f"{args.folder} has no encoder: nothing to compare")
    short = [r["text"] for r in rows if n_tokens(enc, r["text"]) <= 128]
    texts = random.Random(1).sample(short, min(len(short), args.messages))
    lengths = sorted(n_tokens(enc, t) for t in texts)
    print(f"{len(texts)} dev messages <= 128 tokens (tokens p50 {pct(lengths, .5)}, p99 {pct(lengths, .99)}) "
          f"x {args.repeat}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
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
    if not args.no_peers:
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
    stage_split(models["onnx"], texts, args.repeat)
    if args.compare:
        compare(args.folder, texts, args.repeat)
    long_text = " ".join(texts[:60])
    wall, cpu = timings(Moderator(models["onnx"], timeout_ms=None)._run, [long_text], 10)
    print(f"\nlong text ({len(long_text)} chars, {n_tokens(enc, long_text)} tokens, windows of "
          f"{enc.encoder.max_length}): cpu p50 {pct(cpu, .5):.1f} ms, wall p50 {pct(wall, .5):.1f} ms")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

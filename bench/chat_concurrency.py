"""Many chat users at once through the platform vs raw ``model.generate`` batches of the same size.

Peer: the same model folder, chat template, prompts and greedy decoding, ``model.generate`` on one
left-padded batch of N prompts in this process (the best a single forward pass per step can do).
Ours: N official ``openai`` clients, each in its own thread, streaming from ``/v1/chat/completions``
of one uvicorn process on the embedded defaults (the whole pipeline: API key, input moderation,
the continuously batched engine, hold-back output moderation, the database rows).

Per N it prints aggregate tokens/s (answer tokens of all N / wall time until the last finished),
time to first token p50/p95 (ours: the first visible text, after the moderation hold-back; raw:
the first decoding step), the ratios ours/raw, and how many answers are identical. The server runs
with ``TUNELOOP_ENGINE_CAPACITY`` (default 8) rows in its batch; beyond that requests queue.

Targets (idle machine): 8 users >= 0.9x raw batch-8 tokens/s, TTFT p95 at 8 users <= 1.5 s,
1 user >= 0.95x raw and first visible text <= 0.5 s.

Run: .venv/bin/python bench/chat_concurrency.py [--model DIR] [--users 1,4,8,16] [--max-tokens 64]
(default model: the provisioned base in ./var/models/base, provisioned when missing)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chat_stream import PROMPTS as FIRST_PROMPTS  # noqa: E402
from chat_stream import setup_server  # noqa: E402

PROMPTS = [
    *FIRST_PROMPTS,
    "What is a good name for a grey cat?",
    "How does a bicycle stay upright?",
    "Summarise the plot of Romeo and Juliet.",
    "Give me a recipe for pancakes.",
    "What should I pack for a weekend of hiking?",
    "Explain what a database index is.",
    "How can I sleep better?",
    "Write a haiku about autumn.",
]


def prompts_for(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def raw_batch(model, tokenizer, eos: list[int], prompts: list[str], max_tokens: int) -> dict:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    first: list[float] = []

    class FirstStep(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            if not first:
                first.append(time.perf_counter())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, eos_token_id=eos,
                             pad_token_id=tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([FirstStep()]))
    wall = time.perf_counter() - start
    answers, tokens = [], 0
    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
        ended = next((i for i, t in enumerate(row) if t in eos), len(row))
        tokens += ended
        answers.append(tokenizer.decode(row[:ended], skip_special_tokens=True))
    ttft = first[0] - start if first else wall
    return {"tokens": tokens, "wall": wall, "ttft": [ttft] * len(prompts), "answers": answers}


def through_api(port: int, key: str, model: str, prompts: list[str], max_tokens: int) -> dict:
    from openai import OpenAI

    clients = [OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=600)
               for _ in prompts]
    ttft, tokens, answers, errors = [0.0] * len(prompts), [0] * len(prompts), [""] * len(prompts), []
    go = threading.Barrier(len(prompts) + 1)

    def user(i: int) -> None:
        go.wait()
        start = time.perf_counter()
        try:
            stream = clients[i].chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompts[i]}], max_tokens=max_tokens,
                temperature=0, stream=True, stream_options={"include_usage": True})
            for chunk in stream:
                if chunk.usage:
                    tokens[i] = chunk.usage.completion_tokens
                if chunk.choices and chunk.choices[0].delta.content:
                    ttft[i] = ttft[i] or time.perf_counter() - start
                    answers[i] += chunk.choices[0].delta.content
        except Exception as exc:  # reported, not hidden
            errors.append(f"user {i}: {exc}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    go.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return {"tokens": sum(tokens), "wall": time.perf_counter() - start, "ttft": ttft, "answers": answers,
            "errors": errors}


def wait_until_ready(port: int, timeout: float = 600) -> float:
    """Seconds until /healthz says the deployed model is loaded (the server warm-starts it)."""
    import httpx

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
            if body.get("components", {}).get("engine") == "ready":  # what anyone may read of the engine
                return time.perf_counter() - start
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise SystemExit("the server never reported its model ready on /healthz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "var" / "models" / "base")
    parser.add_argument("--users", default="1,4,8,16", help="comma-separated numbers of concurrent users")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    sizes = [int(n) for n in args.users.split(",")]
    if not (args.model / "config.json").exists():
        env = {**os.environ, "TUNELOOP_EMBEDDED": "1"}
        subprocess.run([sys.executable, "manage.py", "provision_base_model"], cwd=ROOT, env=env, check=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    from training.sampling import load_policy, stop_token_ids

    model, tokenizer = load_policy(args.model)
    eos = stop_token_ids(model, tokenizer)
    raw_batch(model, tokenizer, eos, prompts_for(1), 4)  # warm-up, as the server gets one
    peer = {n: raw_batch(model, tokenizer, eos, prompts_for(n), args.max_tokens) for n in sizes}
    del model

    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-") as data_dir:
        server, key, name = setup_server(args.model.resolve(), Path(data_dir), args.port)
        try:
            ready = wait_until_ready(args.port)
            through_api(args.port, key, name, prompts_for(1), 4)  # warm-up
            ours = {n: through_api(args.port, key, name, prompts_for(n), args.max_tokens) for n in sizes}
        finally:
            server.terminate()
            server.wait(timeout=30)

    capacity = os.environ.get("TUNELOOP_ENGINE_CAPACITY", "8")
    print(f"model {args.model}  max_tokens {args.max_tokens}  greedy  engine batch size {capacity}  "
          f"model ready {ready:.1f} s after the server answered")
    print(f"{'users':>5} | {'raw tok/s':>9} {'raw TTFT':>8} | {'API tok/s':>9} {'TTFT p50':>8} {'TTFT p95':>8} | "
          f"{'tok/s ratio':>11} | identical")
    for n in sizes:
        raw, api = peer[n], ours[n]
        raw_rate, api_rate = raw["tokens"] / raw["wall"], api["tokens"] / api["wall"]
        same = sum(a == b for a, b in zip(raw["answers"], api["answers"], strict=True))
        print(f"{n:>5} | {raw_rate:>9.1f} {statistics.median(raw['ttft']):>7.2f}s | {api_rate:>9.1f} "
              f"{statistics.median(api['ttft']):>7.2f}s {p95(api['ttft']):>7.2f}s | {api_rate / raw_rate:>10.2f}x | "
              f"{same}/{n}")
        for error in api["errors"]:
            print(f"      error: {error}")
    print("targets: 8 users >= 0.90x and TTFT p95 <= 1.5 s; 1 user >= 0.95x and TTFT <= 0.5 s (idle machine)")


if __name__ == "__main__":
    main()

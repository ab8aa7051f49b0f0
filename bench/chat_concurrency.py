"""Many chat users at once through the platform vs raw ``model.generate`` batches of the same size.

Three sides per N, same model folder, chat template, prompts and greedy decoding, in one run:

- raw: ``model.generate`` on one left-padded batch of the N prompts in this process (the best a
  single forward pass per step can do);
- engine: the continuously batched ``LocalEngine`` in this process, N readers at once (no HTTP, no
  moderation): what the scheduler itself costs;
- API: N official ``openai`` clients, each in its own thread, streaming from ``/v1/chat/completions``
  of one uvicorn process on the embedded defaults (the whole pipeline: API key, input moderation,
  the batched engine, hold-back output moderation, the database rows).

Per N it prints aggregate tokens/s (answer tokens of all N / wall time until the last finished),
time to first token p50/p95 (API: the first visible text, after the moderation hold-back; engine:
the first text piece; raw: the first decoding step), the ratios engine/raw and API/raw, and the same
in tokens per CPU-second (raw and engine: this process; API: the server process plus the clients),
which stays meaningful when other jobs share the machine (printed: the load average before and
after). ``identical`` compares each greedy answer with the prompt's *solo* greedy ``generate``
(batch of one, no padding): that is the answer a user gets alone, what the engine promises under
batching. A padded batch is not the reference: padding changes the shapes of the matrix products,
so a near-tie between two tokens can go the other way. Answers that output moderation replaced
(``finish_reason`` content_filter) are counted apart: their text is the template.

Targets (idle machine): 8 users >= 0.9x raw batch-8 tokens/s, TTFT p95 at 8 users <= 1.5 s,
1 user >= 0.95x raw and first visible text <= 0.5 s.

``--observe-output-moderation`` adds, printed apart and labelled, a second API pass on a bench-only
server whose output moderation records its verdicts instead of acting on them
(``bench/observe_output_moderation.py``): the pipeline's cost without the false-positive replacements,
and how many answers had a flagged check. The headline stays the pass with moderation acting.

Run: .venv/bin/python bench/chat_concurrency.py [--model DIR] [--users 1,4,8,16] [--max-tokens 64]
     [--observe-output-moderation]
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


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process ``pid`` (Linux /proc)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


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

    start, cpu = time.perf_counter(), cpu_seconds()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, eos_token_id=eos,
                             pad_token_id=tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([FirstStep()]))
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    answers, tokens = [], 0
    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
        ended = next((i for i, t in enumerate(row) if t in eos), len(row))
        tokens += ended
        answers.append(tokenizer.decode(row[:ended], skip_special_tokens=True))
    ttft = first[0] - start if first else wall
    return {"tokens": tokens, "wall": wall, "cpu": cpu, "ttft": [ttft] * len(prompts), "answers": answers}


def engine_batch(engine, prompts: list[str], max_tokens: int) -> dict:
    """The batched engine alone: N readers at once, as N streaming users would read it (no HTTP, no moderation)."""
    from serving.engine import GenerationParams

    params = GenerationParams(max_tokens=max_tokens, temperature=0)
    ttft, answers = [0.0] * len(prompts), [""] * len(prompts)
    start, cpu = time.perf_counter(), cpu_seconds()
    streams = [engine.stream([{"role": "user", "content": p}], params) for p in prompts]

    def read(i: int) -> None:
        for piece in streams[i]:
            ttft[i] = ttft[i] or time.perf_counter() - start
            answers[i] += piece

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"tokens": sum(s.completion_tokens for s in streams), "wall": time.perf_counter() - start,
            "cpu": cpu_seconds() - cpu, "ttft": ttft, "answers": answers}


def through_api(port: int, key: str, model: str, prompts: list[str], max_tokens: int, server_pid: int) -> dict:
    from openai import OpenAI

    clients = [OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=600)
               for _ in prompts]
    ttft, tokens, answers, errors = [0.0] * len(prompts), [0] * len(prompts), [""] * len(prompts), []
    finish = [""] * len(prompts)
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
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish[i] = chunk.choices[0].finish_reason
                if chunk.choices and chunk.choices[0].delta.content:
                    ttft[i] = ttft[i] or time.perf_counter() - start
                    answers[i] += chunk.choices[0].delta.content
        except Exception as exc:  # reported, not hidden
            errors.append(f"user {i}: {exc}")

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    cpu, server_cpu = cpu_seconds(), cpu_seconds(server_pid)
    go.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return {"tokens": sum(tokens), "wall": time.perf_counter() - start, "ttft": ttft, "answers": answers,
            "cpu": cpu_seconds() - cpu + cpu_seconds(server_pid) - server_cpu, "errors": errors,
            "replaced": [f == "content_filter" for f in finish]}


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


def identical(answers: list[str], solo: dict[str, str], prompts: list[str], skip: list[bool] | None = None) -> str:
    """``same/compared`` against each prompt's solo greedy answer, leaving out the replaced ones."""
    pairs = [(a, solo[p]) for i, (a, p) in enumerate(zip(answers, prompts, strict=True)) if not (skip and skip[i])]
    return f"{sum(a == b for a, b in pairs)}/{len(pairs)}"


def serve(args, sizes: list[int], *, observe: bool = False) -> tuple[dict, float]:
    """The API side for every N on a fresh server; ``observe``: the bench-only server whose output
    moderation records its verdicts instead of acting on them (``bench/observe_output_moderation.py``),
    each N's result then says in ``would_replace`` how many of its answers had a flagged check."""
    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-") as data_dir:
        log = Path(data_dir) / "observed-flags.log"
        log.touch()
        options = {"app": "bench.observe_output_moderation:application",
                   "extra_env": {"TUNELOOP_BENCH_OBSERVE_LOG": str(log)}} if observe else {}
        server, key, name = setup_server(args.model.resolve(), Path(data_dir), args.port, **options)
        results = {}
        try:
            ready = wait_until_ready(args.port)
            through_api(args.port, key, name, prompts_for(1), 4, server.pid)  # warm-up
            for n in sizes:
                seen = len(log.read_text().splitlines())
                results[n] = through_api(args.port, key, name, prompts_for(n), args.max_tokens, server.pid)
                results[n]["would_replace"] = len(log.read_text().splitlines()) - seen
        finally:
            server.terminate()
            server.wait(timeout=30)
    return results, ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "var" / "models" / "base")
    parser.add_argument("--users", default="1,4,8,16", help="comma-separated numbers of concurrent users")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--observe-output-moderation", action="store_true",
                        help="also run the API with output moderation's verdicts recorded, not acted on "
                             "(a bench-only server; the headline figures stay with moderation acting)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.users.split(",")]
    if not (args.model / "config.json").exists():
        env = {**os.environ, "TUNELOOP_EMBEDDED": "1"}
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)  # a fresh checkout
        subprocess.run([sys.executable, "manage.py", "provision_base_model"], cwd=ROOT, env=env, check=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    load_before = load_average()

    from serving.engine import LocalEngine

    capacity = int(os.environ.get("TUNELOOP_ENGINE_CAPACITY", "8"))  # the server's batch, as it reads it
    engine = LocalEngine(args.model, capacity=capacity, max_queue=max(sizes))
    model, tokenizer, eos = engine.model, engine.tokenizer, engine.eos
    raw_batch(model, tokenizer, eos, prompts_for(1), 4)  # warm-up, as the server gets one
    engine_batch(engine, prompts_for(1), 4)
    solo = {p: raw_batch(model, tokenizer, eos, [p], args.max_tokens)["answers"][0] for p in prompts_for(max(sizes))}
    peer, alone = {}, {}
    for n in sizes:  # raw and engine alternate, so a change in the machine's load falls on both
        peer[n] = raw_batch(model, tokenizer, eos, prompts_for(n), args.max_tokens)
        alone[n] = engine_batch(engine, prompts_for(n), args.max_tokens)
    engine.unload()
    del model, engine

    ours, ready = serve(args, sizes)
    observed = serve(args, sizes, observe=True)[0] if args.observe_output_moderation else None

    print(f"model {args.model}  max_tokens {args.max_tokens}  greedy  engine batch size {capacity} (engine and server)  "
          f"model ready {ready:.1f} s after the server answered  load average {load_before} -> {load_average()} "
          f"on {os.cpu_count()} CPUs")
    print(f"{'users':>5} | {'raw tok/s':>9} {'TTFT':>6} | {'eng tok/s':>9} {'TTFT p95':>8} | {'API tok/s':>9} "
          f"{'TTFT p50':>8} {'p95':>6} | {'eng/raw':>7} {'API/raw':>7} | per CPU-s: {'eng/raw':>7} {'API/raw':>7} | "
          f"identical to solo: raw eng API | replaced")
    for n in sizes:
        raw, eng, api = peer[n], alone[n], ours[n]
        rate = {k: v["tokens"] / v["wall"] for k, v in (("raw", raw), ("eng", eng), ("api", api))}
        per_cpu = {k: v["tokens"] / max(v["cpu"], 1e-9) for k, v in (("raw", raw), ("eng", eng), ("api", api))}
        prompts = prompts_for(n)
        print(f"{n:>5} | {rate['raw']:>9.1f} {statistics.median(raw['ttft']):>5.2f}s | {rate['eng']:>9.1f} "
              f"{p95(eng['ttft']):>7.2f}s | {rate['api']:>9.1f} {statistics.median(api['ttft']):>7.2f}s "
              f"{p95(api['ttft']):>5.2f}s | {rate['eng'] / rate['raw']:>6.2f}x {rate['api'] / rate['raw']:>6.2f}x | "
              f"           {per_cpu['eng'] / per_cpu['raw']:>6.2f}x {per_cpu['api'] / per_cpu['raw']:>6.2f}x | "
              f"{identical(raw['answers'], solo, prompts):>5} {identical(eng['answers'], solo, prompts):>5} "
              f"{identical(api['answers'], solo, prompts, api['replaced']):>5} | {sum(api['replaced'])}/{n}")
        for error in api["errors"]:
            print(f"      error: {error}")
    if observed:
        print("NOT THE HEADLINE: the same API with output moderation's verdicts recorded, not acted on "
              "(bench/observe_output_moderation.py; input moderation acts, every output check still runs)")
        print(f"{'users':>5} | {'API tok/s':>9} {'TTFT p50':>8} {'p95':>6} | {'API/raw':>7} | per CPU-s API/raw | "
              f"identical to solo | flagged by a check")
        for n in sizes:
            raw, api = peer[n], observed[n]
            rate, raw_rate = api["tokens"] / api["wall"], raw["tokens"] / raw["wall"]
            per_cpu = (api["tokens"] / max(api["cpu"], 1e-9)) / (raw["tokens"] / max(raw["cpu"], 1e-9))
            print(f"{n:>5} | {rate:>9.1f} {statistics.median(api['ttft']):>7.2f}s {p95(api['ttft']):>5.2f}s | "
                  f"{rate / raw_rate:>6.2f}x | {per_cpu:>16.2f}x | {identical(api['answers'], solo, prompts_for(n)):>17} | "
                  f"{api['would_replace']}/{n}")
            for error in api["errors"]:
                print(f"      error: {error}")
    print("targets: 8 users >= 0.90x and TTFT p95 <= 1.5 s; 1 user >= 0.95x and TTFT <= 0.5 s (idle machine)")
    print("replaced: answers output moderation replaced by the template (their API tokens stop where it did)")


if __name__ == "__main__":
    main()

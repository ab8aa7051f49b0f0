"""Chat streaming through the platform vs raw ``model.generate``, and moderation latency.

Peer: the same model folder, the same chat template, prompts and greedy decoding, driven directly
with ``model.generate`` + ``TextIteratorStreamer`` in this process. Ours: the official ``openai``
client streaming from ``/v1/chat/completions`` of a real uvicorn server (ASGI, one process) that
runs the whole pipeline: API key, input moderation, the in-process engine, hold-back output
moderation, the database rows. Printed per side: time to first token (TTFT, first visible text)
and tokens/s (answer tokens / wall time of the request); then the ratio ours/peer, and the
moderation check's p50/p99 per message. Both sides are warmed up with one untimed short answer
(ours: one request through the API; the peer: one ``generate``) before the timed prompts.

TTFT of ours includes the moderation hold-back (a word is shown once a check also read the
``TUNELOOP_MODERATION_HOLD_BACK_CHARS``, 12 by default, after it: the price of never showing a
flagged phrase's characters; a larger value shows the trade-off). Many users at once:
``bench/chat_concurrency.py``.

Run: .venv/bin/python bench/chat_stream.py [--model DIR] [--prompts 6] [--max-tokens 96]
(default model: the provisioned base in ./var/models/base, provisioned when missing)
"""

from __future__ import annotations

import argparse
import json
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


PROMPTS = [
    "How do I undo the last git commit but keep my changes?",
    "Give me three tips for a job interview.",
    "Explain photosynthesis to a ten year old.",
    "Write a short poem about the sea.",
    "What is the difference between a list and a tuple in Python?",
    "How do I keep my houseplants alive?",
    "Plan a three day trip to Rome.",
    "Why is the sky blue?",
]


def raw_generate(folder: Path, prompts: list[str], max_tokens: int) -> list[dict]:
    import torch
    from transformers import TextIteratorStreamer

    from training.sampling import load_policy, stop_token_ids

    model, tokenizer = load_policy(folder)
    eos = stop_token_ids(model, tokenizer)
    # warm-up, untimed, as ours gets one request before it is timed: first-call allocations and kernels
    warm = tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": prompts[0]}], tokenize=False,
                                                   add_generation_prompt=True), return_tensors="pt",
                     add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.generate(input_ids=warm, attention_mask=torch.ones_like(warm), max_new_tokens=8, do_sample=False,
                       eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    results = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        start = time.perf_counter()
        thread = threading.Thread(target=model.generate, kwargs={
            "input_ids": ids, "attention_mask": torch.ones_like(ids), "max_new_tokens": max_tokens,
            "do_sample": False, "eos_token_id": eos, "pad_token_id": tokenizer.pad_token_id, "streamer": streamer})
        thread.start()
        first, answer = None, ""
        for piece in streamer:
            if piece and first is None:
                first = time.perf_counter() - start
            answer += piece
        thread.join()
        total = time.perf_counter() - start
        tokens = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        results.append({"ttft": first or total, "total": total, "tokens": tokens, "answer": answer})
    return results


def setup_server(folder: Path, data_dir: Path, port: int, *, app: str = "config.asgi:application",
                 extra_env: dict | None = None) -> tuple[subprocess.Popen, str, str]:
    """The bench's server: migrated, one user, project, deployment and API key. ``TUNELOOP_BENCH_SERVER_ENV``
    (a JSON object) adds environment variables to the server alone, for A/B runs of its settings, e.g.
    ``'{"OMP_WAIT_POLICY": "PASSIVE"}'``; the in-process peers keep the bench's own environment."""
    env = {**os.environ, **(extra_env or {}), **json.loads(os.environ.get("TUNELOOP_BENCH_SERVER_ENV", "{}")),
           "TUNELOOP_EMBEDDED": "1", "TUNELOOP_DATA_DIR": str(data_dir),
           "TUNELOOP_MODEL_STORE_DIR": str(folder.parent), "DJANGO_SETTINGS_MODULE": "config.settings",
           "TUNELOOP_CHAT_MAX_TOKENS": "4096",
           "TUNELOOP_GENERATIONS_PER_USER": "64"}  # every bench client shares one key
    env.pop("DATABASE_URL", None)
    script = f"""
import django; django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from annotation.services import project_create
from serving.keys import api_key_create
from serving.services import deployment_create
from training.registry import model_version_register
user = get_user_model().objects.create_user("bench")
project = project_create(name="Bench", created_by=user)
version = model_version_register(name={folder.name!r}, kind="policy", folder={str(folder)!r})
deployment_create(project=project, policy=version, created_by=user)
print(api_key_create(user=user, name="bench")[1])
"""
    key = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()[-1]
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", app, "--port", str(port),
                               "--log-level", "warning"], env=env, cwd=ROOT)
    import httpx

    for _ in range(120):
        try:
            httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.5)
    return server, key, folder.name


def through_api(port: int, key: str, model: str, prompts: list[str], max_tokens: int) -> list[dict]:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=600)
    results = []
    for prompt in prompts:
        start = time.perf_counter()
        first, answer, usage = None, "", None
        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                max_tokens=max_tokens, temperature=0, stream=True,
                                                stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - start
                answer += chunk.choices[0].delta.content
        total = time.perf_counter() - start
        results.append({"ttft": first or total, "total": total, "tokens": usage.completion_tokens if usage else 0,
                        "answer": answer})
    return results


def moderation_latency(texts: list[str]) -> tuple[float, float]:
    from serving.moderation import load_moderator

    moderator = load_moderator()
    ms = []
    for _ in range(20):
        for text in texts:
            start = time.perf_counter()
            moderator.check(text)
            ms.append((time.perf_counter() - start) * 1000)
    ms.sort()
    return statistics.median(ms), ms[round(0.99 * (len(ms) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "var" / "models" / "base")
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if not (args.model / "config.json").exists():
        env = {**os.environ, "TUNELOOP_EMBEDDED": "1"}
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)  # a fresh checkout
        subprocess.run([sys.executable, "manage.py", "provision_base_model"], cwd=ROOT, env=env, check=True)
    prompts = PROMPTS[: args.prompts]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    peer = raw_generate(args.model, prompts, args.max_tokens)
    with tempfile.TemporaryDirectory(prefix="tuneloop-bench-") as data_dir:
        server, key, model = setup_server(args.model.resolve(), Path(data_dir), args.port)
        try:
            through_api(args.port, key, model, prompts[:1], 8)  # load the engine once, as a live server has
            ours = through_api(args.port, key, model, prompts, args.max_tokens)
        finally:
            server.terminate()
            server.wait(timeout=30)

    def rate(rows):
        return sum(r["tokens"] for r in rows) / sum(r["total"] for r in rows)

    same = sum(a["answer"] == b["answer"] for a, b in zip(peer, ours, strict=True))
    print(f"model {args.model}  prompts {len(prompts)}  max_tokens {args.max_tokens}  identical answers {same}/{len(prompts)}")
    print(f"raw generate : TTFT median {statistics.median(r['ttft'] for r in peer):.3f} s  {rate(peer):.1f} tokens/s")
    print(f"API (stream) : TTFT median {statistics.median(r['ttft'] for r in ours):.3f} s  {rate(ours):.1f} tokens/s")
    print(f"tokens/s ratio API / raw generate: {rate(ours) / rate(peer):.3f}  (target >= 0.95)")
    ttft_ratio = statistics.median(r["ttft"] for r in ours) / statistics.median(r["ttft"] for r in peer)
    print(f"TTFT ratio API / raw generate: {ttft_ratio:.2f}  (includes the moderation hold-back, TUNELOOP_MODERATION_HOLD_BACK_CHARS)")
    p50, p99 = moderation_latency([r["answer"] for r in ours] + prompts)
    print(f"moderation check per message: p50 {p50:.2f} ms  p99 {p99:.2f} ms  (target p99 <= 5 ms)")


if __name__ == "__main__":
    main()

"""What a long conversation joining the batch costs the answers already running: chunked vs whole prefill.

Seven answers are running (short prompts, greedy) when a conversation of about 850 prompt tokens joins.
Per round it prints the running answers' longest pause between two pieces and the joining answer's time to
its first token, with the prompt prefilled ``PREFILL_CHUNK`` (128) tokens per step between the running
rows' steps, then prefilled whole in one step (the rows wait for all of it); rounds alternate.

Run: .venv/bin/python bench/chat_prefill_stall.py [--model DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHOLE = 1_000_000  # a chunk no prompt reaches: the prompt is prefilled in one step


def conversation() -> list[dict]:
    turns = []
    for i in range(14):
        turns += [{"role": "user", "content": f"Question {i}: tell me something about rivers, mountains and the sea."},
                  {"role": "assistant", "content": "Rivers flow from mountains to the sea; Europe has many, the Danube "
                                                   "and the Rhine among the longest, and the Alps feed several."}]
    return [*turns, {"role": "user", "content": "And the Loire?"}]


def one_round(engine, chunk: int) -> tuple[float, float]:
    from serving import batching
    from serving.engine import GenerationParams

    batching.PREFILL_CHUNK = chunk
    params = GenerationParams(max_tokens=48, temperature=0)
    streams = [engine.stream([{"role": "user", "content": f"Name a fruit, number {i}."}], params) for i in range(7)]
    for stream in streams:
        next(stream)
    pauses = [0.0] * len(streams)

    def read(i: int) -> None:
        last = time.perf_counter()
        for _ in streams[i]:
            now = time.perf_counter()
            pauses[i], last = max(pauses[i], now - last), now

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(streams))]
    for reader in readers:
        reader.start()
    time.sleep(0.3)
    start = time.perf_counter()
    joining = engine.stream(conversation(), GenerationParams(max_tokens=4, temperature=0))
    next(joining)
    first = time.perf_counter() - start
    joining.close()
    for reader in readers:
        reader.join()
    return max(pauses), first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "var" / "models" / "base")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from serving.engine import LocalEngine

    engine = LocalEngine(args.model, capacity=8, max_queue=8)
    print(f"joining prompt: {len(engine.prompt_ids(conversation()))} tokens; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    one_round(engine, 128)  # warm-up
    for _ in range(args.rounds):
        for chunk in (128, WHOLE):
            pause, first = one_round(engine, chunk)
            label = "chunks of 128" if chunk == 128 else "whole"
            print(f"{label:>13}: running answers' longest pause {pause:.2f} s, joining answer's first token {first:.2f} s",
                  flush=True)
    engine.unload()


if __name__ == "__main__":
    main()

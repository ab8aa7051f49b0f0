"""Reward-model training throughput: our grouped run vs TRL's RewardTrainer on the same rankings.

The same K=4 rankings (no ties, so C(4,2)=6 pairs each) train one epoch in both. Ours puts a whole
ranking in one batch element and encodes each completion once: K sequences per ranking. TRL gets the
rankings expanded to (prompt, chosen, rejected) pairs, as ``pairs.jsonl`` of a preference snapshot,
and encodes 2*C(K,2) = 12 sequences per ranking. Both see 8 rankings per optimizer step (TRL: 48 pairs
as 16 pairs x 3 accumulation steps, so 32 sequences per forward pass like ours), float32, no gradient
checkpointing, dropout off, same learning rate. Time is the training loop only (ours:
``train_seconds``; TRL: ``train_runtime``), without tokenization, evaluation and saving.

The model is a randomly initialised Llama of the chosen shape with a tokenizer trained on the shipped
corpus (throughput does not depend on the weights; no download): ``--preset small`` fits this 2-core
CPU, ``--preset smollm2`` is SmolLM2-135M's shape (30 layers, 576 wide; a 2k vocabulary instead of
49k, which only shrinks the embedding table) for a GPU. ``--model DIR`` uses a real folder instead.

The loop times are wall clock; on a shared machine the process CPU time of the same loops (also
printed; with one thread it is the compute) is the steadier comparison.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/rm_grouped_vs_pairs.py [--preset small] [--rankings 48]
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from training.reward import RewardConfig, train_reward
from training.reward_data import ordered_pairs

CORPUS = Path(__file__).resolve().parents[1] / "training" / "corpus_data" / "tiny_stories.txt"
PRESETS = {
    "tiny": dict(hidden_size=64, layers=2, heads=4, kv_heads=2, intermediate=128),
    "small": dict(hidden_size=256, layers=4, heads=4, kv_heads=2, intermediate=768),
    "smollm2": dict(hidden_size=576, layers=30, heads=9, kv_heads=3, intermediate=1536),
}


def build_model(folder: Path, preset: str) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    from training.tiny import build_tokenizer

    shape = PRESETS[preset]
    tokenizer = build_tokenizer(CORPUS.read_text().splitlines()[:2000], vocab_size=2048)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shape["hidden_size"], intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"], max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_rankings(n: int, k: int, seed: int = 0) -> list[dict]:
    """Rankings of story sentences: a prompt of ~1 sentence, answers of 2-4 sentences, all ranks distinct."""
    rng = random.Random(seed)
    lines = [line for line in CORPUS.read_text().splitlines() if line.strip()]
    rows = []
    for pid in range(n):
        prompt = [{"role": "user", "content": "Continue the story: " + rng.choice(lines)}]
        answers = [" ".join(rng.choices(lines, k=rng.randint(2, 4))) for _ in range(k)]
        rows.append({"prompt": prompt, "completions": answers, "ranks": list(range(k)), "prompt_id": pid})
    return rows


def pairs_of(row: dict) -> list[dict]:
    """A ranking as (prompt, chosen, rejected) rows, ties skipped: what ``exports.pairs_of`` writes."""
    texts = row["completions"]
    return [{"prompt": row["prompt"], "chosen": texts[b], "rejected": texts[w]} for b, w in ordered_pairs(row["ranks"])]


def run_ours(model_dir: Path, data: Path, out: Path, args) -> dict:
    config = RewardConfig(backbone="trained", epochs=1, batch_size=8, micro_batch_size=8, learning_rate=1e-5, warmup_ratio=0.0,
                          eval_fraction=0.0, max_length=1024, checkpoint_every=0, seed=0)
    result = train_reward(model_dir, data, out, config)
    return {**result, "cpu_seconds": result["train_cpu_seconds"]}


def run_trl(model_dir: Path, pairs: list[dict], out: Path, args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32,
                                                               pad_token_id=tokenizer.pad_token_id)
    # TRL's conversational preference format: the answers as assistant turns
    dataset = Dataset.from_list([{
        "prompt": p["prompt"],
        "chosen": [{"role": "assistant", "content": p["chosen"]}],
        "rejected": [{"role": "assistant", "content": p["rejected"]}],
    } for p in pairs])
    cpu = not torch.cuda.is_available()
    config = TRLRewardConfig(
        output_dir=str(out), num_train_epochs=1, per_device_train_batch_size=16, gradient_accumulation_steps=3,
        learning_rate=1e-5, lr_scheduler_type="constant", warmup_steps=0, max_length=1024,
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=cpu, report_to=[], save_strategy="no",
        logging_steps=10**6, disable_dropout=True, dataloader_num_workers=0, seed=0,
    )
    trainer = RewardTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    kept = len(trainer.train_dataset)
    cpu_started = time.process_time()
    result = trainer.train()
    cpu_seconds = time.process_time() - cpu_started
    return {"train_seconds": result.metrics["train_runtime"], "pairs_kept": kept, "cpu_seconds": cpu_seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--model", type=Path, help="a causal-LM folder instead of a random model of --preset")
    parser.add_argument("--rankings", type=int, default=48)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or build_model(tmp / "model", args.preset)
        rows = make_rankings(args.rankings, args.k)
        data = tmp / "rankings.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        pairs = [p for r in rows for p in pairs_of(r)]

        started = time.perf_counter()
        ours = run_ours(model_dir, data, tmp / "ours", args)
        ours_wall = time.perf_counter() - started
        started = time.perf_counter()
        trl = run_trl(model_dir, pairs, tmp / "trl", args)
        trl_wall = time.perf_counter() - started

    n_pairs = len(pairs)
    ours_rps = args.rankings / ours["train_seconds"]
    trl_rps = args.rankings * trl["pairs_kept"] / n_pairs / trl["train_seconds"]
    figures = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}",
        "model": str(args.model) if args.model else args.preset, "rankings": args.rankings, "k": args.k,
        "pairs": n_pairs, "trl_pairs_kept": trl["pairs_kept"],
        "ours_train_seconds": ours["train_seconds"], "trl_train_seconds": trl["train_seconds"],
        "ours_rankings_per_second": ours_rps, "trl_rankings_per_second": trl_rps,
        "ours_pairs_per_second": n_pairs / ours["train_seconds"],
        "trl_pairs_per_second": trl["pairs_kept"] / trl["train_seconds"],
        "ours_sequences_per_second": ours["sequences_per_second"],
        "trl_sequences_per_second": 2 * trl["pairs_kept"] / trl["train_seconds"],
        "ratio": ours_rps / trl_rps, "ours_cpu_seconds": ours["cpu_seconds"], "trl_cpu_seconds": trl["cpu_seconds"],
        "ratio_cpu_time": (trl["cpu_seconds"] * n_pairs / trl["pairs_kept"]) / ours["cpu_seconds"], "ours_wall_seconds": ours_wall, "trl_wall_seconds": trl_wall,
        "ours_truncated_sequences": ours["truncated_sequences"],
    }
    print(f"device: {figures['device']}; model: {figures['model']}; {args.rankings} rankings of K={args.k} "
          f"= {n_pairs} pairs ({trl['pairs_kept']} kept by TRL)")
    print(f"ours (grouped, {args.k} sequences/ranking):   {ours_rps:7.2f} rankings/s  "
          f"{figures['ours_pairs_per_second']:8.1f} pairs/s  {figures['ours_sequences_per_second']:8.1f} sequences/s"
          f"  ({ours['train_seconds']:.1f} s loop, {ours_wall:.1f} s wall)")
    print(f"TRL RewardTrainer ({2 * n_pairs // args.rankings} sequences/ranking): {trl_rps:7.2f} rankings/s  "
          f"{figures['trl_pairs_per_second']:8.1f} pairs/s  {figures['trl_sequences_per_second']:8.1f} sequences/s"
          f"  ({trl['train_seconds']:.1f} s loop, {trl_wall:.1f} s wall)")
    print(f"ratio ours/TRL (rankings/s): {figures['ratio']:.2f}x by loop wall time, "
          f"{figures['ratio_cpu_time']:.2f}x by process CPU time ({ours['cpu_seconds']:.1f} s vs "
          f"{trl['cpu_seconds']:.1f} s; forward passes per ranking: {args.k} vs {2 * n_pairs // args.rankings})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

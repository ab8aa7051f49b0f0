"""After the loop: the base, SFT and PPO versions answer the same held-out prompts, and the reward
model judges them.

Side by side uses greedy answers (what a user of the deployed model sees at temperature 0); the
win rate of PPO over SFT compares ``samples`` sampled answers per prompt, each scored by the
reward model the PPO run trained against (ties count half). Plain functions on folders: no Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Comparison:
    prompts: list[str]
    answers: dict[str, list[str]] = field(default_factory=dict)  # version label -> greedy answer per prompt
    scores: dict[str, list[float]] = field(default_factory=dict)  # version label -> RM score per greedy answer
    sampled_means: dict[str, float] = field(default_factory=dict)  # label -> mean RM score of sampled answers
    win_rate: float | None = None  # PPO over SFT, sampled answers, ties half


def compare(folders: dict[str, Path], reward_dir: Path, prompts: list[str], *, max_new_tokens: int = 64,
            samples: int = 4, temperature: float = 0.7, seed: int = 0) -> Comparison:
    """``folders`` maps labels ("base", "sft", "ppo") to version folders."""
    from training.reward import load_reward_model, score_texts
    from training.sampling import SamplingConfig, sample_completions

    conversations = [[{"role": "user", "content": p}] for p in prompts]
    greedy = SamplingConfig(k=1, temperature=0.0, max_new_tokens=max_new_tokens, seed=seed)
    sampled = SamplingConfig(k=samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    result = Comparison(prompts=prompts)
    drawn: dict[str, list[list[str]]] = {}
    for label, folder in folders.items():
        result.answers[label] = [answers[0] for answers in sample_completions(folder, conversations, greedy)]
        if label in ("sft", "ppo"):
            drawn[label] = sample_completions(folder, conversations, sampled)
    model, tokenizer = load_reward_model(reward_dir)
    for label, answers in result.answers.items():
        result.scores[label] = [round(s, 4) for s in score_texts(model, tokenizer, conversations, answers)]
    flat_prompts = [c for c in conversations for _ in range(samples)]
    sampled_scores = {
        label: score_texts(model, tokenizer, flat_prompts, [a for answers in lists for a in answers])
        for label, lists in drawn.items()
    }
    for label, values in sampled_scores.items():
        result.sampled_means[label] = round(sum(values) / len(values), 4) if values else 0.0
    if "sft" in sampled_scores and "ppo" in sampled_scores:
        pairs = list(zip(sampled_scores["ppo"], sampled_scores["sft"], strict=True))
        wins = sum(1.0 if p > s else 0.5 if p == s else 0.0 for p, s in pairs)
        result.win_rate = round(wins / len(pairs), 4) if pairs else None
    return result

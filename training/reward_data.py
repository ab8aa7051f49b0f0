"""Rankings for the reward model: reading, the by-prompt split, encoding with truncation, batching.

A ranking is one prompt with its K completions and their ranks (0 best, equal ranks are ties), as
``exports.ranking_row`` writes it. The reward model scores ``chat_template(prompt + assistant
answer)``; each completion is tokenized once, the prompt once per ranking. A sequence longer than
``max_length`` is cut, never dropped: the prompt loses tokens from its left end (the conversation's
oldest turns), and only when the answer alone does not fit is the answer cut too, keeping its last
token (the end-of-turn marker, where the score is read).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Ranking:
    prompt: list[dict]
    completions: list[str]
    ranks: list[int]
    group: str  # the split key: all rankings of one prompt share it


@dataclass
class EncodedRanking:
    sequences: list[list[int]]  # one token list per completion
    ranks: list[int]
    truncated: int = 0  # how many of the sequences were cut to max_length


@dataclass
class EncodeStats:
    sequences: int = 0
    truncated: int = 0
    answer_truncated: int = 0
    longest: int = 0


def prompt_key(row: dict) -> str:
    """The prompt's messages, not its id: two prompt rows with the same text must not straddle the split."""
    return json.dumps(row["prompt"], sort_keys=True, ensure_ascii=False)


def read_rankings(path: Path) -> list[Ranking]:
    """Rankings of a JSONL file; a row without two completions and matching ranks is an error naming its line."""
    rankings = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            completions, ranks = row.get("completions"), row.get("ranks")
            if not isinstance(row.get("prompt"), list) or not isinstance(completions, list) or not isinstance(ranks, list):
                raise ValueError(f"line {number} of {path}: a ranking needs 'prompt' (messages), 'completions', 'ranks'")
            if len(completions) != len(ranks) or len(completions) < 2:
                raise ValueError(f"line {number} of {path}: {len(completions)} completions and {len(ranks)} ranks")
            rankings.append(Ranking(row["prompt"], [str(c) for c in completions], [int(r) for r in ranks],
                                    prompt_key(row)))
    return rankings


def split_by_prompt(rankings: list[Ranking], eval_fraction: float, seed: int) -> tuple[list[Ranking], list[Ranking]]:
    """Held-out rankings chosen by prompt (seeded), so no prompt is on both sides of the split.

    With a single prompt there is nothing to hold out and everything trains."""
    groups = sorted({r.group for r in rankings})
    random.Random(seed).shuffle(groups)
    n_eval = 0
    if len(groups) > 1 and eval_fraction > 0:
        n_eval = min(len(groups) - 1, max(1, round(len(groups) * eval_fraction)))
    held_out = set(groups[:n_eval])
    return [r for r in rankings if r.group not in held_out], [r for r in rankings if r.group in held_out]


def ordered_pairs(ranks: list[int]) -> list[tuple[int, int]]:
    """(better, worse) index pairs of one ranking, ties skipped."""
    pairs = []
    for i in range(len(ranks)):
        for j in range(i + 1, len(ranks)):
            if ranks[i] != ranks[j]:
                pairs.append((i, j) if ranks[i] < ranks[j] else (j, i))
    return pairs


def count_pairs(rankings) -> int:
    return sum(len(ordered_pairs(r.ranks)) for r in rankings)


def ensure_chat_template(tokenizer) -> None:
    """A base tokenizer without a chat template gets the ChatML one (SmolLM2's), so scoring stays defined."""
    if not getattr(tokenizer, "chat_template", None):
        from training.tiny import CHATML_TEMPLATE

        tokenizer.chat_template = CHATML_TEMPLATE


def ensure_pad_token(tokenizer) -> int:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer.pad_token_id


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompt(tokenizer, prompt: list[dict]) -> tuple[str, list[int]]:
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return text, _ids(tokenizer, text)


def encode_answer(tokenizer, prompt: list[dict], prompt_text: str, answer: str) -> list[int] | None:
    """The answer's tokens as the template writes them after the prompt; None when the template does not
    render the prompt as a prefix (then the whole conversation is tokenized at once)."""
    full = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(prompt_text):
        return None
    return _ids(tokenizer, full[len(prompt_text):])


def fit(prompt_ids: list[int], answer_ids: list[int], max_length: int) -> tuple[list[int], bool, bool]:
    """Join prompt and answer within ``max_length``: (ids, truncated, answer_truncated).

    The answer keeps at least 3/4 of the budget when the prompt is long; the prompt is cut from the left."""
    if len(prompt_ids) + len(answer_ids) <= max_length:
        return prompt_ids + answer_ids, False, False
    answer_budget = max_length - min(len(prompt_ids), max_length // 4)
    answer_cut = len(answer_ids) > answer_budget
    if answer_cut:
        answer_ids = answer_ids[: answer_budget - 1] + answer_ids[-1:]
    prompt_budget = max_length - len(answer_ids)
    prompt_ids = prompt_ids[len(prompt_ids) - prompt_budget:] if prompt_budget > 0 else []
    return prompt_ids + answer_ids, True, answer_cut


def encode_pair_texts(tokenizer, prompt: list[dict], answers: list[str], max_length: int,
                      stats: EncodeStats | None = None) -> list[list[int]]:
    """Token ids of ``chat_template(prompt + answer)`` for each answer, the prompt tokenized once."""
    prompt_text, prompt_ids = encode_prompt(tokenizer, prompt)
    out = []
    for answer in answers:
        answer_ids = encode_answer(tokenizer, prompt, prompt_text, answer)
        if answer_ids is None:  # unusual template: left-truncate the whole conversation
            full = _ids(tokenizer, tokenizer.apply_chat_template(
                [*prompt, {"role": "assistant", "content": answer}], tokenize=False))
            ids, cut, answer_cut = full[-max_length:], len(full) > max_length, False
        else:
            ids, cut, answer_cut = fit(prompt_ids, answer_ids, max_length)
        if stats is not None:
            stats.sequences += 1
            stats.truncated += int(cut)
            stats.answer_truncated += int(answer_cut)
            stats.longest = max(stats.longest, len(ids))
        out.append(ids)
    return out


def encode_rankings(tokenizer, rankings: list[Ranking], max_length: int) -> tuple[list[EncodedRanking], EncodeStats]:
    stats = EncodeStats()
    encoded = []
    for ranking in rankings:
        before = stats.truncated
        sequences = encode_pair_texts(tokenizer, ranking.prompt, ranking.completions, max_length, stats)
        encoded.append(EncodedRanking(sequences, list(ranking.ranks), stats.truncated - before))
    return encoded, stats


def collate(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for a list of token lists."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask

"""Scoring with a reward model: one scalar per (prompt, answer), packed rankings, held-out accuracy.

Training (``training.reward``), PPO (``ppo_rollout.reward_model_scores``) and the demo's win-rate all
score through here, so an answer is read the same way everywhere. The model is
``AutoModelForSequenceClassification`` with ``num_labels=1``; the score is read at the last non-pad
position of the right-padded sequence. We gather it from the attention mask ourselves
(``sequence_scores``), which equals transformers' pooling whenever the pad token does not occur inside a
sequence and stays right when it does (pad = eos). Rankings are scored packed (``reward_data.pack``):
the prompt once, each answer on it, blind to the others, so each score equals the answer's score alone.

Pairwise accuracy (``pairwise_accuracy``) counts a tied score as wrong and skips tied ranks; it runs
without gradients, shortest rankings first, and under ``torchrun`` each rank scores its share.
"""

from __future__ import annotations

from pathlib import Path

import torch

from training.distributed import all_reduce_sum, world
from training.reward_data import (
    Packed,
    collate,
    encode_for_scoring,
    ensure_chat_template,
    ensure_pad_token,
    micro_batches,
    ordered_pairs,
    pack,
    reward_max_length,
)


def _inner(model):
    """The transformers model under a peft wrapper (LoRA layers are injected into it in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The head's output at the last attended position of each row: a float tensor of shape [batch]."""
    inner = _inner(model)
    backbone = getattr(inner, inner.base_model_prefix, None)
    head = getattr(inner, "score", None)
    if backbone is None or head is None:  # an architecture with another head name: transformers' pooling
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    last = (positions * attention_mask).argmax(-1)
    pooled = hidden[torch.arange(input_ids.shape[0], device=input_ids.device), last]
    return head(pooled)[:, 0].float()


def packed_scores(model, packed: Packed, device) -> torch.Tensor:
    """The score of every answer of packed rankings (ranking then answer order), each equal to its score
    alone on ``prompt + answer``: a float tensor of shape [answers]."""
    inner = _inner(model)
    backbone = getattr(inner, inner.base_model_prefix, None)
    head = getattr(inner, "score", None)
    if backbone is None or head is None:
        raise ValueError(f"cannot pack rankings for {type(inner).__name__}: no backbone and 'score' head")
    hidden = backbone(input_ids=packed.input_ids.to(device), attention_mask=packed.attention_mask.to(device),
                      position_ids=packed.position_ids.to(device), use_cache=False).last_hidden_state
    rows, columns = packed.last
    return head(hidden[rows.to(device), columns.to(device)])[:, 0].float()


def _packs(model) -> bool:
    inner = _inner(model)
    return getattr(inner, inner.base_model_prefix, None) is not None and getattr(inner, "score", None) is not None


def ranking_scores(model, rankings, pad_id: int, device) -> torch.Tensor:
    """Scores of every answer of ``rankings`` in one forward pass: packed when the architecture allows,
    else each (prompt, answer) as its own padded sequence."""
    if _packs(model):
        dtype = next(model.parameters()).dtype
        return packed_scores(model, pack(rankings, pad_id, dtype if dtype.is_floating_point else torch.float32),
                             device)
    input_ids, mask = collate([s for r in rankings for s in r.sequences], pad_id)
    return sequence_scores(model, input_ids.to(device), mask.to(device))


@torch.no_grad()
def score_sequences(model, sequences: list[list[int]], pad_id: int, batch_size: int = 8) -> list[float]:
    """Scores of token lists, batched shortest first (less padding), returned in the given order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = [0.0] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        input_ids, mask = collate([sequences[i] for i in chunk], pad_id)
        values = sequence_scores(model, input_ids.to(device), mask.to(device)).tolist()
        for i, value in zip(chunk, values, strict=True):
            scores[i] = value
    model.train(was_training)
    return scores


def load_reward_model(folder: Path):
    """(model, tokenizer) of a saved reward model, in eval mode, float32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ensure_pad_token(tokenizer)
    ensure_chat_template(tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def score_texts(model, tokenizer, prompts: list[list[dict]], answers: list[str], batch_size: int = 8,
                max_length: int | None = None) -> list[float]:
    """The reward of each (prompt messages, assistant answer), no gradient; long inputs are truncated
    like in training (prompt from the left). ``max_length`` defaults to the model's context, at most 2048."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    pad_id = ensure_pad_token(tokenizer)
    ensure_chat_template(tokenizer)
    if max_length is None:
        folder = getattr(_inner(model).config, "_name_or_path", "") or ""
        context = min(2048, getattr(_inner(model).config, "max_position_embeddings", 2048) or 2048)
        max_length = reward_max_length(Path(folder), context) if folder else context
    sequences = [encode_for_scoring(tokenizer, p, a, max_length) for p, a in zip(prompts, answers, strict=True)]
    return score_sequences(model, sequences, pad_id, batch_size)


@torch.no_grad()
def pairwise_accuracy(model, encoded, pad_id: int, batch_size: int, max_tokens: int = 8192) -> float | None:
    """Share of held-out (better, worse) pairs scored in the right order; None without pairs. Packed,
    shortest rankings first, ``batch_size`` rankings and ``max_tokens`` padded tokens per forward pass."""
    rank, size = world()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for group in micro_batches(encoded[rank::size], batch_size, max_tokens):
        scores = ranking_scores(model, group, pad_id, device).tolist()
        offset = 0
        for ranking in group:
            values = scores[offset:offset + len(ranking.answers)]
            offset += len(ranking.answers)
            for better, worse in ordered_pairs(ranking.ranks):
                total += 1
                correct += int(values[better] > values[worse])
    model.train(was_training)
    correct, total = all_reduce_sum([float(correct), float(total)])
    return correct / total if total else None

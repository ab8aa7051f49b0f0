"""Scoring with a reward model: one scalar per (prompt, answer), packed rankings, held-out accuracy.

Training (``training.reward``), PPO (``ppo_rollout.reward_model_scores``) and the demo's win-rate all
score through here, so an answer is read the same way everywhere. The model is
``AutoModelForSequenceClassification`` with ``num_labels=1``. How the score is read from the head is the
model's ``config.reward_pooling`` (``pooling_of``), saved with it:

- ``answer_mean`` (the default since 2026-12): the mean of the head's output over the answer's tokens. The
  head is linear, so that is the head applied to the answer's mean hidden state. On HH harmless-base a
  linear head on the frozen base read this way held out 0.66-0.67 where the last token gave 0.59-0.63
  (docs/operations.md, "Reward models"). Scoring then needs to know where the answer starts: every
  entry point here takes the answer's length (``score_texts`` works it out).
- ``last`` (models saved before): the head at the last non-pad position of the right-padded sequence,
  gathered from the attention mask ourselves, which equals transformers' pooling whenever the pad token
  does not occur inside a sequence and stays right when it does (pad = eos).

Rankings are scored packed (``reward_data.pack``): the prompt once, each answer on it, blind to the
others, so each score equals the answer's score alone.

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
    encode_ranking,
    ensure_chat_template,
    ensure_pad_token,
    micro_batches,
    ordered_pairs,
    pack,
    reward_max_length,
)

POOLINGS = ("answer_mean", "last")


def _inner(model):
    """The transformers model under a peft wrapper (LoRA layers are injected into it in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def pooling_of(model) -> str:
    """How ``model`` reads its score (module docstring); models saved before the setting existed, and
    architectures without a backbone and a ``score`` head (scored by transformers' pooling): ``last``."""
    if not _packs(model):
        return "last"
    return getattr(_inner(model).config, "reward_pooling", None) or "last"


def _answer_means(hidden: torch.Tensor, answer_of: torch.Tensor, count: int) -> torch.Tensor:
    """Each answer's mean hidden state [count, hidden] (``answer_of`` [rows, width]: answer index or -1)."""
    inside = answer_of >= 0
    states, ids = hidden[inside], answer_of[inside]
    sums = torch.zeros(count, states.shape[-1], dtype=states.dtype, device=states.device).index_add(0, ids, states)
    return sums / torch.bincount(ids, minlength=count).clamp(min=1).to(states.dtype)[:, None]


def _parts(model):
    inner = _inner(model)
    return getattr(inner, inner.base_model_prefix, None), getattr(inner, "score", None)


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    answer_lengths: list[int] | torch.Tensor | None = None) -> torch.Tensor:
    """The score of each right-padded row, a float tensor of shape [batch]. ``answer_lengths``: how many of
    each row's last real tokens are the answer (needed by an ``answer_mean`` model)."""
    backbone, head = _parts(model)
    if backbone is None or head is None:  # an architecture with another head name: transformers' pooling
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    if pooling_of(model) == "answer_mean":
        if answer_lengths is None:
            raise ValueError("this reward model averages its score over the answer's tokens: "
                             "pass answer_lengths (or score with score_texts)")
        ends = attention_mask.sum(-1)
        starts = ends - torch.as_tensor(answer_lengths, device=input_ids.device).clamp(min=1)
        inside = (positions >= starts[:, None]) & (positions < ends[:, None])
        pooled = _answer_means(hidden, torch.where(inside, rows[:, None], -1), len(rows))
    else:
        pooled = hidden[rows, (positions * attention_mask).argmax(-1)]
    return head(pooled)[:, 0].float()


def packed_states(model, packed: Packed, device) -> torch.Tensor:
    """The hidden state the head reads for every answer of packed rankings (ranking then answer order):
    the answer's mean state or its last token's (``pooling_of``), a tensor [answers, hidden]."""
    backbone, head = _parts(model)
    if backbone is None or head is None:
        raise ValueError(f"cannot pack rankings for {type(_inner(model)).__name__}: no backbone and 'score' head")
    hidden = backbone(input_ids=packed.input_ids.to(device), attention_mask=packed.attention_mask.to(device),
                      position_ids=packed.position_ids.to(device), use_cache=False).last_hidden_state
    rows, columns = packed.last
    if pooling_of(model) == "answer_mean":
        return _answer_means(hidden, packed.answer_of.to(device), len(rows))
    return hidden[rows.to(device), columns.to(device)]


def packed_scores(model, packed: Packed, device) -> torch.Tensor:
    """The score of every answer of packed rankings (ranking then answer order), each equal to its score
    alone on ``prompt + answer``: a float tensor of shape [answers]."""
    return _parts(model)[1](packed_states(model, packed, device))[:, 0].float()


def _packs(model) -> bool:
    backbone, head = _parts(model)
    return backbone is not None and head is not None


def ranking_scores(model, rankings, pad_id: int, device) -> torch.Tensor:
    """Scores of every answer of ``rankings`` in one forward pass: packed when the architecture allows,
    else each (prompt, answer) as its own padded sequence."""
    if _packs(model):
        dtype = next(model.parameters()).dtype
        return packed_scores(model, pack(rankings, pad_id, dtype if dtype.is_floating_point else torch.float32),
                             device)
    input_ids, mask = collate([s for r in rankings for s in r.sequences], pad_id)
    return sequence_scores(model, input_ids.to(device), mask.to(device),
                           [len(a) for r in rankings for a in r.answers])


@torch.no_grad()
def score_sequences(model, sequences: list[list[int]], pad_id: int, batch_size: int = 8,
                    answer_lengths: list[int] | None = None) -> list[float]:
    """Scores of token lists, batched shortest first (less padding), returned in the given order.
    ``answer_lengths``: how many of each sequence's last tokens are the answer (``sequence_scores``)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = [0.0] * len(sequences)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        input_ids, mask = collate([sequences[i] for i in chunk], pad_id)
        lengths = None if answer_lengths is None else [answer_lengths[i] for i in chunk]
        values = sequence_scores(model, input_ids.to(device), mask.to(device), lengths).tolist()
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
    encoded = [encode_ranking(tokenizer, p, [a], max_length) for p, a in zip(prompts, answers, strict=True)]
    return score_sequences(model, [e.sequences[0] for e in encoded], pad_id, batch_size,
                           [len(e.answers[0]) for e in encoded])


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

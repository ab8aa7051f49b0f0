"""Scoring with a reward model: one scalar per (prompt, answer), packed rankings, held-out accuracy.

Training (``training.reward``), PPO (``ppo_rollout.reward_model_scores``) and the demo's win-rate all
score through here, so an answer is read the same way everywhere. The model is
``AutoModelForSequenceClassification`` whose ``score`` head has one row per hidden state it reads (below;
usually one). How the score is read from the head is the
model's ``config.reward_pooling`` (``pooling_of``), saved with it:

- ``answer_mean`` (the default since 2026-12): the mean of the head's output over the answer's tokens. The
  head is linear, so that is the head applied to the answer's mean hidden state. On HH harmless-base a
  linear head on the frozen base read this way held out 0.66-0.67 where the last token gave 0.59-0.63
  (docs/operations.md, "Reward models"). Scoring then needs to know where the answer starts: every
  entry point here takes the answer's length (``score_texts`` works it out).
- ``last`` (models saved before): the head at the last non-pad position of the right-padded sequence,
  gathered from the attention mask ourselves, which equals transformers' pooling whenever the pad token
  does not occur inside a sequence and stays right when it does (pad = eos).

Which hidden states the head reads is ``config.reward_layers`` (``layers_of``): indices into transformers'
``hidden_states`` (0 the embeddings, the model's depth its final, normed state). Without it (fine-tuned
models, models saved before) the head reads the final state alone. With it (the frozen default reads 4,
``reward_head.tapped_layers``) the head has one row per listed state, ``num_labels`` = how many, and the
score is the sum of each row applied to its state, pooled as above: the model stays a plain
``AutoModelForSequenceClassification`` that ``from_pretrained`` opens, and only the scorers here know
to add the rows. On HH harmless-base, reading 4 states rather than the final one held out 0.686 instead
of 0.664 (mean of 8 prompt splits; docs/operations.md, "Reward models").

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


def layers_of(model) -> list[int] | None:
    """The hidden states the head reads (module docstring); None: the final state alone."""
    layers = getattr(_inner(model).config, "reward_layers", None)
    return [int(i) for i in layers] if layers else None


def _hidden(model, backbone, **inputs) -> list[torch.Tensor]:
    """The hidden states [rows, width, hidden] the head reads, in ``layers_of`` order."""
    layers = layers_of(model)
    if layers is None:
        return [backbone(**inputs, use_cache=False).last_hidden_state]
    states = backbone(**inputs, use_cache=False, output_hidden_states=True).hidden_states
    if max(layers) >= len(states):
        raise ValueError(f"reward_layers {layers} name a hidden state past the model's {len(states) - 1} layers")
    return [states[i] for i in layers]


def head_scores(model, pooled: torch.Tensor) -> torch.Tensor:
    """Scores [answers] of pooled states [answers, states read, hidden]: each head row on its state, summed."""
    head = _parts(model)[1]
    rows = _inner(model).config.num_labels
    if rows != pooled.shape[1]:
        raise ValueError(f"the score head has {rows} rows for {pooled.shape[1]} hidden states read (config.reward_layers)")
    if rows == 1:
        return head(pooled[:, 0])[:, 0].float()  # through the module: a LoRA-wrapped head included
    scores = (pooled * head.weight[None]).sum((1, 2))
    return (scores if head.bias is None else scores + head.bias.sum()).float()


def sequence_scores(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    answer_lengths: list[int] | torch.Tensor | None = None) -> torch.Tensor:
    """The score of each right-padded row, a float tensor of shape [batch]. ``answer_lengths``: how many of
    each row's last real tokens are the answer (needed by an ``answer_mean`` model)."""
    backbone, head = _parts(model)
    if backbone is None or head is None:  # an architecture with another head name: transformers' pooling
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()
    if pooling_of(model) == "answer_mean" and answer_lengths is None:
        raise ValueError("this reward model averages its score over the answer's tokens: "
                         "pass answer_lengths (or score with score_texts)")
    hidden = _hidden(model, backbone, input_ids=input_ids, attention_mask=attention_mask)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    if pooling_of(model) == "answer_mean":
        ends = attention_mask.sum(-1)
        starts = ends - torch.as_tensor(answer_lengths, device=input_ids.device).clamp(min=1)
        inside = (positions >= starts[:, None]) & (positions < ends[:, None])
        pooled = [_answer_means(h, torch.where(inside, rows[:, None], -1), len(rows)) for h in hidden]
    else:
        last = (positions * attention_mask).argmax(-1)
        pooled = [h[rows, last] for h in hidden]
    return head_scores(model, torch.stack(pooled, 1))


def packed_states(model, packed: Packed, device) -> torch.Tensor:
    """The hidden states the head reads for every answer of packed rankings (ranking then answer order):
    the answer's mean state or its last token's (``pooling_of``) in each state read (``layers_of``), a
    tensor [answers, states read, hidden]."""
    backbone, head = _parts(model)
    if backbone is None or head is None:
        raise ValueError(f"cannot pack rankings for {type(_inner(model)).__name__}: no backbone and 'score' head")
    hidden = _hidden(model, backbone, input_ids=packed.input_ids.to(device),
                     attention_mask=packed.attention_mask.to(device), position_ids=packed.position_ids.to(device))
    rows, columns = packed.last
    if pooling_of(model) == "answer_mean":
        answer_of = packed.answer_of.to(device)
        return torch.stack([_answer_means(h, answer_of, len(rows)) for h in hidden], 1)
    return torch.stack([h[rows.to(device), columns.to(device)] for h in hidden], 1)


def packed_scores(model, packed: Packed, device) -> torch.Tensor:
    """The score of every answer of packed rankings (ranking then answer order), each equal to its score
    alone on ``prompt + answer``: a float tensor of shape [answers]."""
    return head_scores(model, packed_states(model, packed, device))


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

"""Chat transcripts as token ids with an assistant-only loss mask, padded batches and packed blocks.

The mask is built from the chat template itself: for every assistant turn ``i`` the rendering of
``messages[:i]`` with the generation prompt is a prefix of the rendering of ``messages[:i + 1]``, and
the characters between the two are the assistant's (its text and end-of-turn marker). The full
transcript is tokenised once with character offsets, and a token is trained on exactly when it
starts inside such a span; every other token (system, user, role headers, padding) gets label -100.
No Django here: ``training/sft.py``, the SFT benchmark and PPO-ptx share these helpers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from annotation.evidence import messages_with_evidence

IGNORE_INDEX = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int] | None = None  # packed blocks only: restarts at 0 for every example

    @property
    def trained_tokens(self) -> int:
        """Labelled positions the shifted loss uses (the first position is never a target)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def read_conversations(path: Path) -> list[list[dict]]:
    """The ``messages`` of every JSONL row whose last turn is the assistant's (others are not SFT rows)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            messages = row.get("messages")
            if not messages:
                raise ValueError(f"line {number} of {path} has no 'messages'")
            if messages[-1].get("role") == "assistant":
                rows.append(messages_with_evidence(messages, row.get("evidence")))
    return rows


def pad_id(tokenizer) -> int:
    """The padding id; tokenizers without a pad token pad with EOS (padding is never attended or trained)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _render(tokenizer, messages: list[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered transcript and the character spans of its assistant turns."""
    full = _render(tokenizer, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = _render(tokenizer, messages[:i], True) if i else ""
        through = _render(tokenizer, messages[: i + 1], False)
        start = len(before) if full.startswith(before) else _common_prefix(before, full)
        end = len(through) if full.startswith(through) else _common_prefix(through, full)
        if end > start:
            spans.append((start, end))
    return full, spans


def tokenize_conversation(tokenizer, messages: list[dict], max_length: int) -> Example:
    """Token ids of the whole transcript (cut to ``max_length``) and labels that keep only assistant tokens."""
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"][:max_length]
    offsets = encoded["offset_mapping"][: len(ids)]
    labels = []
    for token, (start, _end) in zip(ids, offsets, strict=True):
        inside = any(s <= start < e for s, e in spans)
        labels.append(token if inside else IGNORE_INDEX)
    return Example(ids, labels)


def tokenize_all(tokenizer, conversations: list[list[dict]], max_length: int) -> tuple[list[Example], int]:
    """Tokenised examples, dropping those whose answer was cut off entirely; returns (examples, dropped)."""
    examples, dropped = [], 0
    for messages in conversations:
        example = tokenize_conversation(tokenizer, messages, max_length)
        if example.trained_tokens:
            examples.append(example)
        else:
            dropped += 1
    return examples, dropped


def pack_examples(examples: list[Example], block_size: int) -> list[Example]:
    """Whole examples joined into blocks of at most ``block_size`` tokens, without cross-talk.

    An example is never split (one longer than the block gets a block of its own); the next one
    starts a new block when it does not fit. Each block carries ``position_ids`` that restart at 0
    for every example: ``summed_token_loss`` then runs the model without a 2-D attention mask, and
    transformers derives a block-diagonal causal mask from the position resets, so a token attends
    to its own example only and sees the positions it would see alone. The first label of each
    example is dropped, so the previous example's last token is never trained to predict it."""
    blocks: list[Example] = []
    current = Example([], [], [])
    for example in examples:
        if current.input_ids and len(current.input_ids) + len(example.input_ids) > block_size:
            blocks.append(current)
            current = Example([], [], [])
        current.input_ids.extend(example.input_ids)
        current.labels.extend([IGNORE_INDEX, *example.labels[1:]])
        current.position_ids.extend(range(len(example.input_ids)))
    if current.input_ids:
        blocks.append(current)
    return [block for block in blocks if block.trained_tokens]


def collate(examples: list[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` tensors (padding labelled -100).

    Packed blocks get ``position_ids`` instead of an attention mask: the padding after a block
    numbers from 0 again, so it is one more segment that no real token attends to."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    packed = any(e.position_ids is not None for e in examples)
    positions = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention[row, :n] = 1
        positions[row, :n] = torch.tensor(example.position_ids if example.position_ids is not None else range(n))
        positions[row, n:] = torch.arange(width - n)
    if packed:
        return {"input_ids": input_ids, "position_ids": positions, "labels": labels}
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def summed_token_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(sum of next-token cross-entropy over labelled tokens, their count); the caller divides."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    logits = model(**inputs, use_cache=False).logits  # a cache would switch off the packed-sequence mask
    targets = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss, int((targets != IGNORE_INDEX).sum())

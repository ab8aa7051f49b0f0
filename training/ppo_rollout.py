"""The model-facing half of PPO: prompts to token ids, sampling, per-token log-probs and values, RM scores.

``training/ppo.py`` runs the loop; ``training/ppo_loss.py`` holds the arithmetic. Everything here is
batched over one PPO batch, float32 on CPU, and avoids transformers' implicit behaviours that
would silently change the numbers:

- prompts are left-padded, so the answers of a batch start at the same column; the forward pass
  passes ``position_ids`` from the attention mask exactly as ``generate`` does (a plain forward
  numbers the padding too: harmless under rotary embeddings, which only see relative positions,
  wrong for a model with absolute positions);
- logits are divided by the sampling temperature, so the log-probs are those of the distribution
  the answers were drawn from (``top_k`` is switched off; ``top_p < 1`` truncates the sampler only);
- the answer ends at its first stop token (EOS or the chat template's end-of-turn), which is part
  of the answer; whatever ``generate`` wrote after it is padding;
- the reward model reads exactly what it was trained on: ``training.reward.score_texts`` encodes
  (full prompt, answer) with the reward model's own encoder and ``max_length`` (its training length);
- an answer cut at ``max_new_tokens`` without a stop token is marked ``truncated``: rendered through
  the chat template it would look complete to the reward model, so PPO subtracts a penalty instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from annotation.evidence import messages_with_evidence
from training.ppo_loss import entropy_from_logits, logprobs_from_logits, masked_mean

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")


@dataclass
class Rollout:
    """One PPO batch: sequences and everything measured on them at sampling time (no gradients)."""

    input_ids: torch.Tensor  # (B, P + R): left-padded prompt, then the answer
    attention_mask: torch.Tensor  # (B, P + R): prompt padding 0, answer tokens 1, padding after the answer 0
    prompt_width: int  # P
    response_mask: torch.Tensor  # (B, R) float: 1 on the answer's tokens (stop token included)
    logprobs: torch.Tensor  # (B, R) policy at sampling time
    ref_logprobs: torch.Tensor  # (B, R) frozen reference
    values: torch.Tensor  # (B, R) value head at sampling time
    scores: torch.Tensor  # (B,) reward-model score of each answer (as used in the rewards)
    raw_scores: torch.Tensor  # (B,) as the reward model gave them (what is logged as "reward")
    entropy: float  # mean per-token entropy of the policy over the answers
    answers: list[str]
    truncated: torch.Tensor  # (B,) bool: the answer hit max_new_tokens without a stop token
    hidden: torch.Tensor  # (B, R, H) the policy's last hidden states over the answer (the value head's input)

    @property
    def responses(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width :]


def read_prompts(path: Path) -> list[list[dict]]:
    """The ``messages`` of every JSONL row (``{"messages": [...], "prompt_id": int}``)."""
    prompts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                row = json.loads(line)
                messages = row.get("messages")
                if not messages:
                    raise ValueError(f"line {number} of {path} has no 'messages'")
                prompts.append(messages_with_evidence(messages, row.get("evidence")))
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def stop_token_ids(model, tokenizer) -> list[int]:
    """EOS of the model and the tokenizer, plus the chat template's end-of-turn token when the vocab has one."""
    ids = set()
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return sorted(ids)


def encode_prompts(tokenizer, prompts: list[list[dict]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask of chat_template(prompt) + the assistant header.

    A prompt longer than ``max_length`` tokens keeps its end (the latest turns and the header)."""
    rows = []
    for messages in prompts:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        rows.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:])
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def answer_mask(responses: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """1 up to and including the first stop token of each row, 0 after it (all 1 if it never stops)."""
    is_stop = torch.isin(responses, torch.tensor(stop_ids, dtype=responses.dtype, device=responses.device))
    stopped_before = (is_stop.long().cumsum(dim=1) - is_stop.long()) > 0
    return (~stopped_before).float()


def truncated_answers(responses: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """True for each row without any stop token: the answer was cut at ``max_new_tokens``."""
    return ~torch.isin(responses, torch.tensor(stop_ids, dtype=responses.dtype, device=responses.device)).any(dim=1)


@torch.no_grad()
def generate(policy, tokenizer, query: torch.Tensor, query_mask: torch.Tensor, config) -> torch.Tensor:
    """Sampled answers (B, R) for the left-padded queries; the caller seeds the global RNG."""
    output = policy.generate(
        input_ids=query,
        attention_mask=query_mask,
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=0,
        max_new_tokens=config.max_new_tokens,
        pad_token_id=pad_id(tokenizer),
        eos_token_id=stop_token_ids(policy, tokenizer),
    )
    return output[:, query.shape[1] :]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over attended tokens only, as ``generate`` numbers left-padded rows."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def answer_forward(model, input_ids, attention_mask, prompt_width: int, temperature: float):
    """(logits over the answer positions / temperature, the hidden states that produced them).

    Runs the decoder once and the LM head only on the answer positions (the vocabulary projection
    of the prompt would be wasted work). Position ``P - 1 + t`` predicts answer token ``t``."""
    hidden = model.base_model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask), use_cache=False
    ).last_hidden_state[:, prompt_width - 1 : -1]
    logits = model.get_output_embeddings()(hidden).float() / temperature
    return logits, hidden


def policy_outputs(policy, value_head, rollout_ids, attention_mask, prompt_width, temperature, detach_value: bool):
    """(log-probs of the answer tokens, values, logits) of the policy with its value head."""
    logits, hidden = answer_forward(policy, rollout_ids, attention_mask, prompt_width, temperature)
    logprobs = logprobs_from_logits(logits, rollout_ids[:, prompt_width:])
    values = value_head(hidden.detach() if detach_value else hidden).squeeze(-1).float()
    return logprobs, values, logits


@torch.no_grad()
def reference_logprobs(ref, rollout_ids, attention_mask, prompt_width, temperature) -> torch.Tensor:
    logits, _ = answer_forward(ref, rollout_ids, attention_mask, prompt_width, temperature)
    return logprobs_from_logits(logits, rollout_ids[:, prompt_width:])


def reward_model_scores(rm, rm_tokenizer, prompts: list[list[dict]], answers: list[str], max_length: int,
                        batch_size: int = 8) -> torch.Tensor:
    """The reward model's score of each (prompt, answer), encoded as in its training (``reward.score_texts``)."""
    from training.reward import score_texts

    return torch.tensor(score_texts(rm, rm_tokenizer, prompts, answers, batch_size=batch_size,
                                    max_length=max_length), dtype=torch.float32)


@torch.no_grad()
def collect_rollout(policy, value_head, ref, tokenizer, rm, rm_tokenizer, prompts: list[list[dict]], config) -> Rollout:
    """Sample answers to ``prompts`` and measure them (policy, reference, values, RM); no gradients."""
    policy.eval()
    device = next(policy.parameters()).device
    query, query_mask = (t.to(device) for t in encode_prompts(tokenizer, prompts, config.max_prompt_length))
    responses = generate(policy, tokenizer, query, query_mask, config)
    stops = stop_token_ids(policy, tokenizer)
    mask = answer_mask(responses, stops)
    input_ids = torch.cat([query, responses], dim=1)
    attention = torch.cat([query_mask, mask.long()], dim=1)
    width = query.shape[1]
    logits, hidden = answer_forward(policy, input_ids, attention, width, config.temperature)
    logprobs = logprobs_from_logits(logits, responses)
    values = value_head(hidden).squeeze(-1).float()
    entropy = masked_mean(entropy_from_logits(logits), mask).item()
    del logits
    ref_logprobs = reference_logprobs(ref, input_ids, attention, width, config.temperature)
    answers = [
        tokenizer.decode(row[: int(n)], skip_special_tokens=True).strip()
        for row, n in zip(responses, mask.sum(dim=1), strict=True)
    ]
    raw = reward_model_scores(rm, rm_tokenizer, prompts, answers, config.reward_max_length).to(device)
    return Rollout(input_ids, attention, width, mask, logprobs, ref_logprobs, values, raw.clone(), raw, entropy,
                   answers, truncated_answers(responses, stops), hidden.float())

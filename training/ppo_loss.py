"""The arithmetic of PPO for language models, as pure tensor functions (no models, no I/O).

Shapes: every per-token tensor is ``(batch, response_length)`` and ``mask`` marks the response
tokens that were really generated (1) versus padding after the end of an answer (0). Masks are a
prefix of ones per row (an answer ends at its first EOS), which ``gae`` relies on to stop
bootstrapping after the last real token.

The recipe follows Ziegler et al. (2019) and InstructGPT (Ouyang et al., 2022), as TRL's former
``PPOTrainer`` did: the per-token reward is the KL penalty ``-beta * (log p - log p_ref)``, the
reward model's score is added at the last real token, advantages come from GAE and are whitened,
and both the policy and the value losses are clipped.
"""

from __future__ import annotations

import math

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1 (over all of them, or along ``dim``)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked values (Bessel-corrected by default, like ``torch.var``)."""
    mean = masked_mean(x, mask)
    n = mask.to(x.dtype).sum()
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Scale the masked values to unit variance (and zero mean unless ``shift_mean=False``); padding -> 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of ``mask`` (0 for an all-zero row)."""
    positions = torch.arange(mask.size(1), device=mask.device).expand_as(mask)
    return (positions * (mask > 0)).max(dim=1).values


def kl_penalized_rewards(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, score: torch.Tensor, mask: torch.Tensor, beta: float
) -> torch.Tensor:
    """Per-token rewards: ``-beta * (logp - ref_logp)`` on every real token, plus ``score`` at the last one.

    ``logp - ref_logp`` of the sampled token is the unbiased one-sample estimate of KL(policy || ref);
    summed over an answer it is the sequence KL the penalty keeps small."""
    mask = mask.to(logprobs.dtype)
    rewards = -beta * (logprobs - ref_logprobs) * mask
    rows = torch.arange(rewards.size(0), device=rewards.device)
    rewards[rows, last_token_index(mask)] += score.to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016); returns (advantages, returns).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where
    ``V`` and ``A`` after the last real token are 0 (the episode ends there). ``returns = A + V``
    are the value targets. Padding positions get 0 in both."""
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    length = rewards.size(1)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(length)):
        alive = mask[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        next_value = values[:, t + 1] * alive if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running * alive
        advantages[:, t] = running
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate; returns (loss, clip_fraction).

    ``loss = mean(max(-A * r, -A * clamp(r, 1 - clip, 1 + clip)))`` with ``r = exp(new - old)``, i.e. the
    pessimistic bound; ``clip_fraction`` is the share of real tokens where the clipped term was chosen
    (it has no gradient there)."""
    ratio = torch.exp(new_logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).to(new_logprobs.dtype), mask)
    return loss, clip_fraction.detach()


def value_loss(
    new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """Clipped value loss: ``0.5 * mean(max((V - R)^2, (V_clipped - R)^2))``, where ``V_clipped`` is the
    new value kept within ``clip`` of the value at rollout time."""
    clipped = old_values + torch.clamp(new_values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((new_values - returns) ** 2, (clipped - returns) ** 2), mask)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at every position, ``-sum p log p`` (``0 log 0 = 0``, so
    logits of ``-inf`` are allowed)."""
    return torch.special.entr(torch.softmax(logits.float(), dim=-1)).sum(dim=-1)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each of ``tokens`` under ``logits`` (same leading shape)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class FixedKLController:
    """A constant KL coefficient beta."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al.'s proportional controller: steer the observed KL towards ``target``.

    After each batch, ``beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon``: beta grows
    while the KL is above the target and shrinks while it is below, by at most 20% per ``horizon``
    samples."""

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        super().__init__(init_kl_coef)
        if target <= 0 or horizon <= 0:
            raise ValueError("the KL target and horizon must be positive")
        self.target, self.horizon = float(target), float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


class ScoreNormalizer:
    """Shift (and scale) reward-model scores by statistics fixed once, from the SFT policy's own answers.

    A pairwise-trained reward model leaves its mean score arbitrary; with a value head starting
    near zero, a large offset turns into advantages that favour short (or long) answers whatever
    the reward model prefers. InstructGPT biases the reward so that demonstrations score 0 on
    average; here the first rollout (the initial policy's samples) sets ``offset`` and ``scale``,
    which then stay fixed, so later improvements still show as a rising normalised reward.
    ``mode="batch"`` whitens every batch instead; ``"none"`` uses the scores as they are."""

    def __init__(self, mode: str = "initial") -> None:
        self.mode, self.offset, self.scale = mode, None, None

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return raw
        if self.mode == "batch":
            return (raw - raw.mean()) / (raw.std() + 1e-8) if len(raw) > 1 else raw - raw.mean()
        if self.offset is None:
            self.offset = raw.mean().item()
            self.scale = raw.std().item() if len(raw) > 1 else 1.0
            self.scale = self.scale if math.isfinite(self.scale) and self.scale > 1e-6 else 1.0
        return (raw - self.offset) / self.scale

    def state_dict(self) -> dict:
        return {"mode": self.mode, "offset": self.offset, "scale": self.scale}

    def load_state_dict(self, state: dict) -> None:
        self.offset, self.scale = state.get("offset"), state.get("scale")

"""PPO's loss module against numbers worked out by hand (comments show the arithmetic)."""

import math

import pytest
import torch

from training.ppo_loss import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    gae,
    kl_penalized_rewards,
    last_token_index,
    logprobs_from_logits,
    policy_loss,
    value_loss,
    whiten,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_kl_penalty_on_every_token_and_score_on_the_last_real_one():
    logp = t([-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0])
    ref = t([-1.5, -2.0, -2.0], [-1.0, -1.0, -1.0])
    mask = t([1, 1, 0], [1, 1, 1])
    rewards = kl_penalized_rewards(logp, ref, torch.tensor([2.0, -1.0]), mask, beta=0.1)
    # row 0: kl = [0.5, 0, (padding)] -> [-0.05, 0 + score 2, 0]; row 1: kl 0 everywhere, score on token 3
    torch.testing.assert_close(rewards, t([-0.05, 2.0, 0.0], [0.0, 0.0, -1.0]))


def test_last_token_index_of_prefix_masks():
    assert last_token_index(t([1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0])).tolist() == [1, 3, 0]


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards, values = t([1.0, 2.0, 3.0]), t([0.5, 1.0, 1.5])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    # reward-to-go = [1+2+3, 2+3, 3] = [6, 5, 3]
    torch.testing.assert_close(returns, t([6.0, 5.0, 3.0]))
    torch.testing.assert_close(advantages, t([5.5, 4.0, 1.5]))


def test_gae_discounts_and_stops_at_the_last_real_token():
    rewards, values = t([1.0, 2.0, 99.0]), t([1.0, 1.0, 7.0])
    advantages, returns = gae(rewards, values, t([1, 1, 0]), gamma=0.9, lam=0.5)
    # delta_1 = 2 + 0 - 1 = 1 (episode ends: no bootstrap from the padding value 7), A_1 = 1
    # delta_0 = 1 + 0.9 * 1 - 1 = 0.9, A_0 = 0.9 + 0.9 * 0.5 * 1 = 1.35
    torch.testing.assert_close(advantages, t([1.35, 1.0, 0.0]))
    torch.testing.assert_close(returns, t([2.35, 2.0, 0.0]))


def test_whiten_uses_only_real_tokens():
    out = whiten(t([1.0, 2.0, 3.0, 100.0]), t([1, 1, 1, 0]))
    # mean 2, unbiased variance ((1 + 0 + 1) / 2) = 1
    torch.testing.assert_close(out, t([-1.0, 0.0, 1.0, 0.0]), atol=1e-6, rtol=0)
    kept = whiten(t([1.0, 2.0, 3.0]), torch.ones(1, 3), shift_mean=False)
    torch.testing.assert_close(kept, t([1.0, 2.0, 3.0]), atol=1e-6, rtol=0)


def test_policy_loss_clips_at_ratio_1_3_and_counts_the_clipped_tokens():
    ratios = [1.3, 0.5, 1.1, 0.5, 10.0]
    new = torch.tensor([[math.log(r) for r in ratios]], requires_grad=True)
    old = torch.zeros(1, 5)
    advantages = t([1.0, 1.0, -1.0, -1.0, 5.0])
    mask = t([1, 1, 1, 1, 0])
    loss, clip_fraction = policy_loss(new, old, advantages, mask, clip=0.2)
    # token 1: max(-1.3, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5;
    # token 3: max(1.1, 1.1) = 1.1 (inside the range); token 4: max(0.5, 0.8) = 0.8 (clipped); token 5 masked
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1 + 0.8) / 4, abs=1e-6)
    assert clip_fraction.item() == pytest.approx(2 / 4)
    loss.backward()
    # the clipped tokens carry no gradient; d/dlogp of -A * r = -A * r / 4 elsewhere
    torch.testing.assert_close(new.grad, t([0.0, -0.5 / 4, 1.1 / 4, 0.0, 0.0]))


def test_value_loss_is_clipped_around_the_old_value():
    new, old, returns = t([0.5, -0.1]), t([0.0, 0.0]), t([1.0, 0.0])
    # token 1: (0.5 - 1)^2 = 0.25 vs clipped value 0.2: (0.2 - 1)^2 = 0.64 -> 0.64; token 2: 0.01 both ways
    loss = value_loss(new, old, returns, torch.ones(1, 2), clip=0.2)
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.01) / 2)


def test_entropy_and_logprobs_from_logits():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -math.inf, -math.inf]]])
    # uniform over 4: log 4; probabilities [0.25, 0.75]: -(0.25 ln 0.25 + 0.75 ln 0.75)
    expected = [math.log(4), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    torch.testing.assert_close(entropy_from_logits(logits), t(expected))
    torch.testing.assert_close(logprobs_from_logits(logits, torch.tensor([[2, 1]])), t([math.log(0.25), math.log(0.75)]))


def test_adaptive_kl_controller_moves_beta_towards_the_target():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(12.0, n_steps=100)  # error 1.0 clipped to 0.2: beta *= 1 + 0.2 * 100 / 10000
    assert ctl.value == pytest.approx(0.1 * 1.002)
    ctl.load_state_dict({"value": 0.1})
    ctl.update(6.6, n_steps=100)  # error 0.1: beta *= 1.001
    assert ctl.value == pytest.approx(0.1001)
    ctl.load_state_dict({"value": 0.1})
    ctl.update(3.0, n_steps=100)  # error -0.5 clipped to -0.2: beta *= 0.998
    assert ctl.value == pytest.approx(0.0998)
    assert ctl.state_dict() == {"value": pytest.approx(0.0998)}
    fixed = FixedKLController(0.05)
    fixed.update(100.0, n_steps=1000)
    assert fixed.value == 0.05

"""PPO details that change results: separate gradient clipping, the reward's scale and the critic's start,
answers cut without a stop token, the reward model's input encoding, dropout, and the KL controller."""

import copy
import dataclasses

import pytest
import torch

from tests.training.test_ppo import FAST, PROMPTS, fraction_reward_model
from training import ppo as ppo_module
from training import ppo_loss as L
from training import ppo_rollout
from training.ppo import PPOConfig, ppo_update, train_ppo
from training.reporting import ListReporter
from training.reward_data import encode_pair_texts

PROMPT_MESSAGES = [[{"role": "user", "content": p}] for p in PROMPTS]


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo-details")
    rm_dir = fraction_reward_model(tiny_model_dir, root / "rm")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(f'{{"messages": [{{"role": "user", "content": "{p}"}}]}}\n' for p in PROMPTS))
    return {"root": root, "policy": tiny_model_dir, "rm": rm_dir, "prompts": prompts}


def rollout_and_targets(models, config):
    tok, policy, value_head, ref, rm, rm_tok = ppo_module._load(models["policy"], models["rm"], None, None)
    torch.manual_seed(0)
    rollout = ppo_rollout.collect_rollout(policy, value_head, ref, tok, rm, rm_tok, PROMPT_MESSAGES, config)
    rewards = L.kl_penalized_rewards(rollout.logprobs, rollout.ref_logprobs, rollout.scores, rollout.response_mask,
                                     0.05)
    advantages, returns = L.gae(rewards, rollout.values, rollout.response_mask, 1.0, 0.95)
    return policy, value_head, rollout, L.whiten(advantages, rollout.response_mask), returns


def sgd_step(policy, value_head, rollout, advantages, returns, config):
    """One minibatch step with plain SGD (lr 1), so a parameter's change is its clipped gradient."""
    policy, value_head = copy.deepcopy(policy), copy.deepcopy(value_head)
    before = [p.detach().clone() for p in policy.parameters()]
    optimizer = torch.optim.SGD([{"params": list(policy.parameters()), "lr": 1.0},
                                 {"params": list(value_head.parameters()), "lr": 1.0}])
    stats = ppo_update(policy, value_head, optimizer, rollout, advantages, returns, config, 1, 0, None)
    return [p.detach() - b for p, b in zip(policy.parameters(), before, strict=True)], stats


def test_a_large_value_gradient_does_not_shrink_the_policy_step(models):
    config = PPOConfig(**FAST | {"mini_batch_size": 8, "ppo_epochs": 1, "max_grad_norm": 1e-3,
                                 "reward_max_length": 512})
    policy, value_head, rollout, advantages, returns = rollout_and_targets(models, config)
    quiet, _ = sgd_step(policy, value_head, rollout, advantages, returns, dataclasses.replace(config, vf_coef=0.0))
    loud, stats = sgd_step(policy, value_head, rollout, advantages, returns * 100,
                           dataclasses.replace(config, vf_coef=1000.0))
    assert stats["value_loss"] > 1.0
    step_norm = torch.sqrt(sum((d**2).sum() for d in quiet))
    assert step_norm == pytest.approx(1e-3, rel=1e-3)  # the policy's own clipped step
    for a, b in zip(quiet, loud, strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_updates_run_without_dropout_so_the_first_ratio_is_one(models):
    config = PPOConfig(**FAST | {"mini_batch_size": 8, "ppo_epochs": 1, "reward_max_length": 512})
    policy, value_head, rollout, advantages, returns = rollout_and_targets(models, config)
    for layer in policy.model.layers:
        layer.self_attn.attention_dropout = 0.5  # a policy trained with attention dropout
    optimizer = torch.optim.SGD(list(policy.parameters()) + list(value_head.parameters()), lr=0.0)
    stats = ppo_update(policy, value_head, optimizer, rollout, advantages, returns, config, 1, 0, None)
    assert stats["approx_kl"] == pytest.approx(0.0, abs=1e-10)
    assert stats["clip_fraction"] == 0.0


def test_the_default_kl_controller_moves_beta_within_a_run():
    config = PPOConfig()
    controller = L.AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon)
    for _ in range(config.iterations):
        controller.update(2 * config.kl_target, config.batch_size)
    assert controller.value > 1.5 * config.init_kl_coef  # a KL twice the target raises beta by half or more


def test_answers_cut_without_a_stop_token_are_marked():
    responses = torch.tensor([[5, 7, 2, 0], [5, 6, 7, 8], [2, 2, 2, 2]])
    assert ppo_rollout.truncated_answers(responses, [2]).tolist() == [False, True, False]


def run(models, name, **config):
    return train_ppo(models["policy"], models["rm"], models["prompts"], models["root"] / name,
                     PPOConfig(**FAST | config), ListReporter())


def test_truncated_answers_are_penalised(models, monkeypatch):
    monkeypatch.setattr(ppo_rollout, "reward_model_scores", lambda rm, tok, prompts, answers, *a, **k:
                        torch.zeros(len(answers)))
    point = run(models, "cut", iterations=1, max_new_tokens=3, missing_eos_penalty=2.0,
                score_normalization="none")["iterations"][0]
    assert point["truncated"] > 0.5  # three tokens rarely reach a stop token
    assert point["score"] == pytest.approx(-2.0 * point["truncated"], abs=1e-5)


def test_a_constant_added_to_every_reward_model_score_changes_nothing(models, monkeypatch):
    real = ppo_rollout.reward_model_scores

    def runs_with_offset(offset, name):
        monkeypatch.setattr(ppo_rollout, "reward_model_scores", lambda *a, **k: real(*a, **k) + offset)
        return run(models, name, iterations=2)["iterations"]

    plain, shifted = runs_with_offset(0.0, "plain"), runs_with_offset(25.0, "shifted")
    assert shifted[0]["reward"] == pytest.approx(plain[0]["reward"] + 25.0, abs=1e-4)
    for a, b in zip(plain, shifted, strict=True):
        assert b["score"] == pytest.approx(a["score"], abs=1e-4)
        assert b["policy_loss"] == pytest.approx(a["policy_loss"], abs=1e-4)
        assert b["response_length"] == pytest.approx(a["response_length"], abs=1e-6)


def test_the_value_head_is_warmed_up_on_the_first_rollout(models):
    point = run(models, "warm", iterations=1)["iterations"][0]
    # a zero head predicts 0 everywhere; after warm-up it predicts the first rollout's returns far better
    assert point["value_loss_after_warmup"] < 0.5 * point["value_loss_before_warmup"]
    assert "value_loss_before_warmup" not in run(models, "cold", iterations=1, value_warmup_steps=0)["iterations"][0]


def test_the_reward_model_reads_what_it_was_trained_on(models):
    """A prompt longer than the reward model's training length: PPO cuts it as reward training does."""
    from training.reward import load_reward_model, score_sequences

    long_prompt = [[{"role": "user", "content": "Tell a joke. " * 20}]] * 8
    config = PPOConfig(**FAST | {"reward_max_length": 16})
    tok, policy, value_head, ref, rm, rm_tok = ppo_module._load(models["policy"], models["rm"], None, None)
    torch.manual_seed(0)
    rollout = ppo_rollout.collect_rollout(policy, value_head, ref, tok, rm, rm_tok, long_prompt, config)
    rm, rm_tok = load_reward_model(models["rm"])
    trained_as = [encode_pair_texts(rm_tok, p, [a], 16)[0] for p, a in zip(long_prompt, rollout.answers, strict=True)]
    expected = score_sequences(rm, trained_as, rm_tok.pad_token_id)
    assert rollout.raw_scores.tolist() == pytest.approx(expected, abs=1e-5)


def test_a_reward_length_of_zero_reads_the_length_the_reward_model_was_trained_with(models, tmp_path, monkeypatch):
    """A reward model trained at 16 tokens is read at 16 when PPO's ``reward_max_length`` is 0 (the default),
    not at the reward stage's default length."""
    import shutil

    from training.reward_data import SETTINGS_FILE

    rm_dir = tmp_path / "rm16"
    shutil.copytree(models["rm"], rm_dir)
    (rm_dir / SETTINGS_FILE).write_text('{"max_length": 16}')
    lengths = []
    real = ppo_module.collect_rollout

    def recording(*args):
        lengths.append(args[-1].reward_max_length)
        return real(*args)

    monkeypatch.setattr(ppo_module, "collect_rollout", recording)
    config = PPOConfig(**FAST | {"iterations": 1, "reward_max_length": 0})
    train_ppo(models["policy"], rm_dir, models["prompts"], tmp_path / "out", config, ListReporter())
    assert lengths == [16]

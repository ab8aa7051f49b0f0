"""The fine-tuned reward recipe (``backbone: trained``) on a model deeper than its default ``train_layers``:
only the top layers, the final norm and the head learn, the rest stay the parent's, and the model still
learns the preference. (The frozen default is tested in test_reward_head.py.)"""

import pytest
import torch

from tests.training.test_reward import FAST, synthetic_rankings, write_jsonl
from training.reporting import ListReporter
from training.reward import RewardConfig, train_reward

DEPTH = 10  # deeper than the default train_layers, so the default freezes the bottom of it


@pytest.fixture(scope="module")
def deep_tiny_model_dir(tmp_path_factory):
    from training.tiny import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("deep-tiny"), hidden_size=32, layers=DEPTH, heads=2)


@pytest.fixture(scope="module")
def trained_with_defaults(deep_tiny_model_dir, tmp_path_factory):
    data = write_jsonl(tmp_path_factory.mktemp("rankings") / "train.jsonl", synthetic_rankings(60))
    out = tmp_path_factory.mktemp("reward") / "model"
    reporter = ListReporter()
    # the recipe's defaults; only the learning rate is a tiny random model's (FAST), not SmolLM2's
    config = RewardConfig(epochs=3, **FAST)
    metrics = train_reward(deep_tiny_model_dir, data, out, config, reporter)
    return out, metrics, reporter, config


def test_the_default_trains_only_the_top_layers(deep_tiny_model_dir, trained_with_defaults):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    out, _, _, config = trained_with_defaults
    assert 0 < config.train_layers < DEPTH
    parent = AutoModelForCausalLM.from_pretrained(deep_tiny_model_dir).model.state_dict()
    trained = AutoModelForSequenceClassification.from_pretrained(out).model.state_dict()
    first_trained = DEPTH - config.train_layers
    frozen = [n for n in parent if n == "embed_tokens.weight"
              or (n.startswith("layers.") and int(n.split(".")[1]) < first_trained)]
    learning = [n for n in parent if n.startswith("layers.") and int(n.split(".")[1]) >= first_trained
                and n.endswith("proj.weight")]
    assert frozen and learning
    assert all(torch.equal(parent[n], trained[n]) for n in frozen)
    changed_layers = {int(n.split(".")[1]) for n in learning if not torch.equal(parent[n], trained[n])}
    assert changed_layers == set(range(first_trained, DEPTH))  # every trained layer moved


def test_the_default_recipe_learns_the_preference_on_held_out_prompts(trained_with_defaults):
    _, metrics, reporter, _ = trained_with_defaults
    assert metrics["eval_accuracy"] >= 0.8  # chance is 0.5; the rule ("thanks") is learnable from the top layers
    losses = [m["loss"] for m in reporter.metrics]
    assert sum(losses[-3:]) / 3 < 0.6 * losses[0]

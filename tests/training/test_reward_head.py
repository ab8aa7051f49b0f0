"""The default reward recipe: a frozen base reads each answer once and only the score head is fit
(``training.reward_head``). It learns a preference on held-out prompts, the saved model scores exactly
what the fit measured, the base's weights stay the parent's, and a run stopped mid-way resumes from the
states it had read."""

import json
from dataclasses import asdict

import pytest
import torch

from tests.training.test_reward import synthetic_rankings, write_jsonl
from training.errors import TrainingError
from training.reporting import ListReporter, RunCancelled
from training.reward import RewardConfig, load_reward_model, score_texts, train_reward
from training.reward_head import L2_GRID, fit_logistic, tapped_layers
from training.stage_configs import config_build

SMALL = dict(eval_fraction=0.2, micro_batch_tokens=256, eval_batch_size=4)  # several micro-batches per set


@pytest.fixture(scope="module")
def rankings(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("rankings") / "train.jsonl", synthetic_rankings(60))


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, rankings, tmp_path_factory):
    out = tmp_path_factory.mktemp("reward-head") / "model"
    reporter = ListReporter()
    metrics = train_reward(tiny_model_dir, rankings, out, RewardConfig(**SMALL), reporter)
    return out, metrics, reporter


def test_the_frozen_default_learns_the_preference_on_held_out_prompts(fitted):
    _, metrics, reporter = fitted
    assert RewardConfig().backbone == "frozen" and metrics["backbone"] == "frozen"
    assert metrics["eval_accuracy"] >= 0.9 > metrics["eval_accuracy_initial"]  # chance is 0.5
    assert metrics["head_l2"] in L2_GRID and set(metrics["head_cv_accuracy"]) == {str(v) for v in L2_GRID}
    assert metrics["pairs_train"] + metrics["pairs_eval"] == 60 * 4 and metrics["prompts_eval"] == 12
    steps = [s for s, _ in reporter.steps]
    assert steps == list(range(1, metrics["steps"] + 1)) and metrics["steps"] > 3  # progress per micro-batch
    assert all(m["eta_seconds"] >= 0 for m in reporter.metrics) and reporter.metrics[-1]["eta_seconds"] == 0


def test_the_saved_model_scores_what_the_fit_measured_and_keeps_the_parents_base(fitted, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    out, _, _ = fitted
    model, tokenizer = load_reward_model(out)
    assert model.config.reward_pooling == "answer_mean"
    assert model.config.reward_layers == [1, 2] == tapped_layers(2, 4)  # the tiny model has 2 layers
    assert tuple(model.score.weight.shape) == (2, model.config.hidden_size)
    prompt = [{"role": "user", "content": "blue sea?"}]
    answers = ["the sea is blue thanks", "the sea is blue", "thanks fox dog", "fox dog"]
    scores = score_texts(model, tokenizer, [prompt] * 4, answers)
    assert scores[0] > scores[1] and scores[2] > scores[3]
    parent = AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.state_dict()
    saved = model.model.state_dict()
    assert all(torch.equal(parent[name], saved[name]) for name in parent)


def test_the_reported_held_out_accuracy_is_the_saved_models(fitted, rankings):
    from training.reward_data import encode_rankings, read_rankings, split_by_prompt
    from training.reward_scoring import pairwise_accuracy

    out, metrics, _ = fitted
    model, tokenizer = load_reward_model(out)
    config = RewardConfig(**SMALL)
    _, held_out = split_by_prompt(read_rankings(rankings), config.eval_fraction, config.seed)
    encoded, _ = encode_rankings(tokenizer, held_out, config.max_length)
    assert pairwise_accuracy(model, encoded, tokenizer.pad_token_id, 4) == pytest.approx(metrics["eval_accuracy"])


def test_a_stopped_run_resumes_from_the_states_it_had_read(tiny_model_dir, rankings, fitted, tmp_path):
    class StopAt(ListReporter):
        def progress(self, step, total, metrics=None):
            super().progress(step, total, metrics)
            if step == 3:
                raise RunCancelled("worker lost")

    config = RewardConfig(**SMALL, checkpoint_every=2)
    first = StopAt()
    with pytest.raises(RunCancelled):
        train_reward(tiny_model_dir, rankings, tmp_path / "out", config, first, checkpoint_dir=tmp_path / "ckpt")
    assert [step for _, step in first.checkpoints] == [2]
    second = ListReporter()
    resumed = train_reward(tiny_model_dir, rankings, tmp_path / "out", config, second,
                           resume_from=first.checkpoints[-1][0], checkpoint_dir=tmp_path / "ckpt")

    assert resumed["resumed_from_step"] == 2 and second.steps[0][0] == 3
    assert [step for _, step in second.checkpoints][:2] == [4, 6]
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == [second.checkpoints[-1][0].name]  # the newest only
    assert resumed["eval_accuracy"] == fitted[1]["eval_accuracy"] and resumed["head_l2"] == fitted[1]["head_l2"]
    again, _ = load_reward_model(tmp_path / "out")
    before, _ = load_reward_model(fitted[0])
    assert torch.allclose(again.score.weight, before.score.weight, atol=1e-5)


def test_a_fixed_penalty_is_used_as_given_and_bad_settings_are_refused(tiny_model_dir, rankings, tmp_path):
    metrics = train_reward(tiny_model_dir, rankings, tmp_path / "out", RewardConfig(**SMALL, head_l2=0.5, head_layers=1))
    assert metrics["head_l2"] == 0.5 and metrics["head_cv_accuracy"] == {}
    assert metrics["layers_read"] == [2] and metrics["eval_accuracy"] >= 0.8  # the final state alone
    assert load_reward_model(tmp_path / "out")[0].score.weight.shape[0] == 1
    for bad, field in (({"backbone": "half"}, "backbone"), ({"head_folds": 1}, "head_folds"),
                       ({"head_l2": -1}, "head_l2"), ({"head_layers": 0}, "head_layers")):
        with pytest.raises(ValueError, match=field):
            RewardConfig.from_dict(bad)
    with pytest.raises(ValueError, match='learning_rate only apply when the base is fine-tuned: add "backbone": "trained"'):
        RewardConfig.from_dict({"learning_rate": 1e-4, "epochs": 1})
    with pytest.raises(ValueError, match="head_l2 only apply to the frozen backbone"):
        RewardConfig.from_dict({"backbone": "trained", "head_l2": 0.5})
    with pytest.raises(ValueError, match="head_layers only apply to the frozen backbone"):
        RewardConfig.from_dict({"backbone": "trained", "head_layers": 2})
    assert RewardConfig.from_dict({"backbone": "trained", "learning_rate": 1e-4}).learning_rate == 1e-4
    with pytest.raises(TrainingError, match='epochs only apply when the base is fine-tuned'):  # a run's config
        config_build("reward", {"epochs": 2})
    assert config_build("reward", {"backbone": "trained", "epochs": 2}).epochs == 2
    whole = asdict(RewardConfig())  # what a run stores and torchrun passes on: every key, the others at defaults
    assert RewardConfig.from_dict(json.loads(json.dumps(whole))) == RewardConfig()


def test_the_logistic_fit_separates_what_is_separable_and_a_larger_penalty_shrinks_it():
    torch.manual_seed(0)
    direction = torch.randn(16, dtype=torch.float64)
    diffs = torch.randn(200, 16, dtype=torch.float64)
    diffs = diffs * torch.sign(diffs @ direction)[:, None]  # every pair "better" along the direction
    weights = torch.ones(200, dtype=torch.float64)
    loose, tight = fit_logistic(diffs, weights, 0.01), fit_logistic(diffs, weights, 1.0)
    assert float(((diffs @ loose) > 0).double().mean()) > 0.95
    assert tight.norm() < loose.norm()
    cosine = torch.nn.functional.cosine_similarity(loose, direction, dim=0)
    assert cosine > 0.8


def test_the_states_read_spread_over_the_top_of_the_depth_and_end_at_the_final_one():
    assert tapped_layers(30, 4) == [12, 18, 24, 30]  # SmolLM2-135M: what held out 0.686 on HH (operations.md)
    assert tapped_layers(30, 1) == [30] and tapped_layers(24, 3) == [10, 17, 24]
    assert tapped_layers(2, 4) == [1, 2] and tapped_layers(1, 4) == [1]  # a shallow model has fewer to read


def test_a_two_process_read_resumed_from_its_checkpoint_counts_each_answer_once(tiny_model_dir, rankings, tmp_path,
                                                                               monkeypatch):
    """Under torchrun rank 0 saves every rank's states summed; on resume the other ranks start from zeros, so
    the final sum over ranks is the one-process read. (Ranks are played in turn here, their sum taken by hand.)"""
    from pathlib import Path

    from training import reward_head
    from training.reward import _load
    from training.reward_data import encode_rankings, read_rankings

    config = RewardConfig(**SMALL)
    model, tokenizer = _load(Path(tiny_model_dir), None, config)
    model.eval()
    encoded, _ = encode_rankings(tokenizer, read_rankings(rankings), config.max_length)

    def as_rank(rank: int, size: int = 2) -> None:
        monkeypatch.setattr(reward_head, "world", lambda: (rank, size))

    def reader():
        return reward_head.StatePass(model, {"train": encoded}, tokenizer.pad_token_id, config, torch.device("cpu"))

    as_rank(0, 1)
    alone = reader()
    while alone.done < len(alone.jobs):
        alone.step()
    assert len(alone.jobs) > 4

    ranks = [reader(), reader()]
    for _ in range(3):
        for rank, state_pass in enumerate(ranks):
            as_rank(rank)
            state_pass.step()
    as_rank(0)
    ranks[0].save(tmp_path, {"train": ranks[0].states["train"] + ranks[1].states["train"]})

    resumed = [reader(), reader()]
    for rank, state_pass in enumerate(resumed):
        as_rank(rank)
        state_pass.resume(tmp_path)
        assert state_pass.done == 3
        while state_pass.done < len(state_pass.jobs):
            state_pass.step()
    total = resumed[0].states["train"] + resumed[1].states["train"]
    assert torch.allclose(total, alone.states["train"], atol=1e-5)
    assert bool((alone.states["train"].abs().sum(1) > 0).all())  # every answer was read

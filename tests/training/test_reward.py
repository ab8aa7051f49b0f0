"""The reward-model stage fine-tuned (``backbone: trained``; the frozen default is in test_reward_head.py): the grouped InstructGPT loss, training on rankings, the by-prompt split,
truncation, resume, and scoring for PPO and the demo's win-rate."""

import json
import math
import random

import pytest
import torch

from training.reporting import ListReporter, RunCancelled, TrainingDiverged
from training.reward import (
    RewardConfig,
    grouped_ranking_loss,
    load_reward_model,
    score_texts,
    sequence_scores,
    train_reward,
)
from training.reward_data import collate, encode_pair_texts, fit, read_rankings, split_by_prompt

FILLER = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "sea", "wide", "blue", "deep", "plants",
          "light", "water", "air", "sugar"]
FAST = dict(backbone="trained", learning_rate=3e-3, batch_size=8, micro_batch_size=8, warmup_ratio=0.0, eval_fraction=0.2)


def log_sigmoid(x: float) -> float:
    return math.log(1 / (1 + math.exp(-x)))


def synthetic_rankings(n_prompts: int, seed: int = 0, repeats: int = 1) -> list[dict]:
    """K=4 answers per prompt; the two that say "thanks" are tied best, the other two tied worst."""
    rng = random.Random(seed)
    rows = []
    for pid in range(n_prompts):
        prompt = [{"role": "user", "content": " ".join(rng.choices(FILLER, k=5)) + "?"}]
        for _ in range(repeats):
            answers = []
            for k in range(4):
                words = rng.choices(FILLER, k=rng.randint(4, 8))
                if k < 2:
                    words.insert(rng.randint(0, len(words)), "thanks")
                answers.append((" ".join(words), 0 if k < 2 else 1))
            rng.shuffle(answers)
            rows.append({"prompt": prompt, "completions": [a for a, _ in answers], "ranks": [r for _, r in answers],
                         "prompt_id": pid})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def rankings_file(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("rankings") / "train.jsonl", synthetic_rankings(60))


@pytest.fixture(scope="module")
def trained(tiny_model_dir, rankings_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("reward") / "model"
    reporter = ListReporter()
    metrics = train_reward(tiny_model_dir, rankings_file, out, RewardConfig(epochs=3, **FAST), reporter)
    return out, metrics, reporter


# --- the loss on hand-computed numbers ---

def test_grouped_loss_of_a_full_ranking_is_the_mean_of_its_three_pairwise_losses():
    loss = grouped_ranking_loss(torch.tensor([2.0, 1.0, 0.0]), torch.tensor([0, 1, 2]))
    # pairs (better, worse): (0,1) margin 1, (0,2) margin 2, (1,2) margin 1
    expected = -(log_sigmoid(1.0) + log_sigmoid(2.0) + log_sigmoid(1.0)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx((2 * 0.313262 + 0.126928) / 3, abs=1e-5)  # ln(1+e^-1), ln(1+e^-2)


def test_grouped_loss_skips_ties_and_reads_ranks_not_positions():
    # answers 0 and 2 tie for best, answer 1 is worst: pairs (0,1) margin 1.5 and (2,1) margin -0.5
    loss = grouped_ranking_loss(torch.tensor([0.5, -1.0, -1.5]), torch.tensor([0, 1, 0]))
    expected = -(log_sigmoid(1.5) + log_sigmoid(-0.5)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_a_ranking_of_only_ties_contributes_zero_loss_and_a_finite_zero_gradient():
    scores = torch.tensor([0.3, -2.0, 1.0], requires_grad=True)
    loss = grouped_ranking_loss(scores, torch.tensor([1, 1, 1]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(scores.grad, torch.zeros(3))


# --- the model and its score ---

def tiny_reward_model(folder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1,
                                                               pad_token_id=tokenizer.pad_token_id)
    return model, tokenizer


def test_the_score_is_read_at_the_last_real_token_like_transformers_and_ignores_padding(tiny_model_dir):
    model, tokenizer = tiny_reward_model(tiny_model_dir)
    model.eval()
    prompt = [{"role": "user", "content": "What is the capital of France?"}]
    sequences = encode_pair_texts(tokenizer, prompt, ["Paris.", "The capital of France is Paris, by the sea."], 512)
    input_ids, mask = collate(sequences, tokenizer.pad_token_id)
    assert input_ids[0, -1] == tokenizer.pad_token_id  # the short one is right-padded
    with torch.no_grad():
        ours = sequence_scores(model, input_ids, mask)
        theirs = model(input_ids=input_ids, attention_mask=mask).logits[:, 0]
        alone = sequence_scores(model, torch.tensor([sequences[0]]), torch.ones(1, len(sequences[0]), dtype=torch.long))
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert ours[0].item() == pytest.approx(alone.item(), abs=1e-5)


def test_one_optimizer_step_changes_the_weights_and_lowers_the_loss(tiny_model_dir):
    model, tokenizer = tiny_reward_model(tiny_model_dir)
    prompt = [{"role": "user", "content": "Say something nice."}]
    sequences = encode_pair_texts(tokenizer, prompt, ["good thanks", "bad", "no"], 512)
    ranks = torch.tensor([0, 1, 2])
    input_ids, mask = collate(sequences, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = model.score.weight.detach().clone()
    loss = grouped_ranking_loss(sequence_scores(model, input_ids, mask), ranks)
    loss.backward()
    optimizer.step()
    after = grouped_ranking_loss(sequence_scores(model, input_ids, mask), ranks)
    assert not torch.equal(before, model.score.weight)
    assert after.item() < loss.item()


# --- training ---

def test_the_reward_model_learns_the_preference_rule_on_held_out_prompts(trained, rankings_file):
    _, metrics, reporter = trained
    assert metrics["eval_accuracy"] >= 0.9 > metrics["eval_accuracy_initial"]
    assert len(metrics["accuracy_by_epoch"]) == 3
    assert metrics["pairs_train"] + metrics["pairs_eval"] == 60 * 4  # 2x2 tiers: 4 non-tie pairs per ranking
    assert metrics["prompts_eval"] == 12
    losses = [m["loss"] for m in reporter.metrics]
    assert sum(losses[-3:]) / 3 < 0.5 * losses[0]
    assert reporter.steps[-1] == (metrics["steps"], metrics["steps"])


def test_the_saved_reward_model_loads_and_prefers_the_rule_on_new_texts(trained):
    from transformers import AutoModelForSequenceClassification

    out, _, _ = trained
    plain = AutoModelForSequenceClassification.from_pretrained(out)
    assert plain.config.num_labels == 1 and plain.config.pad_token_id is not None
    assert plain.config.reward_pooling == "answer_mean"  # the default, saved: every scorer reads it the same way
    model, tokenizer = load_reward_model(out)
    prompt = [{"role": "user", "content": "blue sea?"}]
    prompts = [prompt] * 4
    answers = ["the sea is blue thanks", "the sea is blue", "thanks fox dog", "fox dog"]
    batched = score_texts(model, tokenizer, prompts, answers, batch_size=4)
    one_by_one = [score_texts(model, tokenizer, [prompt], [a])[0] for a in answers]
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    assert batched[0] > batched[1] and batched[2] > batched[3]


def test_the_split_never_puts_one_prompts_rankings_on_both_sides(tmp_path):
    rows = synthetic_rankings(30, repeats=3)
    for row in rows[::2]:
        row["prompt_id"] += 1000  # the same text entered twice is still one prompt for the split
    rankings = read_rankings(write_jsonl(tmp_path / "r.jsonl", rows))
    train, held_out = split_by_prompt(rankings, 0.2, seed=1)
    key = lambda r: json.dumps(r.prompt)  # noqa: E731
    assert {key(r) for r in train}.isdisjoint({key(r) for r in held_out})
    assert len(train) + len(held_out) == 90 and len(held_out) % 3 == 0 and held_out
    again, _ = split_by_prompt(rankings, 0.2, seed=1)
    other, _ = split_by_prompt(rankings, 0.2, seed=2)
    assert [key(r) for r in again] == [key(r) for r in train]
    assert {key(r) for r in other} != {key(r) for r in train}


def test_a_long_pair_is_truncated_from_the_prompt_side_not_dropped(tiny_model_dir, tmp_path):
    ids, cut, answer_cut = fit(list(range(100)), [500, 501, 502], 20)
    assert ids == [*range(83, 100), 500, 501, 502] and cut and not answer_cut
    ids, _, answer_cut = fit(list(range(10)), list(range(500, 540)), 20)
    assert len(ids) == 20 and answer_cut and ids[-1] == 539 and ids[:5] == list(range(5, 10))

    rows = synthetic_rankings(10)
    rows[0]["prompt"][0]["content"] = " ".join(["water"] * 200)
    metrics = train_reward(tiny_model_dir, write_jsonl(tmp_path / "r.jsonl", rows), tmp_path / "out",
                           RewardConfig(max_length=64, **FAST))
    assert metrics["rankings_train"] + metrics["rankings_eval"] == 10
    assert metrics["truncated_sequences"] == 4 and metrics["longest_sequence"] == 64


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_stopped_run_resumes_from_its_checkpoint_to_the_same_model(tiny_model_dir, rankings_file, tmp_path, lora):
    from transformers import AutoModelForSequenceClassification

    config = RewardConfig(epochs=2, checkpoint_every=4, lora=lora, lora_r=4, lora_alpha=8, **FAST)
    straight = train_reward(tiny_model_dir, rankings_file, tmp_path / "straight", config)

    class StopAfter(ListReporter):
        def progress(self, step, total, metrics=None):
            super().progress(step, total, metrics)
            if step == 5:
                raise RunCancelled("worker lost")

    first = StopAfter()
    with pytest.raises(RunCancelled):
        train_reward(tiny_model_dir, rankings_file, tmp_path / "resumed", config, first,
                     checkpoint_dir=tmp_path / "ckpt")
    assert [step for _, step in first.checkpoints] == [4]
    second = ListReporter()
    resumed = train_reward(tiny_model_dir, rankings_file, tmp_path / "resumed", config, second,
                           resume_from=first.checkpoints[0][0], checkpoint_dir=tmp_path / "ckpt")
    assert resumed["resumed_from_step"] == 4 and second.steps[0][0] == 5
    assert resumed["steps"] == straight["steps"] == second.steps[-1][0]
    assert resumed["eval_accuracy_initial"] == straight["eval_accuracy_initial"]
    assert resumed["accuracy_by_epoch"] == pytest.approx(straight["accuracy_by_epoch"])
    a = AutoModelForSequenceClassification.from_pretrained(tmp_path / "straight").state_dict()
    b = AutoModelForSequenceClassification.from_pretrained(tmp_path / "resumed").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_nan_loss_stops_the_run_naming_the_step(tiny_model_dir, rankings_file, tmp_path, monkeypatch):
    import training.reward as reward

    monkeypatch.setattr(reward, "grouped_ranking_loss", lambda scores, ranks: scores.sum() * float("nan"))
    with pytest.raises(TrainingDiverged, match="at step 1"):
        train_reward(tiny_model_dir, rankings_file, tmp_path / "out", RewardConfig(**FAST))


def test_lora_training_saves_a_merged_reward_model(tiny_model_dir, rankings_file, tmp_path):
    from transformers import AutoModelForSequenceClassification

    metrics = train_reward(tiny_model_dir, rankings_file, tmp_path / "out",
                           RewardConfig(lora=True, lora_r=4, lora_alpha=8, **FAST))
    assert metrics["lora"] and metrics["eval_accuracy"] is not None
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")
    assert not any("lora" in name for name in model.state_dict())


def test_max_steps_overrides_epochs_and_still_measures_the_final_model(tiny_model_dir, rankings_file, tmp_path):
    reporter = ListReporter()
    metrics = train_reward(tiny_model_dir, rankings_file, tmp_path / "out", RewardConfig(max_steps=3, **FAST), reporter)
    assert metrics["steps"] == 3 and reporter.steps[-1] == (3, 3)
    assert len(metrics["accuracy_by_epoch"]) == 1 and metrics["eval_accuracy"] == metrics["accuracy_by_epoch"][0]


def test_unknown_settings_and_rankings_without_pairs_are_refused(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="warmup"):
        RewardConfig.from_dict({"warmup": 3})
    with pytest.raises(ValueError, match="pooling must be one of answer_mean, last"):
        RewardConfig.from_dict({"pooling": "max"})
    rows = [{"prompt": [{"role": "user", "content": "hi"}], "completions": ["a", "b"], "ranks": [0, 0]}]
    with pytest.raises(ValueError, match="no training ranking"):
        train_reward(tiny_model_dir, write_jsonl(tmp_path / "r.jsonl", rows), tmp_path / "out", RewardConfig())


def test_a_nan_gradient_stops_reward_training_at_its_step(tiny_model_dir, rankings_file, tmp_path, monkeypatch):
    from training import reward as stage

    def poison_gradients(model):
        next(p for p in model.parameters() if p.grad is not None).grad.view(-1)[0] = math.nan

    monkeypatch.setattr(stage, "average_gradients", poison_gradients)
    with pytest.raises(TrainingDiverged, match=r"reward-model gradient norm became nan at step 1\b"):
        train_reward(tiny_model_dir, rankings_file, tmp_path / "out", RewardConfig(max_steps=2, **FAST))


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_train_layers_leaves_the_lower_layers_and_embeddings_as_the_parent_had_them(tiny_model_dir, rankings_file,
                                                                                     tmp_path, lora):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    parent = AutoModelForCausalLM.from_pretrained(tiny_model_dir).model.state_dict()
    extra = dict(lora=True, lora_r=4, lora_alpha=8) if lora else {}
    train_reward(tiny_model_dir, rankings_file, tmp_path / "out", RewardConfig(max_steps=3, train_layers=1, **FAST,
                                                                                 **extra))
    trained = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").model.state_dict()
    top = max(int(name.split(".")[1]) for name in parent if name.startswith("layers."))
    below = [n for n in parent if not n.startswith(f"layers.{top}.") and n != "norm.weight"]
    above = [n for n in parent if n.startswith(f"layers.{top}.") and n.endswith("proj.weight")]
    assert top >= 1 and "embed_tokens.weight" in below
    assert all(torch.equal(parent[n], trained[n]) for n in below)
    assert any(not torch.equal(parent[n], trained[n]) for n in above)

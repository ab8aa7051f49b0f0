"""Packed reward-model training: a ranking's answers share one encoding of their prompt, yet each answer
scores exactly as it would alone; long conversations lose their oldest tokens, never a pair."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import torch

from training.reporting import ListReporter
from training.reward import RewardConfig, grouped_ranking_loss, packed_scores, sequence_scores, train_reward
from training.reward_data import (
    encode_for_scoring,
    encode_ranking,
    epoch_batches,
    micro_batches,
    pack,
    reward_max_length,
)

CONVERSATION = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy? Say why."},
]


@pytest.fixture(scope="module")
def tiny_rm(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1,
                                                               pad_token_id=tokenizer.pad_token_id)
    return model, tokenizer


def alone(model, ids: list[int], answer_length: int) -> float:
    return sequence_scores(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), [answer_length]).item()


@pytest.mark.parametrize("pooling", ["answer_mean", "last"])
def test_each_packed_answer_scores_exactly_as_it_does_alone(tiny_rm, pooling):
    model, tokenizer = tiny_rm
    model.eval()
    model.config.reward_pooling = pooling
    long_one = encode_ranking(tokenizer, CONVERSATION, ["Rome, because it is the seat of government.", "Milan.",
                                                        "I do not know the answer to that one, sorry."], 512)
    short_one = encode_ranking(tokenizer, CONVERSATION[1:2], ["Paris.", "Lyon, the city of lights and food."], 512)
    packed = pack([long_one, short_one], tokenizer.pad_token_id)  # two rows: the short one is padded

    with torch.no_grad():
        scores = packed_scores(model, packed, torch.device("cpu")).tolist()
    expected = [alone(model, ids, len(answer)) for ranking in (long_one, short_one)
                for ids, answer in zip(ranking.sequences, ranking.answers, strict=True)]

    assert packed.input_ids.shape == (2, long_one.length)
    assert long_one.length < sum(len(s) for s in long_one.sequences)  # the prompt is in the row once
    assert scores == pytest.approx(expected, abs=1e-5)


def test_an_answer_mean_score_is_the_head_on_the_answers_mean_state_and_needs_the_answers_length(tiny_rm):
    model, tokenizer = tiny_rm
    model.eval()
    model.config.reward_pooling = "answer_mean"
    ranking = encode_ranking(tokenizer, CONVERSATION, ["Rome, because it is the seat of government."], 512)
    ids, answer = ranking.sequences[0], ranking.answers[0]
    with torch.no_grad():
        hidden = model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        by_hand = model.score(hidden[len(ids) - len(answer):].mean(0)).item()
        at_last = model.score(hidden[-1]).item()
        score = alone(model, ids, len(answer))
        with pytest.raises(ValueError, match="answer_lengths"):
            sequence_scores(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))

    assert score == pytest.approx(by_hand, abs=1e-5)
    assert abs(score - at_last) > 1e-3  # the prompt's tokens and the last token alone are not what it reads


@pytest.fixture(scope="module")
def two_state_rm(tiny_model_dir):
    """A head with one row for the first layer's output and one for the final state (the frozen recipe's shape)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2,
                                                               pad_token_id=tokenizer.pad_token_id).eval()
    model.config.reward_layers = [1, 2]
    return model, tokenizer


@pytest.mark.parametrize("pooling", ["answer_mean", "last"])
def test_a_head_reading_several_hidden_states_adds_each_rows_score_packed_or_alone(two_state_rm, pooling):
    model, tokenizer = two_state_rm
    model.config.reward_pooling = pooling
    ranking = encode_ranking(tokenizer, CONVERSATION, ["Rome, because it is the seat of government.", "Milan."], 512)
    with torch.no_grad():
        packed = packed_scores(model, pack([ranking], tokenizer.pad_token_id), torch.device("cpu")).tolist()
        by_hand, final_row_only = [], []
        for ids, answer in zip(ranking.sequences, ranking.answers, strict=True):
            states = model.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            span = slice(len(ids) - len(answer), None) if pooling == "answer_mean" else slice(-1, None)
            rows = [float(model.score.weight[row] @ states[layer][0, span].mean(0)) for row, layer in enumerate([1, 2])]
            by_hand.append(sum(rows))
            final_row_only.append(rows[1])
        alone_scores = [alone(model, ids, len(answer)) for ids, answer in zip(ranking.sequences, ranking.answers,
                                                                               strict=True)]

    assert packed == pytest.approx(by_hand, abs=1e-5) and alone_scores == pytest.approx(by_hand, abs=1e-5)
    assert by_hand != pytest.approx(final_row_only, abs=1e-3)  # the first layer's row counts


def test_a_head_whose_rows_do_not_match_the_states_it_reads_is_refused(two_state_rm):
    model, tokenizer = two_state_rm
    ranking = encode_ranking(tokenizer, CONVERSATION, ["Rome."], 512)
    packed = pack([ranking], tokenizer.pad_token_id)
    for layers, message in (([0, 1, 2], "the score head has 2 rows for 3 hidden states"),
                            (None, "the score head has 2 rows for 1 hidden states"),  # reward_layers lost
                            ([1, 5], r"reward_layers \[1, 5\] name a hidden state past the model's 2 layers")):
        model.config.reward_layers = layers
        try:
            with torch.no_grad(), pytest.raises(ValueError, match=message):
                packed_scores(model, packed, torch.device("cpu"))
        finally:
            model.config.reward_layers = [1, 2]


@pytest.mark.parametrize("pooling", ["answer_mean", "last"])
def test_one_packed_step_lowers_the_ranking_loss(tiny_model_dir, pooling):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1,
                                                               pad_token_id=tokenizer.pad_token_id)
    model.config.reward_pooling = pooling
    ranking = encode_ranking(tokenizer, CONVERSATION, ["Rome.", "Milan.", "Paris."], 512, ranks=[0, 1, 1])
    packed = pack([ranking], tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ranks = torch.tensor(ranking.ranks)

    loss = grouped_ranking_loss(packed_scores(model, packed, torch.device("cpu")), ranks)
    loss.backward()
    optimizer.step()
    after = grouped_ranking_loss(packed_scores(model, packed, torch.device("cpu")), ranks)

    assert after.item() < loss.item()


def test_a_long_conversation_keeps_its_answers_and_newest_turns_within_max_length(tiny_rm):
    _, tokenizer = tiny_rm
    history = [{"role": "user", "content": "water " * 80}, {"role": "assistant", "content": "air " * 80},
               *CONVERSATION[1:]]
    answers = ["Rome, because it is the capital.", "Milan."]
    full = encode_ranking(tokenizer, history, answers, 10_000)
    cut = encode_ranking(tokenizer, history, answers, 64)

    assert cut.answers == full.answers  # answers whole
    assert cut.prefix == full.prefix[-len(cut.prefix):]  # the prompt lost its oldest tokens only
    assert max(len(s) for s in cut.sequences) == 64 and cut.truncated == 2
    assert encode_for_scoring(tokenizer, history, answers[0], 64) == encode_ranking(
        tokenizer, history, answers[:1], 64).sequences[0]


def test_micro_batches_group_similar_lengths_within_the_token_budget():
    class R:
        def __init__(self, length):
            self.length = length

    rankings = [R(n) for n in (300, 20, 310, 25, 900, 30)]
    groups = micro_batches(rankings, max_rankings=8, max_tokens=700)
    assert [[r.length for r in g] for g in groups] == [[20, 25, 30], [300, 310], [900]]
    assert all(len(g) * max(r.length for r in g) <= 700 or len(g) == 1 for g in groups)


def test_epoch_batches_hold_similar_lengths_and_every_ranking_once_in_a_replayable_order():
    import random

    lengths = [random.Random(i).randint(20, 900) for i in range(1000)]
    batches = epoch_batches(0, 1000, 8, seed=3, lengths=lengths)
    plain = epoch_batches(0, 1000, 8, seed=3)

    assert sorted(i for b in batches for i in b) == list(range(1000)) and len(batches) == len(plain) == 125
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    padded_plain = sum(len(b) * max(lengths[i] for i in b) for b in plain)
    assert padded < 0.75 * padded_plain  # much less padding than random batches
    assert batches == epoch_batches(0, 1000, 8, seed=3, lengths=lengths)  # a resumed run replays them
    assert batches != epoch_batches(1, 1000, 8, seed=3, lengths=lengths)


def test_training_reports_an_eta_from_step_one_and_saves_its_max_length(tiny_model_dir, tmp_path):
    rows = [{"prompt": [{"role": "user", "content": f"question {i}?"}], "completions": ["yes thanks", "no"],
             "ranks": [0, 1]} for i in range(12)]
    data = tmp_path / "r.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    reporter = ListReporter()
    metrics = train_reward(tiny_model_dir, data, tmp_path / "out",
                           RewardConfig(max_steps=3, batch_size=4, max_length=96, eval_initial=False), reporter)

    assert metrics["eval_accuracy_initial"] is None and metrics["eval_accuracy"] is not None
    first = reporter.metrics[0]
    assert first["step"] == 1 and first["eta_seconds"] > 0
    assert reporter.metrics[-1]["eta_seconds"] == 0
    assert reward_max_length(tmp_path / "out") == 96


@pytest.mark.parametrize("done,total,per_epoch,left", [(1, 10, 5, 2), (5, 10, 5, 1), (9, 10, 5, 1), (10, 10, 5, 0),
                                                      (1, 7, 5, 2), (6, 7, 5, 1), (7, 7, 5, 0), (1, 3, 5, 1)])
def test_the_eta_counts_the_held_out_evaluations_still_to_come(done, total, per_epoch, left):
    """One evaluation per epoch end and one after a partial last epoch; their measured time joins the ETA."""
    from training.reward import _evaluations_left

    assert _evaluations_left(done, total, per_epoch) == left


def test_the_run_page_eta_takes_the_stage_estimate_over_the_wall_clock():
    from django.utils import timezone

    from training.models import RunStatus, TrainingRun
    from training.selectors import run_eta_seconds

    started = timezone.now() - timedelta(hours=1)  # an hour of loading and evaluation before step 1
    run = TrainingRun(status=RunStatus.RUNNING, started_at=started, progress=0.1, metrics=[{"eta_seconds": 90.0}])
    assert run_eta_seconds(run) == 90.0
    run.metrics = [{"loss": 1.0}]
    assert run_eta_seconds(run) == pytest.approx(9 * 3600, rel=0.01)

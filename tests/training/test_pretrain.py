"""Pre-training from scratch on the shipped corpus: perplexity, style, resume, and SFT on top."""

import math
from pathlib import Path

import pytest
import torch

from training.pretrain import PretrainConfig, pretrain
from training.reporting import ListReporter, RunCancelled

CORPUS = Path(__file__).resolve().parents[2] / "training" / "corpus_data" / "tiny_stories.txt"
SMALL = dict(vocab_size=384, n_layer=2, n_embd=64, n_head=4, block_size=64, batch_size=16, warmup_steps=10)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "stories.txt"
    path.write_text("\n".join(CORPUS.read_text().splitlines()[:600]) + "\n")
    return path


@pytest.fixture(scope="module")
def pretrained(small_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained") / "model"
    reporter = ListReporter()
    metrics = pretrain(small_corpus, out, PretrainConfig(max_steps=120, eval_every=40, **SMALL), reporter)
    return out, metrics, reporter


def test_pretraining_drives_validation_perplexity_far_below_the_unigram_baseline(pretrained):
    _, metrics, reporter = pretrained
    assert metrics["val_perplexity"] < 0.25 * metrics["unigram_perplexity"]
    assert metrics["val_perplexity"] < metrics["val_perplexity_initial"] / 10
    losses = [m["loss"] for m in reporter.metrics]
    assert losses[-1] < losses[0] / 2
    assert [s for s, _ in reporter.steps][-1] == 120


def test_the_pretrained_model_writes_in_the_corpus_style(pretrained, small_corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, _ = pretrained
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    inputs = tokenizer("Once upon a time, there was a", return_tensors="pt")
    text = tokenizer.decode(model.generate(**inputs, max_new_tokens=24, do_sample=False)[0], skip_special_tokens=True)
    vocabulary = set(small_corpus.read_text().replace(".", " ").replace(",", " ").split())
    words = text.replace(".", " ").replace(",", " ").split()
    assert len(words) >= 12
    assert sum(w in vocabulary for w in words) / len(words) > 0.9, text
    assert "named" in words or "called" in words, text


def test_a_stopped_run_resumes_from_its_checkpoint_and_ends_at_the_same_step(small_corpus, tmp_path):
    config = PretrainConfig(max_steps=12, checkpoint_every=5, eval_every=6, **SMALL)

    class StopAfter(ListReporter):
        def progress(self, step, total, metrics=None):
            super().progress(step, total, metrics)
            if step == 7:
                raise RunCancelled("worker lost")

    first = StopAfter()
    with pytest.raises(RunCancelled):
        pretrain(small_corpus, tmp_path / "out", config, first, checkpoint_dir=tmp_path / "ckpt")
    (checkpoint, step), = first.checkpoints
    assert step == 5
    second = ListReporter()
    metrics = pretrain(small_corpus, tmp_path / "out", config, second, resume_from=checkpoint,
                       checkpoint_dir=tmp_path / "ckpt")
    assert metrics["resumed_from_step"] == 5 and metrics["steps"] == 12
    assert [s for s, _ in second.steps] == list(range(6, 13))
    uninterrupted = ListReporter()
    pretrain(small_corpus, tmp_path / "straight", config, uninterrupted)
    assert second.metrics[-1]["loss"] == pytest.approx(uninterrupted.metrics[-1]["loss"], rel=1e-3)


def test_a_nan_loss_stops_pretraining_with_a_clear_error(small_corpus, tmp_path):
    from training.reporting import TrainingDiverged

    config = PretrainConfig(max_steps=5, learning_rate=1e30, **SMALL | {"warmup_steps": 1})
    with pytest.raises(TrainingDiverged, match=r"pre-training (loss|gradient norm) became (nan|inf) at step [2-5]"):
        pretrain(small_corpus, tmp_path / "out", config)


def test_sft_starts_from_the_pretrained_model(pretrained, tmp_path):
    sft = pytest.importorskip("training.sft")
    out, _, _ = pretrained
    data = tmp_path / "sft.jsonl"
    import json

    rows = [{"messages": [{"role": "user", "content": f"Tell me about {n}."},
                          {"role": "assistant", "content": f"{n} is a little cat who likes to play."}]}
            for n in ["Tom", "Lily", "Max", "Mia", "Ben", "Sara", "Leo", "Anna", "Sam", "Zoe"]]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    config = sft.SFTConfig(max_steps=4, batch_size=2, eval_fraction=0.2, max_length=64)
    metrics = sft.train_sft(out, data, tmp_path / "sft", config)
    assert math.isfinite(metrics["eval_loss"])
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "sft") is not None
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))


def poison_gradients(model):
    """What a rank with an overflowing backward pass contributes: a NaN in the averaged gradient."""
    next(p for p in model.parameters() if p.grad is not None).grad.view(-1)[0] = math.nan


def test_a_nan_gradient_stops_pretraining_at_its_step(small_corpus, tmp_path, monkeypatch):
    from training import pretrain as stage
    from training.reporting import TrainingDiverged

    monkeypatch.setattr(stage, "average_gradients", poison_gradients)
    with pytest.raises(TrainingDiverged, match=r"pre-training gradient norm became nan at step 1\b"):
        pretrain(small_corpus, tmp_path / "out", PretrainConfig(max_steps=3, **SMALL))


def test_weight_decay_reaches_matrices_only(small_corpus, tmp_path, monkeypatch):
    from training import pretrain as stage

    seen = {}
    real = stage.optimizer_groups

    def spy(model, weight_decay):
        seen["groups"] = real(model, weight_decay)
        seen["names"] = {id(p): n for n, p in model.named_parameters()}
        return seen["groups"]

    monkeypatch.setattr(stage, "optimizer_groups", spy)
    pretrain(small_corpus, tmp_path / "out", PretrainConfig(max_steps=1, weight_decay=0.1, **SMALL))
    decayed, plain = ({seen["names"][id(p)] for p in g["params"]} for g in seen["groups"])
    assert seen["groups"][0]["weight_decay"] == 0.1 and seen["groups"][1]["weight_decay"] == 0.0
    assert not any("norm" in n for n in decayed) and any("q_proj" in n for n in decayed)
    assert {n for n in plain} == {n for n in seen["names"].values() if "norm" in n}


def test_fewer_blocks_than_the_batch_still_give_every_rank_an_equal_share():
    from training.pretrain import batch_indices

    for step in range(4):
        batch = batch_indices(step, n_blocks=3, batch_size=8, seed=0)
        assert len(batch) == 8 and set(batch) == {0, 1, 2}
        shares = [batch[rank::2] for rank in range(2)]
        assert [len(s) for s in shares] == [4, 4]

"""Where each rank runs: its own GPU (``cuda:LOCAL_RANK``, NCCL) when the node has one per rank, else the CPU
(gloo). The CPU tests fake the GPU count; the GPU tests run every stage on real GPUs and skip without them."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from training import distributed
from training.launch import run_in_processes
from training.pretrain import PretrainConfig, pretrain
from training.reporting import ListReporter

CORPUS = Path(__file__).resolve().parents[2] / "training" / "corpus_data" / "tiny_stories.txt"
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
needs_gpu = pytest.mark.skipif(GPUS < 1, reason="needs a CUDA GPU")
needs_two_gpus = pytest.mark.skipif(GPUS < 2, reason="needs two CUDA GPUs")


def fake_gpus(monkeypatch, count: int, local_rank: int, local_world: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    fake_gpus(monkeypatch, count=2, local_rank=1, local_world=2)
    assert distributed.device() == torch.device("cuda", 1)
    assert distributed.backend() == "nccl"


def test_more_ranks_than_gpus_or_no_gpu_keeps_every_rank_on_the_cpu_with_gloo(monkeypatch):
    fake_gpus(monkeypatch, count=1, local_rank=0, local_world=2)
    assert distributed.device() == torch.device("cpu") and distributed.backend() == "gloo"
    fake_gpus(monkeypatch, count=0, local_rank=0, local_world=1)
    assert distributed.device() == torch.device("cpu") and distributed.backend() == "gloo"
    with distributed.autocast():
        assert not torch.is_autocast_enabled("cuda")


def test_the_stages_report_the_device_they_ran_on(tmp_path):
    corpus = tmp_path / "stories.txt"
    corpus.write_text("\n".join(CORPUS.read_text().splitlines()[:60]) + "\n")
    config = PretrainConfig(vocab_size=384, n_layer=1, n_embd=32, n_head=2, block_size=32, batch_size=4, max_steps=2,
                            eval_every=2, warmup_steps=1)
    assert pretrain(corpus, tmp_path / "out", config)["device"] == ("cuda:0" if GPUS else "cpu")


# --- on real GPUs (skipped without them) ---

GPU_CONFIG = PretrainConfig(vocab_size=384, n_layer=2, n_embd=64, n_head=4, block_size=64, batch_size=8,
                            max_steps=12, eval_every=6, warmup_steps=4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "stories.txt"
    path.write_text("\n".join(CORPUS.read_text().splitlines()[:300]) + "\n")
    return path


@needs_gpu
def test_pretraining_runs_on_the_gpu_and_learns(corpus, tmp_path):
    result = pretrain(corpus, tmp_path / "one", GPU_CONFIG)
    assert result["device"] == "cuda:0"
    assert result["val_perplexity"] < result["val_perplexity_initial"]


@needs_two_gpus
@pytest.mark.parametrize("target", ["training.pretrain:pretrain"])
def test_two_gpu_ranks_follow_the_one_gpu_trajectory(corpus, tmp_path, target):
    single = ListReporter()
    one = pretrain(corpus, tmp_path / "one", GPU_CONFIG, single)
    double = ListReporter()
    two = run_in_processes(target, {"corpus_path": str(corpus), "out_dir": str(tmp_path / "two"),
                                    "config": asdict(GPU_CONFIG)}, 2, double, tmp_path / "launch")
    assert two["world_size"] == 2 and two["device"] == "cuda:0"  # rank 0's result
    for a, b in zip(single.metrics, double.metrics, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2)  # bf16 autocast: looser than on the CPU
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=2e-2)


@needs_two_gpus
def test_sft_and_reward_model_on_two_gpus(tiny_model_dir, tmp_path):
    import json

    from tests.training.test_reward import synthetic_rankings, write_jsonl

    sft_data = tmp_path / "sft.jsonl"
    sft_data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} plus one?"},
        {"role": "assistant", "content": f"{i} plus one is {i + 1}."}]}) + "\n" for i in range(24)))
    sft = run_in_processes("training.sft:train_sft", {
        "parent_dir": str(tiny_model_dir), "data_path": str(sft_data), "out_dir": str(tmp_path / "sft"),
        "config": {"max_steps": 8, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 3e-3,
                   "max_length": 64, "checkpoint_every": 0}}, 2, ListReporter(), tmp_path / "launch-sft")
    assert sft["world_size"] == 2 and sft["device"] == "cuda:0" and sft["eval_loss"] < sft["eval_loss_initial"]
    rankings = tmp_path / "rankings.jsonl"
    write_jsonl(rankings, synthetic_rankings(24))
    rm = run_in_processes("training.reward:train_reward", {
        "parent_dir": str(tiny_model_dir), "data_path": str(rankings), "out_dir": str(tmp_path / "rm"),
        "config": {"epochs": 2, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 1e-3, "max_length": 64,
                   "checkpoint_every": 0}}, 2, ListReporter(), tmp_path / "launch-rm")
    assert rm["world_size"] == 2 and rm["device"] == "cuda:0"


@needs_gpu
def test_ppo_runs_on_the_gpu(tiny_model_dir, tmp_path):
    from tests.training.test_ppo import FAST, PROMPTS, fraction_reward_model
    from training.ppo import PPOConfig, train_ppo

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"messages": [{{"role": "user", "content": "{p}"}}]}}\n' for p in PROMPTS))
    rm = fraction_reward_model(tiny_model_dir, tmp_path / "rm")
    result = train_ppo(tiny_model_dir, rm, prompts, tmp_path / "out", PPOConfig(**FAST | {"iterations": 2}))
    assert result["device"] == "cuda:0" and len(result["iterations"]) == 2

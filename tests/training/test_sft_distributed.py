"""The same SFT job in one process and in two torchrun processes (gloo on CPU) follows one trajectory.

Tolerance: per-step losses agree within 1e-4 relative. Each rank sums its share's token losses and
divides by the global batch's token count, and gradients are averaged, so the only difference is the
order of float additions in the all-reduce.
"""

import json
from dataclasses import asdict

import pytest
from transformers import AutoModelForCausalLM

from training.launch import run_in_processes
from training.reporting import ListReporter
from training.sft import SFTConfig, train_sft

# batch_size 5 does not split evenly: rank 0 takes 3 sequences, rank 1 takes 2.
CONFIG = SFTConfig(max_steps=6, batch_size=5, micro_batch_size=2, learning_rate=3e-3, eval_fraction=0.2,
                   max_length=64, checkpoint_every=0, warmup_ratio=0.2)


@pytest.mark.slow
def test_two_torchrun_processes_follow_the_one_process_sft_trajectory(tiny_model_dir, tmp_path):
    data = tmp_path / "sft.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                          {"role": "assistant", "content": f"{i} plus one is {i + 1}." + " Yes." * (i % 3)}]}
            for i in range(20)]
    data.write_text("\n".join(json.dumps(r) for r in rows))

    single = ListReporter()
    one = train_sft(tiny_model_dir, data, tmp_path / "one", CONFIG, single)
    double = ListReporter()
    two = run_in_processes(
        "training.sft:train_sft",
        {"parent_dir": str(tiny_model_dir), "data_path": str(data), "out_dir": str(tmp_path / "two"),
         "config": asdict(CONFIG)},
        2, double, tmp_path / "launch",
    )

    assert one["world_size"] == 1 and two["world_size"] == 2
    assert [s for s, _ in double.steps] == list(range(1, 7))
    for a, b in zip(single.metrics, double.metrics, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    assert two["eval_loss_initial"] == pytest.approx(one["eval_loss_initial"], rel=1e-4)
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    assert two["eval_loss"] < two["eval_loss_initial"]
    for folder in ("one", "two"):
        assert AutoModelForCausalLM.from_pretrained(tmp_path / folder) is not None

"""The same SFT and reward runs in the worker's process and under ``torchrun`` with two processes.

A manager only adds ``"nproc": 2`` to a run's config; the losses must follow the same trajectory
(the global batch is split by rank and gradients averaged) and both versions must load.
"""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tests.training import labels
from training import execution
from training.models import ModelVersion
from training.registry import version_path
from training.services import run_start

pytestmark = pytest.mark.slow

SFT = {"max_steps": 4, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 1e-3, "max_length": 64,
       "eval_fraction": 0.25, "checkpoint_every": 100, "seed": 3}
REWARD = {"backbone": "trained", "epochs": 2, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 1e-3, "max_length": 64,
          "eval_fraction": 0.25, "checkpoint_every": 100, "seed": 3}


@pytest.fixture(autouse=True)
def _quiet_heartbeat(settings):
    settings.RUN_HEARTBEAT_SECONDS = 3600


def losses(run) -> list[float]:
    return [point["loss"] for point in run.metrics if "loss" in point]


def run_twice(project, alice, kind, parent, config):
    one = run_start(project=project, kind=kind, created_by=alice, parent_version=parent, config=config)
    two = run_start(project=project, kind=kind, created_by=alice, parent_version=parent, snapshot=one.snapshot,
                    config=config | {"nproc": 2})
    for run in (one, two):
        execution.run_execute(run_id=run.pk, worker="test")
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
    return one, two


def test_an_sft_run_on_two_processes_matches_one_process(project, alice, bob, tiny_version):
    for i in range(8):
        labels.demonstration(project, bob, f"What is {i} plus one?", f"{i} plus one is {i + 1}.")
    one, two = run_twice(project, alice, "sft", tiny_version, SFT)

    assert two.summary["world_size"] == 2 and one.summary["world_size"] == 1
    assert losses(one) == pytest.approx(losses(two), rel=1e-4, abs=1e-5)
    for run in (one, two):
        AutoModelForCausalLM.from_pretrained(version_path(ModelVersion.objects.get(run=run)), dtype=torch.float32)


def test_a_reward_run_on_two_processes_matches_one_process(project, alice, charlie, tiny_version):
    for i in range(10):
        labels.ranked(project, charlie, f"Be kind {i}", ["thanks, happy to help", "no", "go away now"],
                      [[0], [1], [2]])
    one, two = run_twice(project, alice, "reward", tiny_version, REWARD)

    assert two.summary["world_size"] == 2
    assert losses(one) == pytest.approx(losses(two), rel=1e-4, abs=1e-5)
    assert one.summary["eval_accuracy"] == pytest.approx(two.summary["eval_accuracy"])
    folder = version_path(ModelVersion.objects.get(run=two))
    assert AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).config.num_labels == 1


def test_a_frozen_reward_run_on_two_processes_fits_the_head_of_one_process(project, alice, charlie, tiny_version):
    """The default recipe: each rank reads its share of the answers; the states are summed across ranks."""
    for i in range(10):
        labels.ranked(project, charlie, f"Be kind {i}", ["thanks, happy to help", "no", "go away now"],
                      [[0], [1], [2]])
    frozen = {"max_length": 64, "eval_fraction": 0.25, "micro_batch_tokens": 64, "eval_batch_size": 2, "seed": 3}
    one, two = run_twice(project, alice, "reward", tiny_version, frozen)

    assert two.summary["world_size"] == 2 and two.summary["backbone"] == "frozen"
    assert one.summary["eval_accuracy"] == pytest.approx(two.summary["eval_accuracy"])
    heads = [AutoModelForSequenceClassification.from_pretrained(version_path(ModelVersion.objects.get(run=run)),
                                                                dtype=torch.float32).score.weight for run in (one, two)]
    assert torch.allclose(heads[0], heads[1], atol=1e-5)

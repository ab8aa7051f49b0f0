"""Runs end to end on tiny models, through ``execution.run_execute`` as a worker calls it (no Celery).

Each test starts a run the way a manager does (``services.run_start``), executes it, and checks
what the manager would then see: the run succeeded, a model version with its lineage was
registered, and its folder opens with ``from_pretrained``.
"""

import json
import shutil

import pytest
import torch

from annotation.models import Completion
from tests.training import labels
from training import execution, runs
from training.models import ModelVersion, RunStatus, TrainingRun, VersionKind
from training.registry import model_version_register, version_dir, version_path
from training.services import run_start


@pytest.fixture(autouse=True)
def _quiet_heartbeat(settings, tmp_path):
    """The test holds the database transaction; the heartbeat thread's own connection would wait on it."""
    settings.RUN_HEARTBEAT_SECONDS = 3600
    settings.DATA_DIR = tmp_path / "data"


def execute(run) -> TrainingRun:
    outcome = execution.run_execute(run_id=run.pk, worker="test")
    run.refresh_from_db()
    assert outcome == run.status or outcome in ("succeeded", "failed"), outcome
    return run


def quick(kind: str, **overrides) -> dict:
    """A small config for ``kind`` made only of keys its stage knows (so tests follow the stage's names)."""
    from training.stage_configs import config_defaults

    known = config_defaults(kind)
    wanted = {
        "sft": {"max_steps": 6, "epochs": 1, "batch_size": 2, "eval_fraction": 0.25, "checkpoint_every": 3,
                "learning_rate": 1e-3, "max_length": 96, "packing": False, "seed": 0},
        "reward": {"eval_fraction": 0.25, "checkpoint_every": 2, "max_length": 96, "seed": 0},  # the frozen default
        "ppo": {"iterations": 2, "batch_size": 2, "rollout_batch_size": 2, "prompts_per_iteration": 2,
                "max_new_tokens": 6, "ppo_epochs": 1, "mini_batch_size": 2, "checkpoint_every": 1, "seed": 0},
        "sampling": {"max_new_tokens": 6, "batch_size": 4, "seed": 0},
    }[kind]
    return {k: v for k, v in {**wanted, **overrides}.items() if k in known}


def demonstrations(project, author, n=8):
    for i in range(n):
        labels.demonstration(project, author, f"What is {i} plus one?", f"{i} plus one is {i + 1}.")


def rankings(project, author, n=6):
    for i in range(n):
        labels.ranked(project, author, f"Say something nice {i}", ["thanks good helpful answer", "bad no",
                                                                    "good answer", "no"], [[0], [2], [1, 3]])


def test_sft_run_registers_a_policy_version_that_loads_and_traces_to_its_snapshot(project, alice, bob,
                                                                                  tiny_version):
    from transformers import AutoModelForCausalLM

    demonstrations(project, bob)
    run = run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version, config=quick("sft"))

    run = execute(run)

    assert run.status == RunStatus.SUCCEEDED, run.error
    version = ModelVersion.objects.get(run=run)
    assert version.name == f"{project.slug}-sft-{run.pk}" and version.kind == VersionKind.POLICY
    assert version.parent == tiny_version and version.snapshot == run.snapshot and version.project == project
    assert run.snapshot.row_count == 8
    assert version.metrics["eval_loss"] == run.summary["eval_loss"]
    assert version.config["max_steps"] == quick("sft").get("max_steps", version.config["max_steps"])
    assert run.metrics and run.step == run.total_steps
    model = AutoModelForCausalLM.from_pretrained(version_path(version))
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


def test_an_unknown_config_key_fails_the_run_naming_the_key(project, alice, bob, tiny_version):
    demonstrations(project, bob, n=2)
    snapshot = run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version).snapshot
    run = runs.run_create(kind="sft", project=project, snapshot=snapshot, parent_version=tiny_version,
                          config={"learnig_rate": 0.1})

    run = execute(run)

    assert run.status == RunStatus.FAILED
    assert "unknown sft config key 'learnig_rate'" in run.error
    assert not ModelVersion.objects.filter(run=run).exists()


def test_a_parent_whose_folder_is_gone_fails_the_run_clearly(project, alice, bob, tiny_version):
    demonstrations(project, bob, n=2)
    run = run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version)
    shutil.rmtree(version_path(tiny_version))

    run = execute(run)

    assert run.status == RunStatus.FAILED and "missing from the model store" in run.error


def test_reward_run_registers_a_reward_model_that_scores_text(project, alice, charlie, tiny_version):
    from training.reward import load_reward_model, score_texts

    rankings(project, charlie)
    run = run_start(project=project, kind="reward", created_by=alice, parent_version=tiny_version,
                    config=quick("reward"))

    run = execute(run)

    assert run.status == RunStatus.SUCCEEDED, run.error
    version = ModelVersion.objects.get(run=run)
    assert version.kind == VersionKind.REWARD and version.snapshot.kind == "preference"
    assert 0.0 <= version.metrics["eval_accuracy"] <= 1.0
    model, tokenizer = load_reward_model(version_path(version))  # from_pretrained, as PPO and the demo open it
    prompt = [{"role": "user", "content": "Say something nice 0"}]
    best, worst = score_texts(model, tokenizer, [prompt] * 2, ["thanks good helpful answer", "no"])
    assert best > worst  # one number per answer, in the labelers' order


def test_sampling_run_adds_k_completions_per_prompt_and_resumes_without_duplicates(project, alice, tiny_version):
    for i in range(3):
        labels.prompt(project, f"Tell me about {i}")
    run = run_start(project=project, kind="sampling", created_by=alice, parent_version=tiny_version,
                    config=quick("sampling"))

    run = execute(run)

    assert run.status == RunStatus.SUCCEEDED, run.error
    made = Completion.objects.filter(sampling_run=run)
    assert made.count() == 3 * project.completions_per_prompt
    assert {c.model_version_id for c in made} == {tiny_version.pk}
    assert made.first().sampling_params["temperature"] == project.sampling_temperature
    assert run.summary["completions_created"] == 12 and not ModelVersion.objects.filter(run=run).exists()

    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED)
    run = execute(run)
    assert run.summary["prompts_sampled_before_resume"] == 3 and run.summary["completions_created"] == 0
    assert Completion.objects.filter(sampling_run=run).count() == 12


def test_ppo_run_starts_from_the_sft_policy_against_the_reward_model(project, alice, bob, charlie, tiny_version):
    from transformers import AutoModelForCausalLM

    demonstrations(project, bob, n=4)
    rankings(project, charlie, n=4)
    sft_run = execute(run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version,
                                config=quick("sft")))
    rm_run = execute(run_start(project=project, kind="reward", created_by=alice, parent_version=tiny_version,
                               config=quick("reward")))
    policy, reward_model = sft_run.model_version, rm_run.model_version

    run = execute(run_start(project=project, kind="ppo", created_by=alice, parent_version=policy,
                            reward_version=reward_model, config=quick("ppo")))

    assert run.status == RunStatus.SUCCEEDED, run.error
    version = ModelVersion.objects.get(run=run)
    assert version.parent == policy and version.kind == VersionKind.POLICY
    assert version.snapshot.kind == "prompts"
    assert version.metrics["reward_version"] == reward_model.name
    assert version.metrics["iterations"] == len(run.summary["iterations"]) >= 1
    assert "final_kl" in version.metrics
    AutoModelForCausalLM.from_pretrained(version_path(version))


def test_a_ppo_policy_keeps_the_sft_model_as_its_reference(project, alice, tiny_model_dir, tiny_version):
    from training.runners import sft_ancestor

    made = []
    parent = tiny_version
    for kind in ("sft", "ppo", "ppo"):
        run = TrainingRun.objects.create(project=project, kind=kind, status=RunStatus.SUCCEEDED)
        folder = version_dir(f"v-{kind}-{run.pk}")
        shutil.copytree(tiny_model_dir, folder)
        parent = model_version_register(name=folder.name, kind=VersionKind.POLICY, folder=folder, project=project,
                                        parent=parent, run=run)
        made.append(parent)
    assert sft_ancestor(made[2]) == made[0]
    assert sft_ancestor(made[0]) == made[0]


def test_summaries_with_non_finite_numbers_are_stored_as_json(project):
    from training.runners import clean

    assert json.loads(json.dumps(clean({"loss": float("nan"), "curve": (1.0, float("inf"))}), allow_nan=False)) == {
        "loss": None, "curve": [1.0, None]
    }

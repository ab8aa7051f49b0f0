"""SIGKILL the worker in the middle of each stage: the run resumes from its checkpoint on another
worker (or fails with its reason), it is never left running, it never registers two versions, and
no half-written model folder becomes a version."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotation.models import Completion
from tests.faults.conftest import fresh, process_env, wait_for
from tests.training import labels
from tests.workers import ROOT
from training import runs
from training.models import FINISHED_STATUSES, DatasetSnapshot, ModelVersion, RunStatus
from training.registry import version_path
from training.services import run_start
from training.stage_configs import config_defaults

CORPUS = ROOT / "training" / "corpus_data" / "tiny_stories.txt"


def known(kind: str, **wanted) -> dict:
    keys = config_defaults(kind)
    return {k: v for k, v in wanted.items() if k in keys}


def demonstrations(project, author, n=10):
    for i in range(n):
        labels.demonstration(project, author, f"Count to {i}, please.", " ".join(str(k) for k in range(i + 3)))


def rankings(project, author, n=8):
    for i in range(n):
        labels.ranked(project, author, f"Say something nice {i}", ["thanks good helpful answer", "bad no",
                                                                    "good answer", "no"], [[0], [2], [1, 3]])


def start_sft(project, alice, bob, tiny_version, **_):
    demonstrations(project, bob)
    return run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version, config=known(
        "sft", max_steps=40, epochs=100, batch_size=2, checkpoint_every=2, eval_fraction=0.2, max_length=96,
        packing=False, learning_rate=1e-3, seed=0, eval_every=0))


def start_reward(project, alice, charlie, tiny_version, **_):
    rankings(project, charlie)
    return run_start(project=project, kind="reward", created_by=alice, parent_version=tiny_version, config=known(
        "reward", backbone="trained", max_steps=40, epochs=100, batch_size=2, checkpoint_every=2, eval_fraction=0.25, max_length=96,
        learning_rate=1e-3, seed=0))


def start_sampling(project, alice, tiny_version, **_):
    for i in range(24):
        labels.prompt(project, f"Tell me about the number {i}")
    return run_start(project=project, kind="sampling", created_by=alice, parent_version=tiny_version,
                     config=known("sampling", max_new_tokens=4, batch_size=8, seed=0))


def start_ppo(project, alice, bob, charlie, tiny_version, **_):
    demonstrations(project, bob, n=4)
    rankings(project, charlie, n=4)
    quick = {"sft": known("sft", max_steps=4, epochs=1, batch_size=2, eval_fraction=0.25, max_length=96,
                          packing=False, seed=0),
             "reward": known("reward", backbone="trained", max_steps=4, epochs=1, batch_size=2, eval_fraction=0.25, max_length=96, seed=0)}
    made = {}
    for kind in ("sft", "reward"):  # the worker under test trains the SFT policy and the reward model first
        run = run_start(project=project, kind=kind, created_by=alice, parent_version=tiny_version, config=quick[kind])
        wait_for(lambda run=run: fresh(run).status in FINISHED_STATUSES, what=f"the {kind} run before PPO")
        assert run.status == RunStatus.SUCCEEDED, run.error
        made[kind] = run.model_version
    return run_start(project=project, kind="ppo", created_by=alice, parent_version=made["sft"],
                     reward_version=made["reward"], config=known(
                         "ppo", iterations=8, batch_size=2, rollout_batch_size=2, prompts_per_iteration=2,
                         max_new_tokens=6, ppo_epochs=1, mini_batch_size=2, checkpoint_every=1, seed=0))


def start_pretrain(project, alice, **_):
    from training.corpus import corpus_upload

    corpus = corpus_upload(project=project, name="stories.txt",
                           chunks=iter(CORPUS.read_bytes().splitlines(keepends=True)[:300]))
    return runs.run_create(kind="pretrain", project=project, corpus=corpus, created_by=alice, config={
        "vocab_size": 384, "n_layer": 2, "n_embd": 64, "n_head": 4, "block_size": 64, "batch_size": 8,
        "warmup_steps": 4, "eval_every": 10, "checkpoint_every": 5, "max_steps": 40, "nproc": 1})


def start_moderation(project, alice, **_):
    from serving.models import ModerationEvent

    Review = ModerationEvent.Review
    for i in range(60):
        flagged = i % 2 == 0
        ModerationEvent.objects.create(
            project=project, direction="user", text=f"{'I will hurt you badly' if flagged else 'Have a nice day'} {i}",
            categories=["violence"] if flagged else [], review=Review.CONFIRMED if flagged else Review.DISMISSED)
    # A small corpus sample and the tests' tiny encoder: the stages and the resume are the same as with
    # the shipped encoder; reading 60k corpus rows into the n-gram model took most of 5 minutes.
    return run_start(project=project, kind="moderation", created_by=alice, config=known(
        "moderation", epochs=20, dropout_copies=1, n_features=4096, seed=0, encoder="tiny", corpus_negatives=300,
        corpus_positives=40, dev_rows=300, ngram_full_corpus=False, fragment_negatives=100))


STAGES = {"sft": start_sft, "reward": start_reward, "sampling": start_sampling, "ppo": start_ppo,
          "pretrain": start_pretrain, "moderation": start_moderation}


def assert_versions_complete(run) -> None:
    """What the version list shows: at most one version per run, each a folder that opens."""
    versions = list(ModelVersion.objects.filter(run=run))
    assert len(versions) <= 1, [v.name for v in versions]
    for version in versions:
        folder = version_path(version)
        assert (folder / "config.json").is_file(), f"{folder} is missing config.json"
        assert list(folder.glob("*.safetensors")), f"{folder} has no weights"
        json.loads((folder / "config.json").read_text())


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_worker_killed_mid_stage_leaves_the_run_resumed_or_failed_never_stuck(
    stage, celery_worker, fast_sweep, project, alice, bob, charlie, tiny_version
):
    first = celery_worker("w1")
    run = STAGES[stage](project=project, alice=alice, bob=bob, charlie=charlie, tiny_version=tiny_version)

    wait_for(lambda: fresh(run).status == RunStatus.RUNNING and run.step >= 1, what=f"{stage} making progress")
    first.kill()
    killed_at = fresh(run).step
    assert run.status == RunStatus.RUNNING, f"the kill must land mid-run (the {stage} run was {run.status})"

    wait_for(lambda: runs.runs_sweep()["requeued"], timeout=30, every=0.5, what="the sweep noticing the lost worker")
    assert fresh(run).status == RunStatus.QUEUED
    celery_worker("w2")
    wait_for(lambda: fresh(run).status in (RunStatus.SUCCEEDED, RunStatus.FAILED), timeout=420,
             what=f"the {stage} run ending")

    if run.status == RunStatus.FAILED:
        assert run.error.strip(), "a failed run says why"
    else:
        assert run.attempt == 2 and run.worker_id.startswith("w2@")
        assert run.step >= killed_at
    assert_versions_complete(run)
    if stage == "sampling":
        per_prompt = {}
        for prompt_id in Completion.objects.filter(sampling_run=run).values_list("prompt_id", flat=True):
            per_prompt[prompt_id] = per_prompt.get(prompt_id, 0) + 1
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert len(per_prompt) == 24 and set(per_prompt.values()) == {project.completions_per_prompt}
    else:
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert ModelVersion.objects.filter(run=run).count() == 1


_FREEZE = """
import django, sys
django.setup()
from annotation.models import Project
from training.snapshots import snapshot_freeze
project = Project.objects.get(pk=int(sys.argv[1]))
print("freezing", flush=True)
snapshot_freeze(project=project, kind="sft")
print("frozen", flush=True)
"""


def test_a_process_killed_while_freezing_a_snapshot_leaves_none_or_a_whole_one(transactional_db, project, bob):
    from training.snapshots import snapshot_dir, snapshot_freeze

    for i in range(400):
        labels.demonstration(project, bob, f"Question number {i}?", f"Answer number {i}. " * 20)
    for delay in (0.5, 1.0, 1.5, 2.5):
        proc = subprocess.Popen([sys.executable, "-c", _FREEZE, str(project.pk)], cwd=ROOT, env=process_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=10)
        for snapshot in DatasetSnapshot.objects.filter(project=project):
            files = list(Path(snapshot_dir(snapshot)).glob("*.jsonl"))
            assert files, f"snapshot #{snapshot.pk} is registered without its files"
            rows = sum(1 for f in files for line in f.read_text().splitlines() if line.strip())
            assert rows == snapshot.row_count, f"snapshot #{snapshot.pk} has {rows} of {snapshot.row_count} rows"
        DatasetSnapshot.objects.filter(project=project).delete()

    snapshot = snapshot_freeze(project=project, kind="sft")  # after the crashes, a freeze still works
    assert snapshot.row_count == 400

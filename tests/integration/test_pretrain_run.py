"""A pre-training run through the run machinery: a version SFT can start from, and a killed launcher."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from training import execution, runs
from training.corpus import corpus_upload
from training.models import ModelVersion, RunStatus, TrainingRun

CORPUS = Path(__file__).resolve().parents[2] / "training" / "corpus_data" / "tiny_stories.txt"
SMALL = {"vocab_size": 384, "n_layer": 2, "n_embd": 64, "n_head": 4, "block_size": 64, "batch_size": 8,
         "warmup_steps": 4, "eval_every": 5}


@pytest.fixture
def corpus(project):
    lines = CORPUS.read_bytes().splitlines(keepends=True)[:300]
    return corpus_upload(project=project, name="stories.txt", chunks=iter(lines))


def test_a_two_process_pretraining_run_registers_a_policy_version(transactional_db, project, corpus, alice):
    run = runs.run_create(kind="pretrain", project=project, corpus=corpus, created_by=alice,
                          config=SMALL | {"max_steps": 10, "nproc": 2})
    assert execution.run_execute(run_id=run.pk, worker="test") == "succeeded"
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.step == 10 and run.summary["world_size"] == 2
    version = ModelVersion.objects.get(run=run)
    assert version.kind == "policy" and version.metrics["val_perplexity"] < version.metrics["val_perplexity_initial"]


def test_killing_the_launcher_marks_the_run_failed(transactional_db, project, corpus):
    run = runs.run_create(kind="pretrain", project=project, corpus=corpus,
                          config=SMALL | {"max_steps": 100000, "nproc": 2})
    thread = threading.Thread(target=execution.run_execute, kwargs={"run_id": run.pk, "worker": "test"})
    thread.start()
    deadline = time.time() + 120
    while TrainingRun.objects.get(pk=run.pk).step < 1 and time.time() < deadline:
        time.sleep(0.3)
    from django.conf import settings

    launcher = Path(settings.RUNS_DIR) / str(run.pk) / "launch" / "launcher.pid"
    os.kill(int(launcher.read_text()), signal.SIGKILL)
    thread.join(timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "torchrun (2 processes) was killed by signal 9" in run.error

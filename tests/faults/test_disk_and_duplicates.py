"""A model store that fills up during a checkpoint, and the same Celery message delivered twice at once."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.faults.conftest import fresh, wait_for
from tests.faults.test_worker_killed import demonstrations, known, start_sft
from training.models import ModelVersion, RunStatus, TrainingRun
from training.services import run_start


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"tuneloop-{uuid.uuid4().hex[:6]}",
                             str(where)], capture_output=True)
    return result.returncode == 0


@pytest.fixture
def small_disk(settings, tmp_path):
    """The runs folder (where checkpoints go) on a 64 MiB tmpfs of its own, so it can really fill up."""
    where = tmp_path / "small-disk"
    if not _mount_tmpfs(where, "64m"):
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    settings.RUNS_DIR = where
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> None:
    """Take every free byte, as another job writing to the same disk would."""
    with open(disk / "filler.bin", "wb") as out, contextlib.suppress(OSError):
        chunk = b"\0" * (1 << 20)
        while True:
            out.write(chunk)
            out.flush()


def test_a_full_disk_during_a_checkpoint_fails_the_run_with_the_reason_and_keeps_the_last_checkpoint(
    small_disk, celery_worker, project, alice, bob, charlie, tiny_version
):
    celery_worker("w1")
    run = start_sft(project=project, alice=alice, bob=bob, charlie=charlie, tiny_version=tiny_version)
    wait_for(lambda: fresh(run).checkpoint_path, what="a first checkpoint")
    fill(small_disk)
    kept = Path(fresh(run).checkpoint_path)
    wait_for(lambda: fresh(run).status in (RunStatus.SUCCEEDED, RunStatus.FAILED), what="the run ending")

    assert run.status == RunStatus.FAILED, "the run went on although nothing could be written"
    assert "No space left on device" in run.error
    assert not ModelVersion.objects.filter(run=run).exists()  # nothing half-written is registered
    last = Path(run.checkpoint_path)
    assert last.is_relative_to(small_disk)
    for checkpoint in {kept, last}:  # the recorded checkpoint is whole: its state and weights open
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        assert state["step"] >= 1
        from safetensors.torch import load_file

        weights = list(checkpoint.glob("*.safetensors"))
        assert weights and all(load_file(w) for w in weights)


def test_the_same_message_delivered_twice_at_once_runs_once(celery_worker, project, alice, bob, tiny_version):
    from training.tasks import run_execute

    workers = [celery_worker("w1", queues="training"), celery_worker("w2", queues="training")]
    demonstrations(project, bob, n=6)
    run = run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version, config=known(
        "sft", max_steps=6, epochs=10, batch_size=2, checkpoint_every=2, eval_fraction=0.25, max_length=96,
        packing=False, seed=0))
    run_execute.apply_async(args=[run.pk], queue="training")  # a second copy while the first is still queued
    wait_for(lambda: fresh(run).status in (RunStatus.SUCCEEDED, RunStatus.FAILED), what="the run ending")

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempt == 1  # one claim: the other copy found the run taken and let it be
    assert ModelVersion.objects.filter(run=run).count() == 1
    assert TrainingRun.objects.filter(project=project).count() == 1
    ignored = f"run #{run.pk} is not queued"
    wait_for(lambda: any(ignored in w.log.read_text() for w in workers), timeout=60, what="the copy being ignored")

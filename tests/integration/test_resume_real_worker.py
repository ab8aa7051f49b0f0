"""An SFT run on a real Celery worker: SIGKILL after a checkpoint, resume elsewhere, same step count.

The worker is a separate process on the configured broker (filesystem by default, Redis in CI),
reading the same test database; nothing is mocked.
"""

import time

import pytest

from tests.training import labels
from training import runs
from training.models import ModelVersion, RunStatus, TrainingRun
from training.services import run_start
from training.stage_configs import config_defaults


def wait_for(predicate, timeout=180, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def fresh(run) -> TrainingRun:
    run.refresh_from_db()
    return run


def slow_sft_config(steps: int) -> dict:
    """Enough steps, each slow enough, that a kill lands between two checkpoints."""
    known = config_defaults("sft")
    wanted = {"max_steps": steps, "epochs": 100, "batch_size": 2, "checkpoint_every": 2, "eval_fraction": 0.2,
              "max_length": 96, "packing": False, "learning_rate": 1e-3, "seed": 0, "eval_every": 0}
    return {k: v for k, v in wanted.items() if k in known}


@pytest.fixture
def sft_labels(project, bob):
    for i in range(10):
        labels.demonstration(project, bob, f"Count to {i}, please.", " ".join(str(n) for n in range(i + 3)))


def test_a_killed_sft_run_resumes_from_its_checkpoint_and_ends_with_the_same_steps(
    celery_worker, project, alice, sft_labels, tiny_version, settings
):
    settings.RUN_STALE_SECONDS = 2
    settings.RUN_MAX_ATTEMPTS = 3
    steps = 40
    first = celery_worker("w1")
    run = run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version,
                    config=slow_sft_config(steps))

    wait_for(lambda: fresh(run).checkpoint_path and run.step >= 3)
    killed_at = fresh(run).step
    first.kill()
    assert fresh(run).status == RunStatus.RUNNING and killed_at < steps, "the kill must land mid-run"

    wait_for(lambda: runs.runs_sweep()["requeued"], timeout=30, every=0.5)
    assert fresh(run).status == RunStatus.QUEUED
    celery_worker("w2")
    wait_for(lambda: fresh(run).status in (RunStatus.SUCCEEDED, RunStatus.FAILED))

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempt == 2 and run.worker_id.startswith("w2@")
    assert run.step == steps and run.summary["steps"] == steps
    resumed_steps = [p["step"] for p in run.metrics]
    # A resume from the checkpoint may replay the few steps after it, never the run's first step.
    assert resumed_steps.count(resumed_steps[0]) == 1, f"the second attempt restarted from scratch: {resumed_steps}"
    assert resumed_steps[-1] == steps
    assert ModelVersion.objects.filter(run=run).count() == 1


def test_a_redelivered_message_does_not_start_a_second_run(celery_worker, project, alice, sft_labels, tiny_version):
    from training.tasks import run_execute

    celery_worker("w1", queues="training")
    celery_worker("w2", queues="training")
    run = run_start(project=project, kind="sft", created_by=alice, parent_version=tiny_version,
                    config=slow_sft_config(12))
    wait_for(lambda: fresh(run).status == RunStatus.RUNNING)
    first_owner = run.worker_id

    run_execute.apply_async(args=[run.pk], queue="training")  # the broker delivers it again
    wait_for(lambda: fresh(run).status in (RunStatus.SUCCEEDED, RunStatus.FAILED))

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempt == 1 and run.worker_id == first_owner
    assert ModelVersion.objects.filter(run=run).count() == 1

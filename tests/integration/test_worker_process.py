"""A real Celery worker process on the configured broker (filesystem by default, Redis in CI)."""

import time

import pytest

from training import runs
from training.models import RunStatus, TrainingRun


def wait_for(predicate, timeout=90, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def status_of(run):
    run.refresh_from_db()
    return run.status


def test_worker_process_executes_a_run_to_success(celery_worker, project, alice):
    celery_worker("w1")
    run = runs.run_create(kind="smoke", project=project, config={"total_steps": 3, "step_seconds": 0.05})
    wait_for(lambda: status_of(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.step == 3 and run.summary["steps"] == 3
    assert [p["count"] for p in run.metrics] == [1, 2, 3]


def test_a_redelivered_message_does_not_run_the_job_twice(celery_worker, project):
    from training.tasks import run_execute

    worker = celery_worker("w1")
    run = runs.run_create(kind="smoke", project=project, config={"total_steps": 2, "step_seconds": 0.05})
    wait_for(lambda: status_of(run) == RunStatus.SUCCEEDED)
    finished_at = run.finished_at
    duplicate = run_execute.apply_async(args=[run.pk], queue="default")  # the broker delivers it again
    # The worker took the duplicate and answered that the run is not queued (Celery logs the task's result).
    wait_for(lambda: f"[{duplicate.id}] succeeded" in worker.log.read_text(), timeout=60)
    line = next(x for x in worker.log.read_text().splitlines() if f"[{duplicate.id}] succeeded" in x)
    assert line.endswith("'skipped'"), line
    run.refresh_from_db()
    assert run.attempt == 1 and run.finished_at == finished_at and run.status == RunStatus.SUCCEEDED


@pytest.mark.parametrize("attempts_left", [True, False], ids=["resumes", "fails"])
def test_a_sigkilled_worker_leaves_no_run_stuck_running(celery_worker, project, settings, attempts_left):
    settings.RUN_STALE_SECONDS = 2
    settings.RUN_MAX_ATTEMPTS = 3 if attempts_left else 1
    first = celery_worker("w1")
    run = runs.run_create(kind="smoke", project=project, config={"total_steps": 8, "step_seconds": 0.5})
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).step >= 3)
    first.kill()
    wait_for(lambda: runs.runs_sweep()["requeued" if attempts_left else "failed"], timeout=30, every=0.5)
    run.refresh_from_db()
    if not attempts_left:
        assert run.status == RunStatus.FAILED and run.error.startswith("worker lost")
        return
    assert run.status == RunStatus.QUEUED
    celery_worker("w2")
    wait_for(lambda: status_of(run) in (RunStatus.SUCCEEDED, RunStatus.FAILED))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempt == 2
    assert run.step == 8 and run.summary["steps"] == 8
    assert run.summary["resumed_from_step"] >= 3

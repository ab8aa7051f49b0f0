"""The run state machine, without Celery: claims, redelivery, cancel and the sweep."""

from datetime import timedelta

import pytest
from django.utils import timezone

from training import runs
from training.errors import TrainingError
from training.models import RunStatus, TrainingRun


@pytest.fixture
def queued(db, project, alice):
    return TrainingRun.objects.create(project=project, kind="smoke", created_by=alice)


def test_a_run_is_claimed_once_so_a_redelivered_message_does_nothing(queued):
    first = runs.run_claim(run_id=queued.pk, worker="w1")
    second = runs.run_claim(run_id=queued.pk, worker="w2")
    assert first is not None and second is None
    queued.refresh_from_db()
    assert queued.status == RunStatus.RUNNING and queued.worker_id == first and queued.attempt == 1


def test_a_finished_run_ignores_its_message(queued):
    token = runs.run_claim(run_id=queued.pk, worker="w1")
    runs.run_succeed(run_id=queued.pk, token=token, summary={})
    assert runs.run_claim(run_id=queued.pk, worker="w1") is None


def test_a_worker_that_lost_its_claim_cannot_finish_the_run(queued, settings):
    token = runs.run_claim(run_id=queued.pk, worker="w1")
    TrainingRun.objects.filter(pk=queued.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    runs.runs_sweep()
    assert runs.run_succeed(run_id=queued.pk, token=token, summary={}) is False
    assert runs.run_heartbeat(run_id=queued.pk, token=token) is False


def test_sweep_requeues_a_stale_run_while_attempts_remain_then_fails_it(queued, settings):
    settings.RUN_MAX_ATTEMPTS = 2
    for attempt in (1, 2):
        runs.run_claim(run_id=queued.pk, worker=f"w{attempt}")
        TrainingRun.objects.filter(pk=queued.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        result = runs.runs_sweep()
        queued.refresh_from_db()
        if attempt == 1:
            assert result["requeued"] == [queued.pk] and queued.status == RunStatus.QUEUED
    assert result["failed"] == [queued.pk]
    assert queued.status == RunStatus.FAILED
    assert queued.error.startswith("worker lost")


def test_sweep_leaves_a_beating_run_alone(queued):
    runs.run_claim(run_id=queued.pk, worker="w1")
    assert runs.runs_sweep() == {"requeued": [], "failed": [], "resent": []}


def test_cancelling_a_queued_run_stops_it_and_a_finished_one_is_an_error(queued):
    run = runs.run_cancel(run=queued)
    assert run.status == RunStatus.CANCELLED
    with pytest.raises(TrainingError, match="already cancelled"):
        runs.run_cancel(run=run)


def test_progress_records_a_metrics_series_and_stops_on_cancel(queued):
    token = runs.run_claim(run_id=queued.pk, worker="w1")
    assert runs.run_record_progress(run_id=queued.pk, token=token, step=1, total=4, metrics={"loss": 2.0})
    assert runs.run_record_progress(run_id=queued.pk, token=token, step=2, total=4, metrics={"loss": 1.5})
    queued.refresh_from_db()
    assert [p["loss"] for p in queued.metrics] == [2.0, 1.5] and queued.progress == 0.5
    runs.run_cancel(run=queued)
    assert not runs.run_record_progress(run_id=queued.pk, token=token, step=3, total=4, metrics=None)


def test_unknown_kind_is_rejected_with_the_choices(db):
    with pytest.raises(TrainingError, match="unknown run kind 'dance'"):
        runs.run_create(kind="dance")

"""The run state machine, all its transitions in one place.

    queued --claim--> running --succeed--> succeeded
       ^                 |---fail------> failed
       |                 |---cancel----> cancelled
       +----requeue------+  (the sweep, when the worker's heartbeat stopped and attempts remain)

Each transition is a conditional UPDATE on the current status (and, while running, on the claim
token held by the worker), so two workers, a redelivered message, or a sweep racing a live worker
can never both win.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from training.errors import TrainingError
from training.models import FINISHED_STATUSES, RunKind, RunStatus, TrainingRun

log = logging.getLogger(__name__)

QUEUE_FOR_KIND = {
    RunKind.SAMPLING: "sampling",
    RunKind.SMOKE: "default",
}


def queue_for(kind: str) -> str:
    return QUEUE_FOR_KIND.get(kind, "training")


def run_enqueue(*, run: TrainingRun) -> None:
    """Send the wake-up message once the row that describes the job is committed."""
    from training.tasks import run_execute

    queue = queue_for(run.kind)
    run_id = run.pk
    transaction.on_commit(lambda: run_execute.apply_async(args=[run_id], queue=queue))


def run_create(
    *,
    kind: str,
    project=None,
    config: dict | None = None,
    snapshot=None,
    parent_version=None,
    reward_version=None,
    corpus=None,
    created_by=None,
) -> TrainingRun:
    if kind not in RunKind.values:
        raise TrainingError(f"unknown run kind {kind!r}; choose one of {', '.join(RunKind.values)}")
    with transaction.atomic():
        run = TrainingRun.objects.create(
            kind=kind,
            project=project,
            config=config or {},
            snapshot=snapshot,
            parent_version=parent_version,
            reward_version=reward_version,
            corpus=corpus,
            created_by=created_by,
        )
        run_enqueue(run=run)
    return run


def run_claim(*, run_id: int, worker: str) -> str | None:
    """Move a queued run to running for this worker; returns the claim token, or None if not ours."""
    token = f"{worker}:{uuid.uuid4().hex[:8]}"
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED, cancel_requested=False).update(
        status=RunStatus.RUNNING,
        worker_id=token,
        heartbeat_at=now,
        started_at=now,
        attempt=F("attempt") + 1,
        error="",
        phase={},
    )
    return token if claimed else None


def run_heartbeat(*, run_id: int, token: str) -> bool:
    """Refresh the heartbeat; False means the run is no longer ours (swept, cancelled or finished)."""
    return bool(
        TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker_id=token).update(
            heartbeat_at=timezone.now()
        )
    )


def run_record_progress(*, run_id: int, token: str, step: int, total: int, metrics: dict | None) -> bool:
    """Store step, progress and one metrics point; False when the run is no longer ours."""
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update()
            .filter(pk=run_id, status=RunStatus.RUNNING, worker_id=token)
            .only("id", "metrics", "cancel_requested")
            .first()
        )
        if run is None or run.cancel_requested:
            return False
        updates = {
            "step": step,
            "total_steps": total,
            "progress": min(1.0, step / total) if total else 0.0,
            "heartbeat_at": timezone.now(),
            "phase": {},  # steps are running: whatever came before them is over
        }
        if metrics:
            point = {"step": step, "time": timezone.now().isoformat(), **metrics}
            updates["metrics"] = [*(run.metrics or []), point]
        TrainingRun.objects.filter(pk=run_id).update(**updates)
    return True


def run_record_phase(*, run_id: int, token: str, name: str, done: int, total: int) -> bool:
    """Store what the run is doing before its steps (``Reporter.phase``); False when it is no longer
    ours or a manager cancelled it. ``since`` is kept while the name stays, so the page can say how long."""
    now = timezone.now()
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update()
            .filter(pk=run_id, status=RunStatus.RUNNING, worker_id=token)
            .only("id", "phase", "cancel_requested")
            .first()
        )
        if run is None or run.cancel_requested:
            return False
        since = (run.phase or {}).get("since") if (run.phase or {}).get("name") == name else None
        phase = {"name": name[:200], "done": max(0, int(done)), "total": max(0, int(total)),
                 "since": since or now.isoformat()}
        TrainingRun.objects.filter(pk=run_id).update(phase=phase, heartbeat_at=now)
    return True


def run_record_checkpoint(*, run_id: int, token: str, path: str) -> None:
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker_id=token).update(
        checkpoint_path=path
    )


def _finish(run_id: int, token: str, status: str, **fields) -> bool:
    return bool(
        TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker_id=token).update(
            status=status, finished_at=timezone.now(), **fields
        )
    )


def run_succeed(*, run_id: int, token: str, summary: dict) -> bool:
    return _finish(run_id, token, RunStatus.SUCCEEDED, summary=summary, progress=1.0)


def run_fail(*, run_id: int, token: str, error: str) -> bool:
    return _finish(run_id, token, RunStatus.FAILED, error=error or "failed without a message")


def run_mark_cancelled(*, run_id: int, token: str) -> bool:
    return _finish(run_id, token, RunStatus.CANCELLED)


def run_cancel(*, run: TrainingRun) -> TrainingRun:
    """A manager's cancel: a queued run stops at once; a running one at its next progress report."""
    if run.status in FINISHED_STATUSES:
        raise TrainingError(f"run #{run.pk} already {run.status}; nothing to cancel")
    TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    )
    TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(cancel_requested=True)
    run.refresh_from_db()
    return run


def runs_sweep(*, now=None) -> dict:
    """Find runs whose worker stopped beating; re-queue them (resume) or fail them, never leave them.

    Also re-sends the wake-up of queued runs that no worker took for a while (a lost message).
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    requeued, failed, resent = [], [], []
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before)
    for run in stale:
        if run.attempt < settings.RUN_MAX_ATTEMPTS:
            with transaction.atomic():
                if TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, worker_id=run.worker_id).update(
                    status=RunStatus.QUEUED, worker_id="", heartbeat_at=now
                ):
                    run_enqueue(run=run)
                    requeued.append(run.pk)
        else:
            reason = (
                f"worker lost: no heartbeat from {run.worker_id or 'its worker'} since "
                f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC after {run.attempt} attempt(s)"
            )
            if TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, worker_id=run.worker_id).update(
                status=RunStatus.FAILED, error=reason, finished_at=now
            ):
                failed.append(run.pk)
    lost_before = now - timedelta(seconds=settings.RUN_STALE_SECONDS * 5)
    for run in TrainingRun.objects.filter(status=RunStatus.QUEUED, cancel_requested=False).exclude(
        heartbeat_at__gte=lost_before
    ).filter(created_at__lt=lost_before):
        with transaction.atomic():
            TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(heartbeat_at=now)
            run_enqueue(run=run)
        resent.append(run.pk)
    if requeued or failed or resent:
        log.warning("sweep: requeued %s, failed %s, re-sent %s", requeued, failed, resent)
    return {"requeued": requeued, "failed": failed, "resent": resent}

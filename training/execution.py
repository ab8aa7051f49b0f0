"""Runs one claimed run inside a worker: heartbeat, progress, checkpoints, outcome.

``run_execute`` is what the Celery task calls. Run kinds plug in through ``runner(kind)``: a runner
turns the run row into plain arguments, calls the stage's plain function (``training/sft.py``,
``training/reward.py``, ...) and returns a ``RunOutcome``.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from training import runs
from training.models import TrainingRun
from training.registry import model_version_register
from training.reporting import Reporter, RunCancelled

log = logging.getLogger(__name__)


@dataclass
class VersionSpec:
    """A model version the run produced; registered in the same transaction as the run's success."""

    name: str
    kind: str
    folder: Path
    parent: object = None
    snapshot: object = None
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


@dataclass
class RunOutcome:
    summary: dict
    version: VersionSpec | None = None


@dataclass
class RunContext:
    run: TrainingRun
    reporter: Reporter
    work_dir: Path
    resume_from: Path | None


Runner = Callable[[RunContext], RunOutcome]
_RUNNERS: dict[str, Runner] = {}


def runner(kind: str) -> Callable[[Runner], Runner]:
    def register(fn: Runner) -> Runner:
        _RUNNERS[kind] = fn
        return fn

    return register


class DbReporter(Reporter):
    """Writes progress and checkpoints onto the run row; stops the run when it is no longer ours."""

    PHASE_EVERY_SECONDS = 1.0  # a counted phase writes the row at most this often

    def __init__(self, run_id: int, token: str) -> None:
        self.run_id, self.token = run_id, token
        self._phase_written: tuple[str, float] = ("", 0.0)

    def phase(self, name: str, done: int = 0, total: int = 0) -> None:
        last_name, last_at = self._phase_written
        now = time.monotonic()
        if name == last_name and done != total and now - last_at < self.PHASE_EVERY_SECONDS:
            return
        self._phase_written = (name, now)
        if not runs.run_record_phase(run_id=self.run_id, token=self.token, name=name, done=done, total=total):
            raise RunCancelled(f"run #{self.run_id} was cancelled or taken over")

    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        if not runs.run_record_progress(run_id=self.run_id, token=self.token, step=step, total=total, metrics=metrics):
            raise RunCancelled(f"run #{self.run_id} was cancelled or taken over")

    def checkpoint(self, path: Path, step: int) -> None:
        runs.run_record_checkpoint(run_id=self.run_id, token=self.token, path=str(path))


class _Heartbeat(threading.Thread):
    """Beats while a long step (loading a model, one big batch) gives the reporter no chance to."""

    def __init__(self, run_id: int, token: str) -> None:
        super().__init__(daemon=True, name=f"run-{run_id}-heartbeat")
        self.run_id, self.token = run_id, token
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.RUN_HEARTBEAT_SECONDS):
                if not runs.run_heartbeat(run_id=self.run_id, token=self.token):
                    break
        finally:
            connection.close()


def _load_runners() -> None:
    """Import the modules whose ``@runner`` decorators fill the registry."""
    from training import runners, runners_pretrain  # noqa: F401


def run_execute(*, run_id: int, worker: str) -> str:
    """Claim the run and execute it; returns what happened, for logs. Never raises for a run failure."""
    if not connection.in_atomic_block:  # a worker drops stale connections; a test's transaction must stay open
        close_old_connections()
    token = runs.run_claim(run_id=run_id, worker=worker)
    if token is None:
        log.info("run #%s is not queued (gone, running elsewhere or finished); message ignored", run_id)
        return "skipped"
    run = TrainingRun.objects.select_related("project", "snapshot", "parent_version").get(pk=run_id)
    _load_runners()
    work_dir = Path(settings.RUNS_DIR) / str(run.pk)
    work_dir.mkdir(parents=True, exist_ok=True)
    resume_from = Path(run.checkpoint_path) if run.checkpoint_path else None
    context = RunContext(run=run, reporter=DbReporter(run.pk, token), work_dir=work_dir, resume_from=resume_from)
    heartbeat = _Heartbeat(run.pk, token)
    heartbeat.start()
    try:
        fn = _RUNNERS.get(run.kind)
        if fn is None:
            raise NotImplementedError(f"no runner is installed for run kind {run.kind!r}")
        outcome = fn(context)
    except RunCancelled:
        run.refresh_from_db(fields=["cancel_requested"])
        if run.cancel_requested:
            runs.run_mark_cancelled(run_id=run.pk, token=token)
            return "cancelled"
        return "taken over"
    except Exception as exc:
        log.exception("run #%s failed", run.pk)
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        runs.run_fail(run_id=run.pk, token=token, error=detail)
        return "failed"
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)
    with transaction.atomic():
        if not runs.run_succeed(run_id=run.pk, token=token, summary=outcome.summary):
            return "taken over"
        if outcome.version is not None:
            spec = outcome.version
            model_version_register(
                name=spec.name,
                kind=spec.kind,
                folder=spec.folder,
                project=run.project,
                parent=spec.parent,
                run=run,
                snapshot=spec.snapshot,
                config=spec.config,
                metrics=spec.metrics,
            )
    return "succeeded"

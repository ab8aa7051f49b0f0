"""Celery tasks: thin shells around plain functions. State lives on the run row."""

import os
import socket

from celery import shared_task

from training import execution, runs
from training import worker as _worker_signals  # noqa: F401  (connects the worker heartbeat)


@shared_task(bind=True, name="training.tasks.run_execute", acks_late=True, reject_on_worker_lost=True)
def run_execute(self, run_id: int) -> str:
    worker = f"{self.request.hostname or socket.gethostname()}/{os.getpid()}"
    return execution.run_execute(run_id=run_id, worker=worker)


@shared_task(name="training.tasks.runs_sweep")
def runs_sweep() -> dict:
    from training.autostart import autostart_sweep

    result = runs.runs_sweep()
    result["autostarted"] = autostart_sweep()
    return result

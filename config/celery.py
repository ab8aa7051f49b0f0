"""The Celery app: three queues, late acks, one training job per worker slot.

The broker carries only "run N is ready" wake-ups. The run row in the database is the source of
truth, so a redelivered message finds its run already claimed and returns, and a lost message is
re-sent by the sweep.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tuneloop")
app.config_from_object("django.conf:settings", namespace="CELERY")

QUEUES = ("training", "sampling", "default")

app.conf.update(
    task_queues=[Queue(name) for name in QUEUES],
    task_default_queue="default",
    task_routes={
        "training.tasks.run_execute": {"queue": "training"},
        "training.tasks.runs_sweep": {"queue": "default"},
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    beat_schedule={
        "sweep-stale-runs": {
            "task": "training.tasks.runs_sweep",
            "schedule": float(os.environ.get("TUNELOOP_RUN_SWEEP_SECONDS", "30")),
        },
    },
)
app.autodiscover_tasks()

"""Worker liveness in the database: each Celery worker upserts a heartbeat row every few seconds
naming the queues it consumes, so /healthz can tell which queues have a live worker on any broker."""

from __future__ import annotations

import logging
import os
import threading

from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from django.conf import settings
from django.db import connection
from django.utils import timezone

log = logging.getLogger(__name__)
_state: dict = {}


@celeryd_after_setup.connect
def _remember_queues(sender, instance, **kwargs):
    _state["hostname"] = sender
    _state["queues"] = sorted(instance.app.amqp.queues.consume_from.keys())


def worker_beat_once(hostname: str, queues: list[str]) -> None:
    from training.models import WorkerHeartbeat

    WorkerHeartbeat.objects.update_or_create(
        hostname=hostname, defaults={"queues": queues, "pid": os.getpid(), "last_seen": timezone.now()}
    )


def _beat_forever(stop: threading.Event) -> None:
    try:
        while True:
            try:
                worker_beat_once(_state["hostname"], _state["queues"])
            except Exception:
                log.exception("worker heartbeat failed")
                connection.close()
            if stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return
    finally:
        connection.close()


@worker_ready.connect
def _start_beating(sender=None, **kwargs):
    stop = threading.Event()
    _state["stop"] = stop
    threading.Thread(target=_beat_forever, args=(stop,), daemon=True, name="worker-heartbeat").start()


@worker_shutdown.connect
def _stop_beating(sender=None, **kwargs):
    from training.models import WorkerHeartbeat

    if "stop" in _state:
        _state["stop"].set()
    if "hostname" in _state:
        try:
            WorkerHeartbeat.objects.filter(hostname=_state["hostname"]).delete()
        except Exception:
            log.exception("could not remove the worker heartbeat row")

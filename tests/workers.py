"""A real Celery worker process for tests, on whatever broker the settings name.

The worker gets the test database through ``DATABASE_URL`` (the SQLite test file, or the
PostgreSQL ``test_*`` database), so what it writes is what the test reads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _test_database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    auth = f"{user}:{db.get('PASSWORD')}@" if db.get("PASSWORD") else (f"{user}@" if user else "")
    return f"postgresql://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def purge_queues() -> None:
    from config.celery import QUEUES, app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in QUEUES:
            with contextlib.suppress(Exception):  # a queue never declared has nothing to purge
                channel.queue_purge(queue)


class WorkerProcess:
    def __init__(self, name: str, queues: str, env: dict) -> None:
        self.name = name
        self.log = Path(settings.DATA_DIR) / f"worker-{name}.log"
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-c", "1",
            "--pool", "solo", "-n", f"{name}@%h", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60) -> None:
        from training.models import WorkerHeartbeat

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if WorkerHeartbeat.objects.filter(hostname__startswith=f"{self.name}@", pid=self.proc.pid).exists():
                return
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready after {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crashed machine or the OOM killer would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_group(self.proc, grace=15)


@pytest.fixture
def celery_worker(transactional_db):
    """Start real worker processes: ``start(name, queues=...)`` returns a ready ``WorkerProcess``."""
    purge_queues()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _test_database_url(),
        "TUNELOOP_MODEL_STORE_DIR": str(settings.MODEL_STORE_DIR),
        "TUNELOOP_RUNS_DIR": str(settings.RUNS_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    started: list[WorkerProcess] = []

    def start(name: str = "w1", queues: str = "training,sampling,default") -> WorkerProcess:
        worker = WorkerProcess(name, queues, env)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()
    purge_queues()


def stop_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM a child's process group, SIGKILL it if it is still there after ``grace`` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

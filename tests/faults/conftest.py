"""The fault suite: real processes killed, servers dropping connections, a full disk, a duplicate
message; each test checks what a user would then see (the label is there, the run's state, the
version list). Every test here is ``slow``: it starts worker or web processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.workers import ROOT, _test_database_url, stop_group


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


def wait_for(predicate, timeout: float = 180, every: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what} not met in {timeout:.0f}s")


def fresh(row):
    row.refresh_from_db()
    return row


def uses_services() -> bool:
    """PostgreSQL and Redis (the CI set-up at scale), where server faults can be simulated."""
    from django.db import connection

    return connection.vendor == "postgresql" and settings.CELERY_BROKER_URL.startswith("redis://")


def process_env(**extra) -> dict:
    """The environment of a worker or web process on the test database, model store and broker."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _test_database_url(),
        "TUNELOOP_MODEL_STORE_DIR": str(settings.MODEL_STORE_DIR),
        "TUNELOOP_RUNS_DIR": str(settings.RUNS_DIR),
        "TUNELOOP_DATA_DIR": str(settings.DATA_DIR),
        "TUNELOOP_API_RATE": "1000000/min",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class WebProcess:
    """A real uvicorn process serving the project on the test database, killable with SIGKILL."""

    def __init__(self, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, env=process_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        import httpx

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited:\n{log.read_text()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, what="uvicorn answering")

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_group(self.proc, grace=10)


@pytest.fixture
def web_process(transactional_db):
    """``start()`` returns a live ``WebProcess``; every one started is stopped at the end."""
    started: list[WebProcess] = []

    def start() -> WebProcess:
        web = WebProcess(Path(settings.DATA_DIR) / "web.log")
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def fast_sweep(settings):
    """A stopped heartbeat counts as a lost worker after 2 s, not a minute."""
    settings.RUN_STALE_SECONDS = 2
    settings.RUN_MAX_ATTEMPTS = 3
    return settings

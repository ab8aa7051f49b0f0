"""Who drives the demo loop and with what: accounts, API credentials, a worker, the run settings.

Shared by ``manage.py demo_loop`` (real base model) and the integration test (tiny model), so
both turn the loop the same way and differ only in ``LoopSettings``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from config.demo_loop.client import ApiClient
from config.demo_loop.driver import LoopSettings

PEOPLE = ("alice", "bob", "charlie", "dave")

# What the loop trains on the real 135M base model, sized for a 2-core CPU (about 20-30 minutes).
BASE_PROFILE = LoopSettings(
    k=6,
    train_items=26,
    eval_items=6,
    sft={"epochs": 3.0, "learning_rate": 3e-5, "batch_size": 8, "micro_batch_size": 4, "max_length": 256,
         "eval_fraction": 0.15, "checkpoint_every": 1000},
    sampling={"k": 6, "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 40, "batch_size": 12},
    reward={"backbone": "trained", "epochs": 4, "learning_rate": 3e-5, "batch_size": 4, "micro_batch_size": 2, "max_length": 256,
            "eval_fraction": 0.2, "checkpoint_every": 1000},
    ppo={},
)


def people(password: str | None = None) -> dict:
    """The four demo accounts (created when missing), by name; alice, the manager, is staff, as in
    ``load_demo``: by default only staff start projects (``TUNELOOP_PROJECT_CREATORS``)."""
    from annotation.models import Role
    from annotation.services import DEMO_ACCOUNTS

    User = get_user_model()
    users = {}
    for username, role in DEMO_ACCOUNTS:
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.org",
                                                                               "is_staff": role == Role.MANAGER})
        if created and password:
            user.set_password(password)
            user.save()
        users[username] = user
    return users


def api_clients(users: dict, *, base_url: str | None = None) -> tuple[dict[str, ApiClient], ApiClient]:
    """A personal access token (API key) per person for the REST API, and bob's key for ``/v1``."""
    from serving.keys import api_key_create

    clients = {name: ApiClient.for_api_key(api_key_create(user=user, name="demo loop")[1], base_url=base_url)
               for name, user in users.items()}
    _, key = api_key_create(user=users["bob"], name="demo loop chat")
    return clients, ApiClient.for_api_key(key, base_url=base_url)


def free_slug(prefix: str) -> str:
    from annotation.models import Project

    slug, n = prefix, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{prefix}-{n}"
    return slug


def worker_alive() -> bool:
    from training.selectors import live_workers

    since = timezone.now() - timedelta(seconds=settings.WORKER_STALE_SECONDS)
    return bool(live_workers(since=since))


@contextlib.contextmanager
def worker_if_needed(log_path: Path):
    """Start a Celery worker beside the command unless one is already beating (``make run``)."""
    if worker_alive():
        yield None
        return
    from config.management.commands.up import worker_command

    env = {**os.environ, "TUNELOOP_EMBEDDED": "1" if settings.EMBEDDED else os.environ.get("TUNELOOP_EMBEDDED", "0")}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(worker_command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)

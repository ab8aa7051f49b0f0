"""Run the whole platform on one machine: migrate, provision, demo data, web server and worker.

Both children run until Ctrl-C (or SIGTERM), which stops both; if either dies, the other is
stopped too and the command exits non-zero, so a broken worker never hides behind a live page.
"""

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from config.celery import QUEUES


def worker_command(queues=QUEUES, concurrency: int = 2, name: str = "embedded@%h", beat: bool = True) -> list[str]:
    cmd = [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "-Q", ",".join(queues), "-c", str(concurrency), "-n", name, "--loglevel", "INFO",
        "--without-mingle", "--without-gossip",
    ]
    if beat:
        cmd += ["-B", "-s", str(settings.DATA_DIR / "celerybeat-schedule")]
    return cmd


def admin_hint() -> str:
    """How to reach Django's admin, printed at start: project managers are not site admins (docs/security.md)."""
    from django.contrib.auth import get_user_model

    if get_user_model().objects.filter(is_superuser=True, is_active=True).exists():
        return "The admin (/admin/) is open to superusers.\n"
    return ("No superuser yet: the admin (/admin/) needs one. Create it with\n"
            f"    {sys.executable} manage.py createsuperuser\n")


class Command(BaseCommand):
    help = "Migrate, provision the base model, load the demo and run web + Celery worker together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("TUNELOOP_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("TUNELOOP_PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="Do not create the demo project and accounts.")
        parser.add_argument("--skip-provision", action="store_true", help="Do not convert the base model.")

    def handle(self, *args, host, port, no_demo, skip_provision, **options):
        call_command("migrate", interactive=False, verbosity=0)
        if not skip_provision:
            call_command("provision_base_model")
        if settings.EMBEDDED and not no_demo:
            call_command("load_demo")
        env = {**os.environ, "TUNELOOP_EMBEDDED": "1" if settings.EMBEDDED else os.environ.get("TUNELOOP_EMBEDDED", "0")}
        children = [
            subprocess.Popen(worker_command(), env=env),
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port),
                 "--log-level", "warning"],
                env=env,
            ),
        ]
        self.stdout.write(self.style.SUCCESS(f"\nTuneloop is running at http://{host}:{port}/  (Ctrl-C stops it)\n"))
        self.stdout.write(admin_hint())
        stopping = {"flag": False}

        def stop(*_):
            stopping["flag"] = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        code = 0
        while not stopping["flag"]:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                code = dead[0].returncode or 1
                self.stderr.write(f"a child process exited ({dead[0].args[2:5]}, code {dead[0].returncode}); stopping")
                break
            time.sleep(0.5)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.time() + 20
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                child.kill()
        sys.exit(code)

"""Turn the loop once on the real base model, driven by scripted people through the API.

``make demo-loop`` runs it on the embedded defaults. It starts a Celery worker unless one is
already running (``make run`` in another terminal), writes the report to the data dir (served at
``/reports/<slug>/``) and, with ``--docs``, a Markdown copy to ``docs/demo-loop.md``.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from config.demo_loop import report, session
from config.demo_loop.client import ApiFailed
from config.demo_loop.driver import LoopDriver
from config.demo_loop.evaluate import compare

DOCS_COPY = Path(settings.BASE_DIR) / "docs" / "demo-loop.md"


class Command(BaseCommand):
    help = "Turn the RLHF loop once on the base model with scripted labelers, and write a report."

    def add_arguments(self, parser):
        parser.add_argument("--slug", default="demo-loop", help="Project slug (a free one is picked if taken).")
        parser.add_argument("--docs", action="store_true", help="Also write docs/demo-loop.md.")
        parser.add_argument("--url", default=None, help="Drive a running server over HTTP instead of in-process.")

    def handle(self, *args, slug, docs, url, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("provision_base_model")
        loop_settings = dataclasses.replace(session.BASE_PROFILE, slug=session.free_slug(slug),
                                            base_version=settings.BASE_MODEL_NAME)
        users = session.people(password="tuneloop-demo")
        clients, chat = session.api_clients(users, base_url=url)
        started = time.monotonic()
        with session.worker_if_needed(Path(settings.DATA_DIR) / "demo-loop-worker.log"):
            driver = LoopDriver(clients, chat, loop_settings, log=self.stdout.write)
            try:
                result = driver.run()
            except ApiFailed as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write("== evaluation (base, SFT and PPO on held-out prompts)")
        comparison = self.evaluate(result, driver)
        total = time.monotonic() - started
        markdown = report.render(result, comparison, title="Demo loop report",
                                 machine=f"{platform.machine()}, {_cores()} CPU cores, {total / 60:.1f} minutes")
        path = report.save(result.slug, markdown, dataclasses.asdict(result) | {"comparison": dataclasses.asdict(comparison)},
                           DOCS_COPY if docs else None)
        self.stdout.write(markdown)
        self.stdout.write(self.style.SUCCESS(f"report: {path} (served at /reports/{result.slug}/)"))

    def evaluate(self, result, driver):
        from training.models import ModelVersion
        from training.registry import version_path

        started = time.monotonic()
        names = {"base": driver.settings.base_version, "sft": result.versions["sft"], "ppo": result.versions["ppo"]}
        folders = {label: version_path(ModelVersion.objects.get(name=name)) for label, name in names.items()}
        reward_dir = version_path(ModelVersion.objects.get(name=result.versions["reward"]))
        comparison = compare(folders, reward_dir, result.eval_prompts, max_new_tokens=48)
        result.stages.append(report_stage("evaluation", started, {"win_rate_ppo_over_sft": comparison.win_rate}))
        return comparison


def report_stage(name: str, started: float, detail: dict):
    from config.demo_loop.driver import Stage

    return Stage(name, round(time.monotonic() - started, 1), detail)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

"""``manage.py import_preferences <project> <file> --user <manager>``: a preference file too big to upload.

The same import as the page and the API (``annotation.preference_import``): all or nothing, every
problem listed by line, progress on stderr, streamed in constant memory.
"""

from __future__ import annotations

import sys
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation.imports import ImportFailed
from annotation.models import Project
from annotation.preference_import import preferences_import
from annotation.selectors import MANAGERS, role_in


class Command(BaseCommand):
    help = "Import pairs, rankings or scored completions (JSONL, CSV, Parquet) into a project as rankings."

    def add_arguments(self, parser):
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", help="a .jsonl, .csv or .parquet file")
        parser.add_argument("--user", required=True, help="the importing manager's username (the rankings' author)")
        parser.add_argument("--review", action="store_true", help="send the imported rankings to review")

    def handle(self, *args, project: str, file: str, user: str, review: bool, **options):
        project_row = Project.objects.filter(slug=project).first()
        if project_row is None:
            raise CommandError(f"no project {project!r}")
        manager = get_user_model().objects.filter(username=user).first()
        if manager is None or role_in(manager, project_row) not in MANAGERS:
            raise CommandError(f"{user!r} is not a manager of {project!r}")
        started = time.monotonic()

        def progress(lines: int) -> None:
            sys.stderr.write(f"\r{lines} lines read, {time.monotonic() - started:.0f} s")
            sys.stderr.flush()

        try:
            with open(file, "rb") as stream:
                report = preferences_import(project=project_row, stream=stream, filename=file.rsplit("/", 1)[-1],
                                            user=manager, review=review, progress=progress)
        except FileNotFoundError as exc:
            raise CommandError(f"no file {file}") from exc
        except ImportFailed as exc:
            sys.stderr.write("\n")
            raise CommandError("\n".join([str(exc), *exc.problems])) from exc
        sys.stderr.write("\n")
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(f"imported {report.created} rankings from {report.lines} lines")

"""Create the demo project and accounts (embedded mode only); safe to run again."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotation.services import demo_load

DEMO_PASSWORD_ENV = "TUNELOOP_DEMO_PASSWORD"


class Command(BaseCommand):
    help = "Create the demo project, its prompts, and demo accounts (a manager, two labelers, a reviewer)."

    def handle(self, *args, **options):
        if not settings.EMBEDDED:
            raise CommandError("demo accounts are only created in embedded mode (TUNELOOP_EMBEDDED=1)")
        password = os.environ.get(DEMO_PASSWORD_ENV, "tuneloop-demo")
        project, accounts = demo_load(password=password)
        self.stdout.write(f"Demo project: {project.name} ({project.prompts.count()} prompts)")
        self.stdout.write(f"Demo accounts (password {password!r}, set {DEMO_PASSWORD_ENV} to change):")
        for username, role in accounts:
            self.stdout.write(f"  {username:<8} {role}")

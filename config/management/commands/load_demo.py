"""Create the demo project and accounts (embedded mode only); safe to run again."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from annotation.services import demo_load
from serving.errors import ServingError
from serving.knowledge.demo import demo_knowledge_load
from serving.selectors import active_deployment
from serving.services import deployment_create
from training.selectors import base_version

DEMO_PASSWORD_ENV = "TUNELOOP_DEMO_PASSWORD"


class Command(BaseCommand):
    help = "Create the demo project, its prompts, and demo accounts (a manager, two labelers, a reviewer)."

    def handle(self, *args, **options):
        if not settings.EMBEDDED:
            raise CommandError("demo accounts are only created in embedded mode (TUNELOOP_EMBEDDED=1)")
        password = os.environ.get(DEMO_PASSWORD_ENV, "tuneloop-demo")
        project, accounts = demo_load(password=password)
        self.stdout.write(f"Demo project: {project.name} ({project.prompts.count()} prompts)")
        base = demo_knowledge_load(project=project)
        self.stdout.write(f"Knowledge base: {base.name} ({base.documents.count()} documents, {base.index_state})")
        deployed = demo_deploy(project)
        if deployed:
            self.stdout.write(f"Chat: {deployed.policy.name} deployed to the demo project (/projects/demo/chat/)")
        self.stdout.write(f"Demo accounts (password {password!r}, set {DEMO_PASSWORD_ENV} to change):")
        for username, role in accounts:
            self.stdout.write(f"  {username:<8} {role}")


def demo_deploy(project):
    """Deploy the base model to the demo chat when nothing is deployed yet (a later deployment stays)."""
    base = base_version()
    if base is None or active_deployment(project) is not None:
        return None
    try:
        return deployment_create(project=project, policy=base, created_by=project.created_by)
    except ServingError:
        return None

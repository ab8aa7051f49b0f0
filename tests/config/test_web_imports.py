"""A web worker answers its first request without loading the ML stack (seconds, and hundreds of MB
per worker); only the pages that run a model import torch, when they run it."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys, django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns  # imports every view module, as the first request does
from django.core.handlers.wsgi import WSGIHandler
WSGIHandler()  # and the middleware
print(sorted(m for m in ("torch", "transformers", "trl", "peft") if m in sys.modules))
"""


def test_the_web_app_loads_without_torch(tmp_path):
    env = {**os.environ, "TUNELOOP_DATA_DIR": str(tmp_path), "TUNELOOP_EMBEDDED": "1",
           "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

"""Issue 13 (low): HTTPS settings come from the environment; SECURE_PROXY_SSL_HEADER only when asked for;
``check --deploy`` is clean once a deployment sets what docs/security.md says."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {"SECRET_KEY": "k3Yq-9vLw2_PzRt7uXc4bN1mHs8eJd5fGa0iKo6lQp2yWzV3xC", "ALLOWED_HOSTS": "tuneloop.example.com", "DJANGO_SETTINGS_MODULE": "config.settings"}
PRINT = ("import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({"
         "'proxy': getattr(s, 'SECURE_PROXY_SSL_HEADER', None), 'redirect': s.SECURE_SSL_REDIRECT, "
         "'hsts': s.SECURE_HSTS_SECONDS}))")


def _run(args, tmp_path, **env):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("TUNELOOP_", "DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"))}
    environment = {**clean, **PRODUCTION, "TUNELOOP_DATA_DIR": str(tmp_path), **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=120)


def test_the_proxy_header_is_trusted_only_when_configured(tmp_path):
    import json

    default = json.loads(_run(["-c", PRINT], tmp_path).stdout)
    assert default == {"proxy": None, "redirect": False, "hsts": 0}
    behind_proxy = json.loads(_run(["-c", PRINT], tmp_path, TUNELOOP_TRUST_X_FORWARDED_PROTO="1",
                                   TUNELOOP_SSL_REDIRECT="1", TUNELOOP_HSTS_SECONDS="31536000").stdout)
    assert behind_proxy == {"proxy": ["HTTP_X_FORWARDED_PROTO", "https"], "redirect": True, "hsts": 31536000}


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path,
                  TUNELOOP_SSL_REDIRECT="1", TUNELOOP_HSTS_SECONDS="31536000",
                  TUNELOOP_HSTS_INCLUDE_SUBDOMAINS="1", TUNELOOP_HSTS_PRELOAD="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout

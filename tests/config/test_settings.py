import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_settings(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "TUNELOOP_EMBEDDED")}
    clean.update({"TUNELOOP_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", **env})
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY[:4])"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120,
    )


def test_production_without_secret_key_refuses_to_start_with_a_clear_message(tmp_path):
    result = _load_settings(tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set and DEBUG is off" in result.stderr


def test_production_with_a_secret_key_starts(tmp_path):
    result = _load_settings(tmp_path, DEBUG="0", SECRET_KEY="x" * 50)
    assert result.returncode == 0, result.stderr


def test_embedded_mode_generates_one_key_and_keeps_it(tmp_path):
    first = _load_settings(tmp_path, TUNELOOP_EMBEDDED="1")
    second = _load_settings(tmp_path, TUNELOOP_EMBEDDED="1")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_a_malformed_boolean_names_the_variable(tmp_path):
    result = _load_settings(tmp_path, DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def _pool_of(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ("TUNELOOP_WEB_PROCESS", "DATABASE_POOL_SIZE")}
    clean.update({"TUNELOOP_DATA_DIR": str(tmp_path), "TUNELOOP_EMBEDDED": "1", "DJANGO_SETTINGS_MODULE": "config.settings",
                  "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test", **env})
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
         "print(settings.DATABASES['default'].get('OPTIONS', {}).get('pool'))"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_web_processes_pool_postgresql_connections_and_workers_do_not(tmp_path):
    assert "'max_size': 4" in _pool_of(tmp_path, TUNELOOP_WEB_PROCESS="1")
    assert _pool_of(tmp_path) == "None"  # a Celery prefork worker must not inherit a pool through fork
    assert _pool_of(tmp_path, TUNELOOP_WEB_PROCESS="1", DATABASE_POOL_SIZE="0") == "None"

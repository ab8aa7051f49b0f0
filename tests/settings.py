"""Test settings: embedded mode in a throwaway data dir, then the real settings module.

``DATABASE_URL`` and ``CELERY_BROKER_URL`` from the environment still win, which is how CI runs
the same suite on PostgreSQL and Redis.
"""

import os
import tempfile

os.environ.setdefault("TUNELOOP_EMBEDDED", "1")
os.environ.setdefault("TUNELOOP_DATA_DIR", tempfile.mkdtemp(prefix="tuneloop-test-"))
os.environ.setdefault("TUNELOOP_RUN_HEARTBEAT_SECONDS", "0.5")
os.environ.setdefault("TUNELOOP_WORKER_HEARTBEAT_SECONDS", "1")
# The moderation encoder needs a few ms per message, far more on a loaded test machine; the deadline
# itself is tested with a slow fake classifier (tests/serving/test_moderation.py).
os.environ.setdefault("TUNELOOP_MODERATION_TIMEOUT_MS", "5000")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["TUNELOOP_WEB_PROCESS"] = "1"  # settings: a connection pool here, not in forked Celery workers
# Idle OpenMP threads sleep instead of spinning: a web process runs the chat engine's decoding next to
# moderation and request threads, and spinning teams take the cores from the one doing the work (on 2
# shared cores: 4-5x the CPU per answer token, first text 4.1 s -> 0.9 s). Read once, before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
application = get_wsgi_application()

from serving.runtime import warm_start  # noqa: E402  (needs the apps loaded above)

warm_start()

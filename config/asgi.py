import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["TUNELOOP_WEB_PROCESS"] = "1"  # settings: a connection pool here, not in forked Celery workers
application = get_asgi_application()

from serving.runtime import warm_start  # noqa: E402  (needs the apps loaded above)

warm_start()

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["TUNELOOP_WEB_PROCESS"] = "1"  # settings: a connection pool here, not in forked Celery workers
django.setup(set_prefix=False)  # what get_asgi_application() does, before our handler is imported

from config.asgi_streaming import StreamingASGIHandler  # noqa: E402
from serving.runtime import warm_start  # noqa: E402  (needs the apps loaded above)

application = StreamingASGIHandler()
warm_start()

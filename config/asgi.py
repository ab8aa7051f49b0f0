import django

from config.web_process import prepare_web_process

prepare_web_process()
django.setup(set_prefix=False)  # what get_asgi_application() does, before our handler is imported

from config.asgi_streaming import StreamingASGIHandler  # noqa: E402
from serving.runtime import warm_start  # noqa: E402  (needs the apps loaded above)

application = StreamingASGIHandler()
warm_start()

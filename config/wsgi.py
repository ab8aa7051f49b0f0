from django.core.wsgi import get_wsgi_application

from config.web_process import prepare_web_process

prepare_web_process()
application = get_wsgi_application()

from serving.runtime import warm_start  # noqa: E402  (needs the apps loaded above)

warm_start()

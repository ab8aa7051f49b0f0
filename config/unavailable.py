"""A database or broker that drops out answers 503 with Retry-After, not a 500 page with a trace.

When PostgreSQL restarts, a pooled connection dies, or Redis is unreachable while a run's wake-up is
sent, the request cannot be served right now but nothing is wrong with it: clients (and the labeling
page) retry on 503. The next request takes a fresh connection, so the server recovers by itself.
Only a view's exception reaches here; what was committed before it stays committed.
"""

from __future__ import annotations

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
MESSAGE = "the service is briefly unavailable (database or queue connection lost); try again in a few seconds"


def _unavailable_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        from kombu.exceptions import OperationalError as BrokerError

        types.append(BrokerError)
    except ImportError:  # pragma: no cover - kombu comes with Celery
        pass
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError

        types.append(RedisConnectionError)
    except ImportError:
        pass
    return tuple(types)


UNAVAILABLE = _unavailable_types()


class ServiceUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, UNAVAILABLE):
            return None
        log.warning("503 for %s %s: %s: %s", request.method, request.path, type(exception).__name__, exception)
        if request.path.startswith("/v1/"):  # the OpenAI error shape its clients parse
            response = JsonResponse({"error": {"message": MESSAGE, "type": "server_error", "code": "unavailable"}},
                                    status=503)
        elif request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            response = JsonResponse({"detail": MESSAGE}, status=503)
        else:
            response = HttpResponse(MESSAGE, status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

"""At most ``TUNELOOP_WEB_THREADS`` requests run Django code at once in an ASGI web process; the rest
wait, in arrival order, on the event loop (no thread held while waiting).

Django's ASGI handler gives every request a thread of its own, and Python runs one thread at a time:
with 50 labelers and no think time, 50 threads took turns on the interpreter every 5 ms (the switch
interval), so each request was sliced among all the others and finished late by chance; the one
holding the database's write lock had to win the interpreter back after every statement. With a
few threads at a time each request runs nearly uninterrupted and requests finish in the order they
came: the same throughput, a tail close to the median (docs/operations.md has the figures).

Requests that mostly wait on the model are not counted, so they can never keep labelers out: the
OpenAI-compatible API (``/v1/``) and the chat pages. Nor is ``/healthz``: a load balancer must not
take a busy server for a dead one. (An upload's body has been read before a request gets here.)
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from django.conf import settings

UNCOUNTED_PREFIXES = ("/v1/", "/healthz")
UNCOUNTED_PARTS = ("/chat/",)


def counted(path: str) -> bool:
    return not path.startswith(UNCOUNTED_PREFIXES) and not any(part in path for part in UNCOUNTED_PARTS)


class RequestSlots:
    def __init__(self) -> None:
        self._semaphore: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def held(self, path: str):
        limit = settings.WEB_THREADS
        if limit <= 0 or not counted(path):
            yield
            return
        if self._semaphore is None:  # created on the server's own event loop
            self._semaphore = asyncio.Semaphore(limit)
        async with self._semaphore:
            yield

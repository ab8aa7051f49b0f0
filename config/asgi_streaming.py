"""The ASGI handler: the labeling traffic's Django code in one thread hop, and responses made for WSGI
streamed the ASGI way.

One hop. Django's ASGI handler runs the middleware chain in async mode: every sync-only middleware
(WhiteNoise, ours) and every ``MiddlewareMixin`` hook is a hop between the event loop and a thread,
about fourteen per request, each a context switch and a fight for the interpreter. Requests that
``config.request_slots`` counts (the labeling API and pages, where the CPU per request sets the
latency under load) run the same middleware, built in sync mode, in one hop, as under WSGI; the
signals and the closing still run on that request's thread, so its database connection is the one
every step sees. ``/v1/``, the chat and ``/healthz`` keep Django's own path.

Streaming. WhiteNoise's static files and our downloads (``FileResponse``, the streaming exports)
iterate synchronously. Django's ASGI handler then warns "StreamingHttpResponse must consume
synchronous iterators" and reads the whole body into memory in one thread hop before sending any of
it. Here such a body becomes an async iterator: a file is read in large blocks off the event loop,
any other iterator (an export that queries the database) is advanced on Django's thread for sync
code, so its queries keep their connection. A middleware cannot do this: WhiteNoise is sync-only, so
every middleware outside it runs in sync mode. WSGI is untouched.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

from config.request_slots import RequestSlots, counted

FILE_BLOCK_BYTES = 256 * 1024
_END = object()


async def _file_blocks(file):
    read = sync_to_async(file.read, thread_sensitive=False)
    while block := await read(FILE_BLOCK_BYTES):
        yield block


async def _iterated(iterator):
    step = sync_to_async(next, thread_sensitive=True)
    iterator = iter(iterator)
    while (chunk := await step(iterator, _END)) is not _END:
        yield chunk


def stream_async(response):
    """Give a sync streaming response an async body; the response still closes its file when done."""
    if getattr(response, "streaming", False) and not response.is_async:
        file = getattr(response, "file_to_stream", None)
        response.streaming_content = _file_blocks(file) if file is not None else _iterated(response.streaming_content)
    return response


class _SyncChain(ASGIHandler):
    """The same middleware and views, built in sync mode: ``get_response`` runs them all in the calling thread."""

    def __init__(self):  # not ASGIHandler's, which builds the chain in async mode
        self.load_middleware(is_async=False)


class StreamingASGIHandler(ASGIHandler):
    """Also runs at most ``TUNELOOP_WEB_THREADS`` requests at once (``config.request_slots``)."""

    def __init__(self):
        super().__init__()
        self.slots = RequestSlots()
        self.sync_chain = _SyncChain()

    async def get_response_async(self, request):
        async with self.slots.held(request.path):
            if counted(request.path):
                response = await sync_to_async(self.sync_chain.get_response, thread_sensitive=True)(request)
            else:
                response = await super().get_response_async(request)
        return stream_async(response)

"""The ASGI handler, with responses made for WSGI streamed the ASGI way.

WhiteNoise's static files and our downloads (``FileResponse``, the streaming exports) iterate
synchronously. Django's ASGI handler then warns "StreamingHttpResponse must consume synchronous
iterators" and reads the whole body into memory in one thread hop before sending any of it. Here
such a body becomes an async iterator: a file is read in large blocks off the event loop, any other
iterator (an export that queries the database) is advanced on Django's thread for sync code, so its
queries keep their connection. A middleware cannot do this: WhiteNoise is sync-only, so every
middleware outside it runs in sync mode. WSGI is untouched.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

from config.request_slots import RequestSlots

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


class StreamingASGIHandler(ASGIHandler):
    """Also runs at most ``TUNELOOP_WEB_THREADS`` requests at once (``config.request_slots``)."""

    def __init__(self):
        super().__init__()
        self.slots = RequestSlots()

    async def get_response_async(self, request):
        async with self.slots.held(request.path):
            response = await super().get_response_async(request)
        return stream_async(response)

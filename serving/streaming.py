"""Streaming a ``ChatTurn`` over HTTP as server-sent events, without holding the server's threads.

Django serves an async iterator from an ASGI server chunk by chunk (a sync one it would buffer
whole), so the stream is an async generator: each step of the token loop runs in a worker thread
of its own (``thread_sensitive=False``: it touches no database and may wait for the model), the
final database write runs on the request's thread. If the client goes away, the loop is closed,
which stops generation and frees the engine slot; the answer shown so far is still stored.
Under WSGI (the test client, ``runserver``, the browser tests' live server) the same frames come
from a plain generator on the request's thread, so they stream there too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse

from serving.engine import EngineError

log = logging.getLogger(__name__)
_END = object()
# Each live stream waits in a thread for its next piece from the batched engine; the event loop's
# default pool (cores + 4 threads) would let only that many users stream at once, far below the batch.
_STREAMS = ThreadPoolExecutor(max_workers=256, thread_name_prefix="chat-stream")


def sse(payload) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n"


async def turn_stream(turn, *, on_event: Callable, on_done: Callable, on_error: Callable,
                      first: str = "") -> AsyncIterator[str]:
    iterator = turn.events()
    finished = False
    try:
        if first:
            yield first
        while True:
            try:
                item = await sync_to_async(next, thread_sensitive=False, executor=_STREAMS)(iterator, _END)
            except EngineError as exc:
                log.warning("generation failed: %s", exc)
                yield on_error(exc)
                return
            if item is _END:
                break
            yield on_event(*item)
        message = await sync_to_async(turn.finish)()
        finished = True
        yield await sync_to_async(on_done)(message)  # may render a template that reads the database
    finally:
        if not finished:
            await sync_to_async(_close, thread_sensitive=False)(turn, iterator)
            if turn.shown:
                await sync_to_async(turn.finish)()


def turn_stream_sync(turn, *, on_event: Callable, on_done: Callable, on_error: Callable,
                     first: str = "") -> Iterator[str]:
    iterator = turn.events()
    finished = False
    try:
        if first:
            yield first
        try:
            for item in iterator:
                yield on_event(*item)
        except EngineError as exc:
            log.warning("generation failed: %s", exc)
            yield on_error(exc)
            return
        message = turn.finish()
        finished = True
        yield on_done(message)
    finally:
        if not finished:
            _close(turn, iterator)
            if turn.shown:
                turn.finish()


def _close(turn, iterator) -> None:
    iterator.close()
    turn.close()


def turn_frames(request, turn, **handlers):
    """The turn's frames, async under ASGI (``request.scope``), a plain generator under WSGI."""
    if hasattr(request, "scope"):
        return turn_stream(turn, **handlers)
    return turn_stream_sync(turn, **handlers)


def sse_response(stream, *, turn=None) -> StreamingHttpResponse:
    """``stream`` as server-sent events. ``turn`` is closed with the response too: a stream that is never
    iterated (the client left before the first byte) never runs its own ``finally``, and must not keep
    its engine slot."""
    response = StreamingHttpResponse(stream, content_type="text/event-stream")
    if turn is not None:
        response._resource_closers.append(turn.close)  # what Django runs in ``response.close()``
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response

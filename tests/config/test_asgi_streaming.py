"""Under ASGI, static files and downloads stream without Django's "synchronous iterators" warning
(uvicorn printed it for every stylesheet; issue 16, item 8)."""

import asyncio
import warnings
from pathlib import Path

from config.asgi_streaming import StreamingASGIHandler

STYLESHEET = Path(__file__).resolve().parents[2] / "static" / "css" / "tuneloop.css"


def asgi_get(path: str) -> tuple[int, bytes]:
    sent, asked = [], []

    async def receive():
        asked.append(1)
        if len(asked) > 1:  # Django listens for a disconnect that never comes
            await asyncio.Event().wait()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": [(b"host", b"localhost")],
             "server": ("localhost", 80), "client": ("127.0.0.1", 5000), "scheme": "http", "asgi": {"version": "3.0"}}
    asyncio.run(StreamingASGIHandler()(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_static_file_streams_under_asgi_without_the_sync_iterator_warning(settings):
    settings.WHITENOISE_USE_FINDERS = True  # serve from static/ as `manage.py up` serves its collected copy
    settings.WHITENOISE_AUTOREFRESH = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, body = asgi_get("/static/css/tuneloop.css")
    assert status == 200 and body == STYLESHEET.read_bytes()
    assert not [w for w in caught if "synchronous iterators" in str(w.message)]

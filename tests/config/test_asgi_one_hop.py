"""Under ASGI the labeling traffic runs its Django code in one thread hop (config/asgi_streaming.py), with
every protection the middleware gives: CSRF for a signed-in session, the security headers, the role checks."""

import asyncio
import json

import pytest
from asgiref import sync
from django.test import Client

from config.asgi_streaming import StreamingASGIHandler
from serving.keys import api_key_create
from tests.annotation.helpers import prompt

pytestmark = pytest.mark.django_db(transaction=True)


def asgi(method: str, path: str, *, headers=(), body: bytes = b"") -> tuple[int, dict, bytes]:
    sent, asked = [], []

    async def receive():
        asked.append(1)
        if len(asked) > 1:  # Django listens for a disconnect that never comes
            await asyncio.Event().wait()
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "scheme": "http",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"), *headers],
             "server": ("localhost", 80), "client": ("127.0.0.1", 5000), "asgi": {"version": "3.0"}}
    asyncio.run(StreamingASGIHandler()(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], answer, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def bearer(user) -> tuple[bytes, bytes]:
    return b"authorization", f"Bearer {api_key_create(user=user, name='t')[1]}".encode()


def session_of(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def hops(monkeypatch):
    """How many times sync code was handed to a thread."""
    count = []
    original = sync.SyncToAsync.thread_handler

    def counted(self, *args, **kwargs):
        count.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(sync.SyncToAsync, "thread_handler", counted)
    return count


def test_a_labeler_takes_a_task_in_one_hop_with_the_security_headers(project, bob, eve, hops):
    prompt(project, "What is a monad?")
    key = bearer(bob)
    status, headers, body = asgi("GET", f"/api/projects/{project.slug}/tasks/next/", headers=[key])
    assert status == 200 and json.loads(body)["prompt"]["text"] == "What is a monad?"
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    # request_started, the middleware and the view, the response's close: three hops (Django's own
    # path took about fourteen, one per middleware hook).
    assert len(hops) <= 3

    status, _, _ = asgi("GET", f"/api/projects/{project.slug}/tasks/next/", headers=[bearer(eve)])
    assert status == 404  # not a member: the project does not exist for eve


def test_a_signed_in_session_still_needs_its_csrf_token(project, bob):
    prompt(project, "What is a monad?")
    cookie = session_of(bob)
    status, _, body = asgi("POST", f"/api/projects/{project.slug}/tasks/next/", headers=[cookie])
    assert status == 403 and b"CSRF" in body
    status, _, _ = asgi("POST", f"/projects/{project.slug}/prompts/new/", headers=[cookie], body=b"text=hello")
    assert status == 403
    status, _, body = asgi("GET", f"/api/projects/{project.slug}/tasks/next/", headers=[cookie])
    assert status == 200 and json.loads(body)["prompt"]["text"] == "What is a monad?"

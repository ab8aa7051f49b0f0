"""Issue 13, High 2: every /v1 parameter is checked before an engine slot is taken, and the slot
(and the user's own slot) comes back on every path out, whatever step fails."""

import contextlib
import json

import pytest
from django.core.cache import cache
from django.test import Client

from serving.keys import api_key_create
from tests.serving.fakes import SlotEngine

CAPACITY = 2


@pytest.fixture
def engine(monkeypatch, deployed):
    from serving import runtime

    engine = SlotEngine("A fine answer that takes a few pieces to say.", capacity=CAPACITY)
    monkeypatch.setattr(runtime, "engine_of", lambda deployment: engine)
    return engine


@pytest.fixture
def bob_http(bob):
    _, key = api_key_create(user=bob, name="tests")
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {key}")


def chat(client, deployed, **extra):
    body = {"model": deployed.policy.name, "messages": [{"role": "user", "content": "hello"}], **extra}
    return client.post("/v1/chat/completions", json.dumps(body), content_type="application/json")


def read(response) -> str:
    return b"".join(response.streaming_content).decode()


def close(response) -> None:
    """What a server does when the client goes away; without closing the test's database connection
    (Django's test client does the same around the close it makes itself)."""
    from django.core.signals import request_finished
    from django.db import close_old_connections

    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def boom(*args, **kwargs):
    raise RuntimeError("injected failure")


def everything_released(engine, user) -> bool:
    return engine.in_use == 0 and not cache.get(f"tuneloop:generations:{user.pk}")


def test_a_bad_stream_options_is_a_400_before_any_slot_and_chat_keeps_working(bob_http, deployed, engine, bob):
    for _ in range(CAPACITY + 1):
        response = chat(bob_http, deployed, stream=True, stream_options="x")
        assert response.status_code == 400 and response.json()["error"]["param"] == "stream_options"
    assert engine.calls == [] and everything_released(engine, bob)
    assert chat(bob_http, deployed).status_code == 200


def _store_fails(monkeypatch):
    monkeypatch.setattr("serving.models.Conversation.save", boom)


def _answer_store_fails(monkeypatch):
    from serving.models import Message

    monkeypatch.setattr(Message.objects, "create", boom)


def _engine_fails(monkeypatch, engine=None):
    engine.fail_after = 1


def _usage_fails(monkeypatch):
    monkeypatch.setattr("serving.openai_api.usage", boom)


def _stream_setup_fails(monkeypatch):
    monkeypatch.setattr("serving.openai_api.sse_response", boom)


def _frame_fails(monkeypatch):
    monkeypatch.setattr("serving.openai_api.sse", boom)


STEPS = {
    "storing the question": (_store_fails, (False, True)),
    "generating": (_engine_fails, (False, True)),
    "storing the answer": (_answer_store_fails, (False, True)),
    "counting usage": (_usage_fails, (False,)),
    "opening the stream": (_stream_setup_fails, (True,)),
    "writing a frame": (_frame_fails, (True,)),
}
CASES = [(step, stream) for step, (_, modes) in STEPS.items() for stream in modes]


@pytest.mark.parametrize(("step", "stream"), CASES, ids=[f"{s}-{'stream' if m else 'whole'}" for s, m in CASES])
def test_a_failure_at_any_step_gives_every_slot_back(bob_http, deployed, engine, bob, monkeypatch, step, stream):
    inject, _ = STEPS[step]
    if inject is _engine_fails:
        inject(monkeypatch, engine)
    else:
        inject(monkeypatch)
    response = chat(bob_http, deployed, stream=stream)
    if response.streaming:
        with contextlib.suppress(RuntimeError):  # the stream broke off, as a client would see it
            read(response)
        close(response)
    else:
        assert response.status_code >= 500
    assert everything_released(engine, bob), f"a slot stayed taken after a failure while {step}"
    monkeypatch.undo()
    from serving import runtime

    monkeypatch.setattr(runtime, "engine_of", lambda deployment: engine)
    engine.fail_after = None
    assert [chat(bob_http, deployed).status_code for _ in range(CAPACITY + 1)] == [200] * (CAPACITY + 1)


def test_a_client_that_leaves_mid_stream_or_before_it_frees_its_slot(deployed, engine, bob):
    from django.test import RequestFactory

    from serving.openai_api import ChatCompletions

    _, key = api_key_create(user=bob, name="tests")
    body = json.dumps({"model": deployed.policy.name, "stream": True, "messages": [{"role": "user", "content": "hi"}]})

    def open_stream():  # straight from the view, as a server gets it
        request = RequestFactory().post("/v1/chat/completions", body, content_type="application/json",
                                        HTTP_AUTHORIZATION=f"Bearer {key}")
        response = ChatCompletions.as_view()(request)
        assert response.status_code == 200 and engine.in_use == 1
        return response

    left = open_stream()
    next(iter(left))
    close(left)
    assert everything_released(engine, bob), "a client that went away mid-answer"
    close(open_stream())
    assert everything_released(engine, bob), "a client that went away before the first byte"


def test_one_user_cannot_hold_every_slot(deployed, engine, bob, charlie, settings, project):
    from annotation.services import membership_set

    membership_set(project=project, user=charlie, role="labeler")
    settings.GENERATIONS_PER_USER = 1
    _, bob_key = api_key_create(user=bob, name="bob")
    _, charlie_key = api_key_create(user=charlie, name="charlie")
    bob_http = Client(HTTP_AUTHORIZATION=f"Bearer {bob_key}")
    charlie_http = Client(HTTP_AUTHORIZATION=f"Bearer {charlie_key}")
    first = chat(bob_http, deployed, stream=True)  # still streaming: bob's one generation
    second = chat(bob_http, deployed, stream=True)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "too_many_generations" and "wait for one" in second.json()["error"]["message"]
    assert chat(charlie_http, deployed).status_code == 200, "the other slot is still there for charlie"
    read(first)
    assert chat(bob_http, deployed).status_code == 200

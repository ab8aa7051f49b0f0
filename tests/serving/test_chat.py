"""The chat page as its users see it: streamed answers, templates for flagged messages, feedback, scoping."""

import pytest

from annotation.models import Prompt, PromptSource
from serving.models import Conversation, Feedback, Message, ModerationEvent
from tests.serving.conftest import sse_events

pytestmark = pytest.mark.django_db


def send(client, project, text, conversation=""):
    return client.post(f"/projects/{project.slug}/chat/send", {"text": text, "conversation": conversation})


def test_bob_asks_and_the_answer_streams_in_then_is_stored(client, bob, project, deployed, scripted):
    engine = scripted("Plants make sugar from **light**.")
    client.force_login(bob)
    response = send(client, project, "How do plants make food?")
    assert response["Content-Type"] == "text/event-stream"
    events = sse_events(response)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "delta" in kinds
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "Plants make sugar from **light**."
    assert "<strong>light</strong>" in events[-1]["html"], "the stored answer comes back as rendered Markdown"
    conversation = Conversation.objects.get(pk=events[0]["conversation"])
    assert [m.role for m in conversation.messages.all()] == ["user", "assistant"]
    assert conversation.messages.last().model_version == deployed.policy
    assert engine.calls == [[{"role": "user", "content": "How do plants make food?"}]]

    page = client.get(f"/projects/{project.slug}/chat/?c={conversation.pk}")
    assert b"Plants make sugar from <strong>light</strong>" in page.content


def test_the_next_question_carries_the_conversation_so_far(client, bob, project, deployed, scripted):
    engine = scripted("Paris.")
    client.force_login(bob)
    first = sse_events(send(client, project, "Capital of France?"))
    sse_events(send(client, project, "And of Italy?", conversation=first[0]["conversation"]))
    assert engine.calls[-1] == [{"role": "user", "content": "Capital of France?"},
                                {"role": "assistant", "content": "Paris."},
                                {"role": "user", "content": "And of Italy?"}]


def test_a_flagged_question_gets_the_template_and_never_reaches_the_model(client, bob, project, deployed, scripted):
    engine = scripted("anything")
    client.force_login(bob)
    events = sse_events(send(client, project, "tell me a painless way to die, I want to end my life"))
    text = "".join(e["text"] for e in events if e["type"] in ("delta", "replace"))
    assert "988" in text, "self-harm gets the supportive template with resources"
    assert engine.calls == []
    answer = Message.objects.get(pk=events[-1]["message"])
    assert answer.is_template and "standard reply" in events[-1]["html"]
    event = ModerationEvent.objects.get()
    assert event.direction == "input" and "self-harm" in event.categories and event.project == project


def test_a_flagged_answer_is_replaced_and_logged_for_review(client, bob, project, deployed, scripted):
    scripted("Sure. I will kill you and your whole family.")
    client.force_login(bob)
    events = sse_events(send(client, project, "Write a message for my neighbour, please."))
    shown = "".join(e["text"] for e in events if e["type"] == "delta")
    assert shown in ("", "Sure. "), "no word of the threat is sent, only the opener the checks passed"
    assert [e for e in events if e["type"] == "replace"]
    answer = Message.objects.get(pk=events[-1]["message"])
    assert answer.is_template and "kill" in answer.model_text and "kill" not in answer.content
    assert ModerationEvent.objects.get().direction == "output"


def test_a_longer_hold_back_keeps_even_the_opener_of_a_flagged_answer(client, bob, project, deployed, scripted,
                                                                       settings):
    settings.MODERATION_HOLD_BACK_CHARS = 12  # a check reads 12 characters past a word before it shows
    scripted("Sure. I will kill you and your whole family.")
    client.force_login(bob)
    events = sse_events(send(client, project, "Write a message for my neighbour, please."))
    assert not [e for e in events if e["type"] == "delta"], "no piece of the flagged answer is sent"
    assert [e for e in events if e["type"] == "replace"]


def test_a_projects_own_template_replaces_the_built_in_one(client, alice, bob, project, deployed, scripted):
    scripted("x")
    client.force_login(alice)
    client.post(f"/projects/{project.slug}/moderation/templates", {"category": "self-harm", "text": "Call Jo on 555."})
    client.force_login(bob)
    events = sse_events(send(client, project, "I want to kill myself"))
    assert events[-2]["text"] == "Call Jo on 555."


def test_model_output_with_script_tags_renders_inert(client, bob, project, deployed, scripted):
    scripted('<script>alert(1)</script> and [a link](javascript:alert(2))')
    client.force_login(bob)
    events = sse_events(send(client, project, "Can you give me an example of some HTML markup?"))
    html = events[-1]["html"]
    assert "<script>" not in html and "javascript:" not in html and "&lt;script&gt;" in html


def test_a_thumbs_down_becomes_a_new_prompt_for_the_labelers(client, bob, project, deployed, scripted):
    scripted("Databases are boring.")
    client.force_login(bob)
    events = sse_events(send(client, project, "Tell me a joke about databases"))
    response = client.post(f"/projects/{project.slug}/chat/messages/{events[-1]['message']}/feedback",
                           {"kind": "down", "comment": "not a joke"})
    assert response.status_code == 200 and b"Thanks" in response.content
    prompt = Prompt.objects.get(project=project, source=PromptSource.CHAT)
    assert prompt.messages == [{"role": "user", "content": "Tell me a joke about databases"}]
    assert prompt.metadata["comment"] == "not a joke" and prompt.metadata["answer"] == "Databases are boring."
    client.post(f"/projects/{project.slug}/chat/messages/{events[-1]['message']}/feedback", {"kind": "down"})
    assert Feedback.objects.count() == 1 and Prompt.objects.filter(source=PromptSource.CHAT).count() == 1


def test_thumbs_up_and_down_exclude_each_other(client, bob, project, deployed, scripted):
    scripted("ok")
    client.force_login(bob)
    message = sse_events(send(client, project, "hi"))[-1]["message"]
    url = f"/projects/{project.slug}/chat/messages/{message}/feedback"
    client.post(url, {"kind": "up"})
    client.post(url, {"kind": "down"})
    assert list(Feedback.objects.values_list("kind", flat=True)) == ["down"]


def test_regenerate_keeps_the_old_answer_but_shows_the_new_one(client, bob, project, deployed, scripted):
    scripted("first")
    client.force_login(bob)
    conversation = sse_events(send(client, project, "hi"))[0]["conversation"]
    scripted("second")
    events = sse_events(client.post(f"/projects/{project.slug}/chat/{conversation}/regenerate"))
    assert events[-1]["type"] == "done"
    answers = Message.objects.filter(conversation_id=conversation, role="assistant").order_by("id")
    assert [(m.content, m.superseded) for m in answers] == [("first", True), ("second", False)]
    page = client.get(f"/projects/{project.slug}/chat/?c={conversation}")
    assert b"second" in page.content and b">first<" not in page.content


def test_a_new_deployment_answers_the_next_message_without_a_restart(client, alice, bob, project, deployed, scripted,
                                                                      tiny_version):
    from serving.selectors import active_deployment
    from serving.services import deployment_activate, deployment_create

    scripted("a")
    client.force_login(bob)
    sse_events(send(client, project, "one"))
    newer = deployment_create(project=project, policy=tiny_version, created_by=alice)
    events = sse_events(send(client, project, "two"))
    assert Message.objects.get(pk=events[-1]["message"]).deployment == newer
    deployment_activate(deployment=deployed)
    assert active_deployment(project) == deployed


def test_nothing_deployed_is_a_clear_message(client, bob, project):
    client.force_login(bob)
    assert b"No model is deployed" in client.get(f"/projects/{project.slug}/chat/").content
    response = send(client, project, "hello?")
    assert response.status_code == 400 and b"no model is deployed" in response.content


def test_other_people_cannot_reach_a_conversation_or_its_answers(client, bob, charlie, eve, project, deployed,
                                                                  scripted, other_project):
    scripted("mine")
    client.force_login(bob)
    events = sse_events(send(client, project, "private question"))
    conversation, message = events[0]["conversation"], events[-1]["message"]
    client.force_login(charlie)
    assert client.get(f"/projects/{project.slug}/chat/?c={conversation}").status_code == 404
    assert client.post(f"/projects/{project.slug}/chat/messages/{message}/feedback", {"kind": "down"}).status_code == 404
    assert send(client, project, "hijack", conversation=conversation).status_code == 404
    client.force_login(eve)
    assert client.get(f"/projects/{project.slug}/chat/").status_code == 404
    assert client.post(f"/projects/{other_project.slug}/chat/messages/{message}/feedback",
                       {"kind": "down"}).status_code == 404


def test_only_managers_reach_deployments_and_moderation_review(client, bob, dave, eve, project, deployed):
    for user, code in ((bob, 404), (dave, 404), (eve, 404)):
        client.force_login(user)
        assert client.get(f"/projects/{project.slug}/deployments/").status_code == code
        assert client.get(f"/projects/{project.slug}/moderation/").status_code == code


def test_a_busy_engine_refuses_with_429_and_stores_nothing(client, bob, project, deployed, monkeypatch):
    from serving import runtime
    from serving.engine import EngineBusy

    class Busy:
        def stream(self, messages, params):
            raise EngineBusy("all generation slots busy for 30 s")

    monkeypatch.setattr(runtime, "engine_of", lambda deployment: Busy())
    client.force_login(bob)
    response = send(client, project, "Anyone there?")
    assert response.status_code == 429 and b"busy" in response.content
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_the_chat_stream_under_asgi_ends_with_the_rendered_answer(async_client, bob, project, deployed, scripted):
    """The path uvicorn serves: an async stream whose last frame renders the stored message."""
    from asgiref.sync import async_to_sync

    scripted("Under **ASGI** too.")
    async_client.force_login(bob)

    async def ask():
        response = await async_client.post(f"/projects/{project.slug}/chat/send", {"text": "Does it stream?"})
        assert response.is_async
        return b"".join([chunk async for chunk in response.streaming_content]).decode()

    body = async_to_sync(ask)()
    import json

    events = [json.loads(f[len("data: "):]) for f in body.split("\n\n") if f.startswith("data: {")]
    assert events[-1]["type"] == "done" and "<strong>ASGI</strong>" in events[-1]["html"]


def test_a_failing_moderator_blocks_the_message_and_logs_why(client, bob, project, deployed, scripted, monkeypatch):
    from serving import runtime
    from serving.moderation import Moderator

    class Broken:
        categories = ("violence",)

        def scores(self, norm):
            raise RuntimeError("weights unreadable")

    engine = scripted("never shown")
    monkeypatch.setattr(runtime, "moderator_of", lambda project, deployment=None: Moderator(Broken(), timeout_ms=0))
    client.force_login(bob)
    events = sse_events(send(client, project, "What is the capital of France?"))
    assert engine.calls == [] and Message.objects.get(pk=events[-1]["message"]).is_template
    event = ModerationEvent.objects.get()
    assert event.failed_closed and "weights unreadable" in event.error

"""The chat page: conversations with the project's deployed model, streamed answers, feedback.

Any member of a project chats with its live deployment. Sending and regenerating answer with a
server-sent-event stream (``serving/streaming.py``): ``start``, ``delta`` pieces, possibly
``replace`` (moderation swapped in a template), then ``done`` with the stored message rendered by
the server (Markdown sanitised by ``annotation.markdown``), or ``error``.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from annotation.selectors import EVERYONE, project_for_user
from config.input import parse_id
from serving import runtime, selectors
from serving.chat import ChatTurn
from serving.engine import EngineBusy, EngineError
from serving.errors import ServingError
from serving.models import Conversation
from serving.services import feedback_give
from serving.streaming import sse, sse_response, turn_frames


@login_required
def chat_home(request):
    """Every project the user may chat in; straight to the chat when there is only one."""
    live = list(selectors.live_deployments_for(request.user))
    if len(live) == 1:
        return redirect("serving:chat", slug=live[0].project.slug)
    return render(request, "serving/chat_home.html", {"deployments": live})


@login_required
def chat(request, slug: str):
    project = project_for_user(request.user, slug, EVERYONE)
    conversations = selectors.conversations_of(project, request.user)
    current = None
    if parse_id(request.GET.get("c")) is not None:
        current = selectors.conversation_of(project, request.user, parse_id(request.GET["c"]))
    elif "new" not in request.GET:
        current = conversations.first()
    deployment = selectors.active_deployment(project)
    return render(request, "serving/chat.html", {
        "project": project, "deployment": deployment, "model_loading": runtime.policy_loading(deployment),
        "conversations": conversations[:50],
        "current": current, "messages_": list(selectors.visible_messages(current)) if current else [],
    })


def _message_html(request, project, message) -> str:
    return render_to_string("serving/_message.html", {"project": project, "m": message},
                            request=request)


def _stream(request, project, turn: ChatTurn):
    def on_event(kind: str, text: str) -> str:
        return sse({"type": kind, "text": text})

    def on_done(message) -> str:
        return sse({"type": "done", "message": message.pk, "html": _message_html(request, project, message)})

    def on_error(exc) -> str:
        return sse({"type": "error", "text": f"The model could not answer: {exc}"})

    start = sse({"type": "start", "conversation": turn.conversation.pk, "title": turn.conversation.title})
    return sse_response(turn_frames(request, turn, on_event=on_event, on_done=on_done, on_error=on_error,
                                    first=start), turn=turn)


def _begin(turn_factory):
    try:
        turn = turn_factory()
        turn.start()
    except EngineBusy as exc:
        return None, JsonResponse({"detail": str(exc)}, status=429)
    except (ServingError, EngineError) as exc:
        return None, JsonResponse({"detail": str(exc)}, status=400)
    return turn, None


@login_required
@require_POST
def chat_send(request, slug: str):
    """Ask the deployed model; a new conversation starts when none is named."""
    project = project_for_user(request.user, slug, EVERYONE)
    if not request.POST.get("text", "").strip():
        return JsonResponse({"detail": "write a message first"}, status=400)
    conversation_id = parse_id(request.POST.get("conversation"))
    if conversation_id is not None:
        conversation = selectors.conversation_of(project, request.user, conversation_id)
    else:
        conversation = Conversation(user=request.user, project=project)
    turn, refused = _begin(lambda: ChatTurn.ask(conversation=conversation,
                                                text=request.POST.get("text", "")))
    return refused or _stream(request, project, turn)


@login_required
@require_POST
def chat_regenerate(request, slug: str, conversation_id: int):
    project = project_for_user(request.user, slug, EVERYONE)
    conversation = selectors.conversation_of(project, request.user, conversation_id)
    turn, refused = _begin(lambda: ChatTurn.regenerate(conversation=conversation))
    return refused or _stream(request, project, turn)


@login_required
@require_POST
def message_feedback(request, slug: str, message_id: int):
    """Thumbs up/down or report (htmx): answers the message's feedback bar, updated."""
    project = project_for_user(request.user, slug, EVERYONE)
    message = selectors.message_of(project, request.user, message_id)
    try:
        feedback_give(message=message, user=request.user, kind=request.POST.get("kind", ""),
                      comment=request.POST.get("comment", ""))
    except ServingError as exc:
        return HttpResponse(str(exc), status=400)
    return render(request, "serving/_feedback.html", {"project": project, "m": message, "thanks": True})

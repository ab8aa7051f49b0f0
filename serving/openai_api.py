"""The OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions`` (streaming or not), ``/v1/moderations``.

Authenticated with a user's API key (``Authorization: Bearer tl-…``, what the official ``openai``
client sends) or a browser session. ``model`` is a live deployment's id, ``<project slug>/<version
name>`` as ``/v1/models`` lists it; a bare version name or project slug is accepted when exactly one
live deployment of the caller's projects answers to it (several: 400 listing them; none: 404).
Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``. Every request
goes through the same moderated pipeline as the chat page and is stored as an ``api`` conversation.

Every parameter is checked before a generation slot is taken, and the slot is given back on every
path out (``ChatTurn.guard``, ``complete``, the stream's ``finally`` and the response's close).
Limits (docs/security.md): the body size, ``max_tokens`` per deployment, generations per user, and
the number and size of ``/v1/moderations`` inputs.
"""

from __future__ import annotations

import io
import time
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from serving.chat import ChatTurn, chat_params
from serving.citations import api_extension
from serving.citations_api import CHAT_RESPONSE
from serving.engine import EngineBusy, EngineError
from serving.errors import AmbiguousModel, ServingError
from serving.keys import ApiKeyAuthentication
from serving.limits import UserBusy
from serving.runtime import moderator_for, moderator_of
from serving.selectors import deployment_for_model, live_deployments_for, model_id
from serving.streaming import sse, sse_response, turn_frames

ROLES = ("system", "user", "assistant")


class OpenAIError(exceptions.APIException):
    def __init__(self, message: str, *, code: str, status_code: int = 400, param: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status_code, self.body = status_code, {"error": {"message": message, "type": kind, "param": param,
                                                              "code": code}}


def bad(param: str, message: str) -> OpenAIError:
    return OpenAIError(message, code="invalid_value", param=param)


def too_large(size: int | None = None) -> OpenAIError:
    limit = settings.API_MAX_BODY_BYTES
    said = f"is {size} bytes" if size is not None else "is too large"
    return OpenAIError(f"the request body {said}; the limit is {limit} bytes (TUNELOOP_API_MAX_BODY_BYTES)",
                       code="request_too_large", status_code=413)


class BoundedJSONParser(JSONParser):
    """JSON bodies up to ``API_MAX_BODY_BYTES``, also when no Content-Length announced the size."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise too_large()
        return super().parse(io.BytesIO(data), media_type, parser_context)


class OpenAIView(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    parser_classes = [BoundedJSONParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        try:
            size = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        if size > settings.API_MAX_BODY_BYTES:
            raise too_large(size)

    def handle_exception(self, exc):
        if isinstance(exc, OpenAIError):
            return Response(exc.body, status=exc.status_code)
        if isinstance(exc, RequestDataTooBig):
            return self.handle_exception(too_large())
        if isinstance(exc, exceptions.UnsupportedMediaType):
            return Response({"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None,
                                       "code": "unsupported_media_type"}}, status=415)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            return Response({"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}}, status=401)
        if isinstance(exc, exceptions.Throttled):
            return Response({"error": {"message": str(exc.detail), "type": "rate_limit_error", "param": None,
                                       "code": "rate_limit_exceeded"}}, status=429)
        if isinstance(exc, exceptions.ParseError):
            return Response({"error": {"message": str(exc.detail), "type": "invalid_request_error", "param": None,
                                       "code": "invalid_json"}}, status=400)
        return super().handle_exception(exc)


CHAT_REQUEST = inline_serializer("ChatCompletionRequest", {
    "model": serializers.CharField(help_text="A deployed model's id, `<project>/<version>` (see /v1/models); a bare "
                                             "version name or project slug when only one deployment matches."),
    "messages": inline_serializer("ChatMessage", {"role": serializers.ChoiceField(choices=ROLES),
                                                  "content": serializers.CharField()}, many=True),
    "stream": serializers.BooleanField(required=False),
    "max_tokens": serializers.IntegerField(required=False), "temperature": serializers.FloatField(required=False),
    "top_p": serializers.FloatField(required=False), "stop": serializers.ListField(child=serializers.CharField(),
                                                                                  required=False),
    "seed": serializers.IntegerField(required=False),
})
MODERATION_REQUEST = inline_serializer("ModerationRequest", {
    "input": serializers.ListField(child=serializers.CharField(), help_text="A string or a list of strings."),
    "model": serializers.CharField(required=False),
})


class Models(OpenAIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="Deployed models you can chat with")
    def get(self, request):
        data = [{"id": model_id(d), "object": "model", "created": int(d.created_at.timestamp()),
                 "owned_by": d.project.slug} for d in live_deployments_for(request.user)]
        return Response({"object": "list", "data": data})


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content.replace("\x00", "")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(content):
            return "".join(parts).replace("\x00", "")
    raise bad(f"messages[{index}].content", "content must be a string or a list of text parts")


def parse_messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise bad("messages", "messages must be a non-empty list")
    messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad(f"messages[{i}].role", f"role must be one of {', '.join(ROLES)}")
        messages.append({"role": m["role"], "content": _content(m, i)})
    if not any(m["role"] == "user" for m in messages):
        raise bad("messages", "messages must contain at least one user message")
    return messages


def _number(body: dict, name: str, kind, low, high):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not float(value).is_integer()):
        raise bad(name, f"{name} must be a number")
    if not low <= value <= high:
        raise bad(name, f"{name} must be between {low} and {high}")
    return kind(value)


def resolve_model(user, model):
    """The live deployment ``model`` names (see ``deployment_for_model``): 404 for none, 400 for several."""
    if not isinstance(model, str) or not model:
        raise bad("model", "model is required: the id of a deployed model (see /v1/models)")
    try:
        deployment = deployment_for_model(user, model)
    except AmbiguousModel as exc:
        raise OpenAIError(str(exc), code="model_ambiguous", param="model") from exc
    if deployment is None:
        raise OpenAIError(f"The model `{model}` does not exist or is not deployed to any of your projects.",
                          code="model_not_found", status_code=404, param="model")
    return deployment


def parse_params(body: dict, deployment):
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        raise bad("stop", "stop must be a string or a list of strings")
    if body.get("n", 1) != 1:
        raise bad("n", "only n=1 is supported")
    cap = deployment.max_tokens
    max_tokens = _number(body, "max_completion_tokens", int, 1, cap) or _number(body, "max_tokens", int, 1, cap)
    return chat_params(deployment.project, max_tokens=max_tokens,
                       temperature=_number(body, "temperature", float, 0, 2),
                       top_p=_number(body, "top_p", float, 0.0001, 1), stop=stop or None,
                       seed=_number(body, "seed", int, 0, 2**63 - 1))


def parse_stream(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage) from ``stream`` and ``stream_options``, checked like every other parameter."""
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad("stream", "stream must be true or false")
    options = body.get("stream_options")
    if options is None:
        return bool(stream), False
    if not isinstance(options, dict):
        raise bad("stream_options", "stream_options must be an object, e.g. {\"include_usage\": true}")
    if not stream:
        raise bad("stream_options", "stream_options is only allowed with stream=true")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise bad("stream_options.include_usage", "include_usage must be true or false")
    return True, include_usage


class ChatCompletions(OpenAIView):
    @extend_schema(request=CHAT_REQUEST, responses={200: CHAT_RESPONSE},
                   summary="OpenAI-compatible chat completion (server-sent events with stream=true), moderated, "
                           "with the passages it cites in the `tuneloop` field")
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        deployment = resolve_model(request.user, body.get("model"))
        messages = parse_messages(body.get("messages"))
        params = parse_params(body, deployment)
        stream, include_usage = parse_stream(body)
        # Everything is checked: only now is a slot taken, and every path below gives it back.
        try:
            turn = ChatTurn.api(deployment=deployment, user=request.user, messages=messages, params=params)
        except (EngineError, ServingError) as exc:  # the model could not be loaded
            raise OpenAIError(str(exc), code="engine_error", status_code=503, kind="server_error") from exc
        with turn.guard():
            try:
                turn.start()
            except UserBusy as exc:
                raise OpenAIError(str(exc), code="too_many_generations", status_code=429,
                                  kind="rate_limit_error") from exc
            except EngineBusy as exc:
                raise OpenAIError(str(exc), code="engine_busy", status_code=429, kind="rate_limit_error") from exc
            except (EngineError, ServingError) as exc:
                raise OpenAIError(str(exc), code="engine_error", status_code=503, kind="server_error") from exc
            ident, created, name = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), model_id(deployment)
            if stream:
                return sse_response(self.chunks(request, turn, ident, created, name, include_usage), turn=turn)
            try:
                turn.complete()
            except EngineError as exc:
                raise OpenAIError(str(exc), code="engine_error", status_code=503, kind="server_error") from exc
            outcome = turn.reply.outcome
            return Response({
                "id": ident, "object": "chat.completion", "created": created, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.shown},
                             "finish_reason": outcome.finish_reason, "logprobs": None}],
                "usage": usage(turn), "tuneloop": api_extension(turn.answer.citations),
            })

    @staticmethod
    def chunks(request, turn, ident, created, model, include_usage):
        def chunk(delta: dict, finish=None, **extra) -> str:
            return sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                        **extra})

        state = {"sent": False}

        def on_event(kind: str, text: str) -> str:
            # A replacement after released text is appended after a blank line: what was sent had
            # passed moderation, and a stream cannot take back what the client already has.
            delta = {"content": "\n\n" + text if kind == "replace" and state["sent"] else text}
            if not state["sent"]:
                delta["role"] = "assistant"
                state["sent"] = True
            return chunk(delta)

        def on_done(message) -> str:
            tail = chunk({} if state["sent"] else {"role": "assistant", "content": ""},
                         turn.reply.outcome.finish_reason, tuneloop=api_extension(message.citations))
            if include_usage:
                tail += sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                             "choices": [], "usage": usage(turn)})
            return tail + sse("[DONE]")

        def on_error(exc) -> str:
            return sse({"error": {"message": str(exc), "type": "server_error", "param": None,
                                  "code": "engine_error"}}) + sse("[DONE]")

        return turn_frames(request, turn, on_event=on_event, on_done=on_done, on_error=on_error)


def usage(turn) -> dict:
    """The templated prompt's tokens and the generated ones (a template answer's own when nothing was)."""
    count, outcome = turn.reply.count_tokens, turn.reply.outcome
    prompt = outcome.prompt_tokens
    completion = outcome.completion_tokens or (count(turn.shown) if count else 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Moderations(OpenAIView):
    """OpenAI's moderation shape; ``model`` may name a moderation version or a project slug (its deployment's)."""

    @extend_schema(request=MODERATION_REQUEST, responses={200: OpenApiTypes.OBJECT},
                   summary="OpenAI-compatible moderation: flagged, categories, category_scores")
    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise bad("input", "input must be a string or a non-empty list of strings")
        most, longest = settings.MODERATION_MAX_INPUTS, settings.MODERATION_MAX_CHARS
        if len(texts) > most:
            raise bad("input", f"at most {most} inputs per request")
        for i, text in enumerate(texts):
            if len(text) > longest:
                raise bad(f"input[{i}]", f"input[{i}] has {len(text)} characters; the limit is {longest}")
        moderator, name = self.moderator(request.user, body.get("model"))
        results = []
        for text in texts:
            result = moderator.check(text)
            categories = {c: bool(result.categories.get(c, False)) for c in moderator.categories}
            scores = {c: float(result.scores.get(c, 0.0)) for c in moderator.categories}
            results.append({"flagged": result.flagged, "categories": categories, "category_scores": scores})
        return Response({"id": f"modr-{uuid.uuid4().hex[:24]}", "model": name, "results": results})

    @staticmethod
    def moderator(user, model):
        from training.models import VersionKind
        from training.registry import version_path
        from training.selectors import versions_for_user

        if model in (None, "", "tuneloop-moderation", "omni-moderation-latest", "text-moderation-latest"):
            return moderator_for(None), "tuneloop-moderation"
        if not isinstance(model, str):
            raise bad("model", "model must be a string")
        version = versions_for_user(user).filter(kind=VersionKind.MODERATION, name=model).first()
        if version is not None:
            return moderator_for(version_path(version)), version.name
        deployment = live_deployments_for(user).filter(project__slug=model).first()
        if deployment is not None:
            name = deployment.moderation.name if deployment.moderation else "tuneloop-moderation"
            return moderator_of(deployment.project, deployment), name
        raise OpenAIError(f"The moderation model `{model}` does not exist.", code="model_not_found",
                          status_code=404, param="model")


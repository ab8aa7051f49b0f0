"""One chat turn: the question is stored, moderated, answered by the deployed model and stored again.

``ChatTurn`` splits the work in three so that a streaming view can run the database parts on the
request's thread and the token loop anywhere: ``start()`` (database + input moderation + an engine
slot, raises ``EngineBusy``), ``events()`` (no database: the moderated reply's events) and
``finish()`` (database: the answer, and the moderation event when output was flagged).
A deployment with knowledge bases also retrieves passages for the turn (``serving.citations``): the
model reads them, and the answer keeps them as its ``citations``.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.conf import settings
from django.db import transaction

from serving import runtime
from serving.answers import template_text
from serving.citations import citations_mark, passages_for_turn, with_evidence
from serving.engine import GenerationParams
from serving.errors import ServingError
from serving.limits import UserSlot, user_slot
from serving.models import Conversation, Message, ModerationEvent
from serving.pipeline import ModeratedReply
from serving.selectors import active_deployment
from serving.services import moderation_event_log


def chat_params(project, **overrides) -> GenerationParams:
    """Defaults for the chat page: the project's top-p, a moderate temperature, the site's token cap."""
    values = {"max_tokens": settings.CHAT_MAX_TOKENS, "temperature": 0.7,
              "top_p": project.sampling_top_p if project is not None else 0.95}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return GenerationParams(**values)


def page_params(deployment) -> GenerationParams:
    """The chat page's parameters: the site's token cap, or the deployment's when that is lower."""
    return chat_params(deployment.project, max_tokens=min(settings.CHAT_MAX_TOKENS, deployment.max_tokens))


def model_history(conversation: Conversation) -> list[dict]:
    """The conversation as the model sees it: flagged exchanges (template answers) left out."""
    rows = list(conversation.messages.filter(superseded=False).order_by("id").values("role", "content", "is_template"))
    history: list[dict] = []
    for row in rows:
        if row["role"] == Message.Role.ASSISTANT and row["is_template"]:
            if history and history[-1]["role"] == Message.Role.USER:
                history.pop()
            continue
        history.append({"role": row["role"], "content": row["content"]})
    return history


class ChatTurn:
    """``pending`` rows (the conversation when new, the question) are written by ``start()`` only once
    the engine took the turn, so a refused request (429, model missing) leaves no half conversation."""

    def __init__(self, *, deployment, conversation: Conversation, messages: list[dict],
                 pending: list[Message], params: GenerationParams, supersedes: Message | None = None) -> None:
        self.deployment, self.conversation = deployment, conversation
        self.pending, self.params, self.supersedes = pending, params, supersedes
        self.question = next((m for m in reversed(pending) if m.role == Message.Role.USER), None)
        self.shown = ""
        self.answer: Message | None = None
        self.held_slot: UserSlot | None = None
        engine = runtime.engine_of(deployment)
        project = deployment.project
        moderator = runtime.moderator_of(project, deployment)
        self.citations = passages_for_turn(deployment=deployment, messages=messages, moderator=moderator)
        self.reply = ModeratedReply(
            messages=messages, engine=with_evidence(engine, self.citations), params=params, moderator=moderator,
            template_for=lambda categories: template_text(project, categories),
            count_tokens=getattr(engine, "count_tokens", None), hold_back=settings.MODERATION_HOLD_BACK_CHARS,
            confirm_words=settings.MODERATION_CONFIRM_WORDS,
        )

    # --- the three ways a turn begins

    @classmethod
    def ask(cls, *, conversation: Conversation, text: str, params: GenerationParams | None = None) -> ChatTurn:
        """The chat page: ``text`` follows the user's conversation (a new, unsaved one is saved on start)."""
        deployment = _live(conversation.project)
        text = (text or "").replace("\x00", "").strip()[:20000]
        if not text:
            raise ServingError("write a message first")
        if not conversation.title:
            conversation.title = text[:80]
        history = model_history(conversation) if conversation.pk else []
        question = Message(conversation=conversation, role=Message.Role.USER, content=text, deployment=deployment)
        return cls(deployment=deployment, conversation=conversation,
                   messages=[*history, {"role": "user", "content": text}], pending=[question],
                   params=params or page_params(deployment))

    @classmethod
    def regenerate(cls, *, conversation: Conversation, params: GenerationParams | None = None) -> ChatTurn:
        """The chat page's *Regenerate*: the last answer is kept, marked superseded once the new one starts."""
        deployment = _live(conversation.project)
        last = conversation.messages.filter(superseded=False).order_by("-id").first()
        if last is None or last.role != Message.Role.ASSISTANT:
            raise ServingError("there is no answer to regenerate")
        history = model_history(conversation)
        if history and history[-1]["role"] == Message.Role.ASSISTANT:
            history.pop()
        if not history or history[-1]["role"] != Message.Role.USER:
            raise ServingError("a flagged exchange cannot be regenerated; ask again instead")
        return cls(deployment=deployment, conversation=conversation, messages=history, pending=[],
                   params=params or page_params(deployment), supersedes=last)

    @classmethod
    def api(cls, *, deployment, user, messages: list[dict], params: GenerationParams) -> ChatTurn:
        """``/v1/chat/completions``: the request's messages become a conversation of their own (source: api)."""
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        conversation = Conversation(user=user, project=deployment.project, title=last_user[:80],
                                    source=Conversation.Source.API)
        pending = [Message(conversation=conversation, role=m["role"], content=m["content"], deployment=deployment)
                   for m in messages]
        return cls(deployment=deployment, conversation=conversation, messages=messages,
                   pending=pending, params=params)

    # --- running it

    def start(self) -> None:
        """Take the user's and the engine's slots, moderate the input and store the question.

        Raises ``EngineBusy`` (``UserBusy`` when the user is at their own cap); on any failure every
        slot taken so far is given back.
        """
        self.held_slot = user_slot(self.conversation.user)
        try:
            self.reply.start()
            self._store_question()
        except BaseException:
            self.close()
            raise

    @contextmanager
    def guard(self):
        """Close the turn when anything in the block raises: wrap everything between ``start()`` and the
        hand-over of the turn to whatever finishes it (``complete()`` or a stream)."""
        try:
            yield self
        except BaseException:
            self.close()
            raise

    def _store_question(self) -> None:
        with transaction.atomic():
            if self.conversation.pk is None:
                self.conversation.save()
            elif self.question is not None and self.conversation.title:
                Conversation.objects.filter(pk=self.conversation.pk, title="").update(title=self.conversation.title)
            for message in self.pending:
                message.conversation = self.conversation
                message.save()
            if self.supersedes is not None:
                Message.objects.filter(pk=self.supersedes.pk).update(superseded=True)
        outcome = self.reply.outcome
        if outcome.direction == "input":
            moderation_event_log(project=self.deployment.project, direction=ModerationEvent.Direction.INPUT,
                                 text=outcome.flagged_input, result=outcome.flagged,
                                 conversation=self.conversation, message=self.question)

    def events(self):
        for kind, text in self.reply.events():
            if kind == "replace":
                self.shown = text
            else:
                self.shown += text
            yield kind, text

    def finish(self) -> Message:
        """Store the answer as the user saw it (the template when moderation replaced the model's)."""
        self.close()  # generation is over: its slots go back before the database write
        outcome = self.reply.outcome
        self.answer = Message.objects.create(
            conversation=self.conversation, role=Message.Role.ASSISTANT, content=self.shown,
            deployment=self.deployment, model_version=self.deployment.policy, is_template=outcome.template,
            model_text=outcome.model_text if outcome.template else "",
            citations=citations_mark(self.citations, self.shown, template=outcome.template),
        )
        if outcome.direction == "output":
            moderation_event_log(project=self.deployment.project, direction=ModerationEvent.Direction.OUTPUT,
                                 text=outcome.model_text, result=outcome.flagged, conversation=self.conversation,
                                 message=self.answer)
        return self.answer

    def complete(self) -> Message:
        """After ``start()``: the whole answer at once (non-streaming callers); the slot is freed either way."""
        try:
            for _ in self.events():
                pass
            return self.finish()
        finally:
            self.close()

    def close(self) -> None:
        """Stop generation and free the engine's and the user's slots; safe to call any number of times."""
        try:
            self.reply.close()
        finally:
            if self.held_slot is not None:
                self.held_slot.release()


def _live(project):
    deployment = active_deployment(project)
    if deployment is None:
        raise ServingError("no model is deployed to this project's chat yet; a manager deploys one on Deployments")
    return deployment

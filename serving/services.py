"""Writes for serving: deployments, templates, settings, feedback and moderation review.

Chat turns (user message → moderated answer) live in ``serving/chat.py``; this module holds the
state changes around them. Each raises ``ServingError`` for a wrong-state or invalid request.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.db import IntegrityError, transaction

from serving.answers import DEFAULT_CATEGORY, PRIORITY
from serving.custom_categories import MAX_CATEGORIES, MAX_ENTRIES, pattern_error
from serving.errors import ServingError
from serving.models import (
    MAX_TOKENS_CEILING,
    Deployment,
    Feedback,
    FeedbackKind,
    Message,
    ModerationEvent,
    ServingSettings,
    TemplateResponse,
)
from serving.moderation import CATEGORIES
from serving.selectors import conversation_turns, settings_of

# --- deployments -------------------------------------------------------------------------------

def _check_version(version, kind: str, project, what: str) -> None:
    from training.registry import version_path

    if version.kind != kind:
        raise ServingError(f"{version.name} is a {version.kind} version; the {what} must be a {kind} version")
    if version.project_id not in (None, project.pk):
        raise ServingError(f"{version.name} belongs to another project")
    if not (version_path(version) / "config.json").exists():
        raise ServingError(f"the folder of {version.name} is missing from the model store")


def _switch(project_id: int, activate) -> Deployment:
    """Deactivate the project's live deployment and run ``activate`` in one transaction, under a lock on
    the live row; the partial unique constraint settles the race when there was none to lock."""
    try:
        with transaction.atomic():
            live = Deployment.objects.select_for_update().filter(project_id=project_id, is_active=True)
            Deployment.objects.filter(pk__in=[d.pk for d in live]).update(is_active=False)
            deployment = activate()
            transaction.on_commit(lambda: _warm(deployment))
            return deployment
    except IntegrityError as exc:
        raise ServingError("another deployment of this project happened at the same moment; try again") from exc


def _warm(deployment: Deployment) -> None:
    from serving.runtime import warm  # the model loads in the background of a web process, not at first use

    warm(deployment)


def deployment_create(*, project, policy, moderation=None, created_by=None, max_tokens: int | None = None,
                      knowledge_bases=None) -> Deployment:
    """Promote ``policy`` (and optionally a moderation version) to the project's chat.

    ``max_tokens`` caps what one ``/v1`` request may ask for (default ``DEPLOYMENT_MAX_TOKENS``);
    ``knowledge_bases`` (the project's own) are searched for every user turn and the answers cite them.
    The previous active deployment stays, inactive, for rollback.
    """
    from serving.knowledge.services import knowledge_bases_attach

    _check_version(policy, "policy", project, "chat model")
    if moderation is not None:
        _check_version(moderation, "moderation", project, "moderation model")
    max_tokens = settings.DEPLOYMENT_MAX_TOKENS if max_tokens is None else max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_CEILING:
        raise ServingError(f"max_tokens must be a whole number between 1 and {MAX_TOKENS_CEILING}")
    def activate() -> Deployment:
        deployment = Deployment.objects.create(project=project, policy=policy, moderation=moderation,
                                               created_by=created_by, is_active=True, max_tokens=max_tokens)
        knowledge_bases_attach(deployment=deployment, knowledge_bases=knowledge_bases or [])
        return deployment

    return _switch(project.pk, activate)


def deployment_activate(*, deployment: Deployment) -> Deployment:
    """Roll back (or forward) to an earlier deployment of the same project."""
    def activate() -> Deployment:
        Deployment.objects.filter(pk=deployment.pk).update(is_active=True)
        deployment.is_active = True
        return deployment

    return _switch(deployment.project_id, activate)


# --- templates and settings --------------------------------------------------------------------

def template_set(*, project, category: str, text: str) -> TemplateResponse | None:
    """Set the project's template for ``category``; empty text goes back to the fallback."""
    known = (*PRIORITY, DEFAULT_CATEGORY, *settings_of(project).custom_categories)
    if category not in known:
        raise ServingError(f"unknown category {category!r}")
    text = (text or "").strip()
    if not text:
        TemplateResponse.objects.filter(project=project, category=category).delete()
        return None
    row, _ = TemplateResponse.objects.update_or_create(project=project, category=category, defaults={"text": text})
    return row


NAME = re.compile(r"^[a-z0-9][a-z0-9_/-]{0,62}$")


def parse_custom_categories(text: str) -> dict[str, list[str]]:
    """``name: keyword, keyword, re:regex`` per line → a dict; errors name the line."""
    categories: dict[str, list[str]] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        name = name.strip().lower()
        if not sep or not NAME.match(name):
            raise ServingError(f"line {number}: write `name: keyword, keyword, re:regex` (name in a-z, 0-9, -, _, /)")
        if name in CATEGORIES:
            raise ServingError(f"line {number}: {name!r} is a standard category; choose another name")
        entries = [e.strip() for e in rest.split(",") if e.strip()]
        if not entries:
            raise ServingError(f"line {number}: category {name!r} needs at least one keyword or re: pattern")
        if len(entries) > MAX_ENTRIES:
            raise ServingError(f"line {number}: category {name!r} has {len(entries)} entries; at most {MAX_ENTRIES}")
        for entry in entries:
            why = pattern_error(entry[3:]) if entry.startswith("re:") else None
            if why:
                raise ServingError(f"line {number}: the pattern {entry[3:]!r} cannot be used: {why}")
        categories[name] = entries
        if len(categories) > MAX_CATEGORIES:
            raise ServingError(f"line {number}: at most {MAX_CATEGORIES} custom categories")
    return categories


def serving_settings_update(*, project, feedback_to_prompts: bool, custom_categories: dict) -> ServingSettings:
    row, _ = ServingSettings.objects.update_or_create(
        project=project, defaults={"feedback_to_prompts": feedback_to_prompts, "custom_categories": custom_categories})
    return row


# --- feedback ----------------------------------------------------------------------------------

def feedback_give(*, message: Message, user, kind: str, comment: str = "") -> Feedback:
    """Thumbs up/down or report an answer; once per kind (a retry changes nothing), up and down exclusive.

    With the project's ``feedback_to_prompts`` on, a thumbs-down or a report turns the conversation
    into a new prompt at once.
    """
    if kind not in FeedbackKind.values:
        raise ServingError(f"unknown feedback {kind!r}; choose one of {', '.join(FeedbackKind.values)}")
    if message.role != Message.Role.ASSISTANT:
        raise ServingError("feedback is given on answers only")
    with transaction.atomic():
        opposite = {FeedbackKind.THUMBS_UP: FeedbackKind.THUMBS_DOWN, FeedbackKind.THUMBS_DOWN: FeedbackKind.THUMBS_UP}
        if kind in opposite:
            Feedback.objects.filter(message=message, user=user, kind=opposite[kind]).delete()
        feedback, created = Feedback.objects.get_or_create(message=message, user=user, kind=kind,
                                                           defaults={"comment": (comment or "")[:4000]})
        if not created and comment:
            feedback.comment = comment[:4000]
            feedback.save(update_fields=["comment"])
    project = message.conversation.project
    if created and kind != FeedbackKind.THUMBS_UP and settings_of(project).feedback_to_prompts:
        feedback_to_prompt(feedback=feedback)
    return feedback


def feedback_to_prompt(*, feedback: Feedback):
    """The conversation up to the answer becomes a new prompt of the project (source: chat), with the
    passages the answer was given as its evidence (numbered as the answer cites them).

    When the same conversation is already a prompt there, that prompt is linked and returned.
    """
    from annotation.errors import AnnotationError
    from annotation.models import PromptSource
    from annotation.selectors import prompt_matching
    from annotation.services import prompt_create
    from serving.citations import prompt_evidence

    message = feedback.message
    turns = [t for t in conversation_turns(message) if t["role"] in ("system", "user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise ServingError("this answer has no question before it")
    record = {"messages": turns, "metadata": {
        "from": "chat", "feedback": feedback.kind, "comment": feedback.comment, "message_id": message.pk,
        "answer": message.content, "model_version": message.model_version.name if message.model_version else None,
    }, "evidence": prompt_evidence(message.citations)}
    try:
        prompt = prompt_create(project=message.conversation.project, record=record, source=PromptSource.CHAT,
                               created_by=feedback.user)
    except AnnotationError:
        prompt = prompt_matching(message.conversation.project, record)
    Feedback.objects.filter(pk=feedback.pk).update(handled=True, prompt=prompt)
    feedback.handled, feedback.prompt = True, prompt
    return prompt


def feedback_dismiss(*, feedback: Feedback) -> None:
    Feedback.objects.filter(pk=feedback.pk).update(handled=True)


# --- moderation events -------------------------------------------------------------------------

def moderation_event_log(*, project, direction: str, text: str, result, conversation=None,
                         message=None) -> ModerationEvent:
    return ModerationEvent.objects.create(
        project=project, conversation=conversation, message=message, direction=direction, text=text,
        categories=[c for c, on in result.categories.items() if on], scores=result.scores,
        failed_closed=result.failed_closed, error=result.error or "",
    )


def moderation_event_review(*, event: ModerationEvent, decision: str, by, categories: list[str] | None = None
                            ) -> ModerationEvent:
    """Confirm (with the categories that really apply) or dismiss as a false positive.

    Reviewed events are the moderation labels a moderation run trains on: confirmed ones with
    their categories, dismissed ones as benign text.
    """
    if decision not in (ModerationEvent.Review.CONFIRMED, ModerationEvent.Review.DISMISSED):
        raise ServingError("review decision must be `confirmed` or `dismissed`")
    if decision == ModerationEvent.Review.CONFIRMED:
        chosen = list(categories if categories is not None else event.categories)
        if not chosen:
            raise ServingError("a confirmed event needs at least one category")
        event.categories = chosen
    else:
        event.categories = []
    event.review, event.reviewed_by = decision, by
    event.save(update_fields=["categories", "review", "reviewed_by"])
    return event

"""Reads for serving, each scoped to the requester (the project gate is ``annotation.selectors``)."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from serving.errors import AmbiguousModel
from serving.models import (
    Conversation,
    Deployment,
    Feedback,
    FeedbackKind,
    Message,
    ModerationEvent,
    ServingSettings,
)


def active_deployment(project) -> Deployment | None:
    return (Deployment.objects.filter(project=project, is_active=True)
            .select_related("policy", "moderation", "project").first())


def deployed_now() -> QuerySet[Deployment]:
    """Every project's live deployment, newest first: what a web process loads at start."""
    return Deployment.objects.filter(is_active=True).select_related("policy").order_by("-created_at")


def deployments_of(project) -> QuerySet[Deployment]:
    return Deployment.objects.filter(project=project).select_related("policy", "moderation", "created_by")


def deployment_of(project, deployment_id: int) -> Deployment:
    return get_object_or_404(deployments_of(project), pk=deployment_id)


def live_deployments_for(user) -> QuerySet[Deployment]:
    """Active deployments of the projects ``user`` is a member of: what the chat and ``/v1/models`` offer."""
    return (Deployment.objects.filter(is_active=True, project__memberships__user=user)
            .select_related("policy", "moderation", "project").order_by("project__name").distinct())


def model_id(deployment: Deployment) -> str:
    """The deployment's id in ``/v1``: ``<project slug>/<version name>``, one per live deployment.

    A version name alone is not enough: the same version (the shared ``base``) can be deployed to
    several projects, each with its own moderation, templates and event log.
    """
    return f"{deployment.project.slug}/{deployment.policy.name}"


def deployment_for_model(user, model: str) -> Deployment | None:
    """The live deployment ``model`` names for ``user``, or None when it names none of them.

    ``model`` is a ``model_id`` (``<project>/<version>``), or, as a shorthand, a version name or a
    project slug that matches exactly one live deployment of the user's projects. A shorthand that
    matches several raises ``AmbiguousModel`` with the ids to choose from: never a silent pick,
    since the pick decides which project's moderation, templates and managers see the messages.
    """
    live = live_deployments_for(user)
    slug, sep, name = model.partition("/")
    if sep:
        return live.filter(project__slug=slug, policy__name=name).first()
    matches = list(live.filter(Q(policy__name=model) | Q(project__slug=model)))
    if len(matches) > 1:
        raise AmbiguousModel(model, sorted(model_id(d) for d in matches))
    return matches[0] if matches else None


def settings_of(project) -> ServingSettings:
    """The project's serving settings (defaults, unsaved, when the manager never changed them)."""
    return ServingSettings.objects.filter(project=project).first() or ServingSettings(project=project)


def conversations_of(project, user) -> QuerySet[Conversation]:
    return Conversation.objects.filter(project=project, user=user, source=Conversation.Source.CHAT)


def conversation_of(project, user, conversation_id: int) -> Conversation:
    """One of the requester's own conversations in ``project``; 404 for anyone else's."""
    return get_object_or_404(conversations_of(project, user), pk=conversation_id)


def visible_messages(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.filter(superseded=False).prefetch_related("feedback")


def message_of(project, user, message_id: int) -> Message:
    """An assistant message of the requester's own conversation in ``project``."""
    return get_object_or_404(Message.objects.select_related("conversation"), pk=message_id, role="assistant",
                             conversation__project=project, conversation__user=user)


def events_for_review(project, *, review: str = ModerationEvent.Review.OPEN) -> QuerySet[ModerationEvent]:
    return (ModerationEvent.objects.filter(project=project, review=review)
            .select_related("conversation__user", "message"))


def event_of(project, event_id: int) -> ModerationEvent:
    return get_object_or_404(ModerationEvent.objects.filter(project=project), pk=event_id)


def feedback_for_review(project, *, handled: bool | None = False) -> QuerySet[Feedback]:
    """Thumbs-down and reports of the project's chat, newest first; ``handled=None`` for all of them."""
    feedback = Feedback.objects.filter(message__conversation__project=project,
                                       kind__in=[FeedbackKind.THUMBS_DOWN, FeedbackKind.REPORT])
    if handled is not None:
        feedback = feedback.filter(handled=handled)
    return feedback.select_related("user", "message__conversation", "message__model_version", "prompt")


def feedback_of(project, feedback_id: int) -> Feedback:
    return get_object_or_404(Feedback.objects.filter(message__conversation__project=project)
                             .select_related("message__conversation"), pk=feedback_id)


def moderation_labels_for_training(project) -> QuerySet[ModerationEvent]:
    """Events a manager reviewed: confirmed ones keep their categories, dismissed ones are benign."""
    return (ModerationEvent.objects.filter(project=project, failed_closed=False)
            .exclude(review=ModerationEvent.Review.OPEN).only("id", "text", "categories", "review").order_by("id"))


def conversation_turns(message: Message) -> list[dict]:
    """The conversation up to (not including) ``message``, as OpenAI-style messages."""
    earlier = message.conversation.messages.filter(id__lt=message.id, superseded=False).order_by("id")
    return [{"role": m.role, "content": m.content} for m in earlier]

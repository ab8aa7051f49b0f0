"""Reads for annotation, each already scoped to the requester's memberships.

``project_for_user`` is the one gate every page and API view of every app goes through: a
project the user is not a member of (or not in an allowed role) is a 404, whatever its slug.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404

from annotation.models import (
    Assignment,
    AssignmentStatus,
    Completion,
    Demonstration,
    Invitation,
    Membership,
    Project,
    Prompt,
    Ranking,
    ReviewState,
    Role,
)
from config.db.prepared import Prepared


def projects_for_user(user) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("project").order_by("project__name")


CREATORS_ONLY = ("Only staff can start projects on this site (TUNELOOP_PROJECT_CREATORS=staff); "
                 "ask an administrator to create one for you.")


def may_create_projects(user) -> bool:
    """The site setting ``PROJECT_CREATORS``: ``staff`` (staff and superusers) or ``anyone`` signed in."""
    if not getattr(user, "is_authenticated", False):
        return False
    return settings.PROJECT_CREATORS == "anyone" or user.is_staff or user.is_superuser


def invitations_for(user) -> QuerySet[Invitation]:
    """Invitations waiting for ``user``'s answer, newest first."""
    return Invitation.objects.filter(user=user).select_related("project", "invited_by")


def invitation_for(user, invitation_id: int) -> Invitation:
    """One of ``user``'s own pending invitations; anyone else's is a 404."""
    invitation = invitations_for(user).filter(pk=invitation_id).first()
    if invitation is None:
        raise Http404("No such invitation")
    return invitation


def invitations_of(project: Project) -> QuerySet[Invitation]:
    """The project's pending invitations (what its managers see beside the members)."""
    return Invitation.objects.filter(project=project).select_related("user", "invited_by")


def role_in(user, project: Project) -> str | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def _membership(roles: tuple[str, ...] | None, *, user_id: int, slug: str) -> QuerySet[Membership]:
    members = Membership.objects.filter(user_id=user_id, project__slug=slug)
    if roles is not None:
        members = members.filter(role__in=roles)
    return members.select_related("project")[:1]  # (user, project) is unique


# Every request of every project page and API call reads this: compiled once (config.db.prepared).
_MEMBERSHIP = Prepared(_membership, user_id=int, slug=str)


def project_for_user(user, slug: str, roles: Iterable[str] | None = None) -> Project:
    """The project ``slug`` if ``user`` is a member in one of ``roles`` (any role when None); else 404."""
    if not getattr(user, "is_authenticated", False):
        raise Http404("No such project")
    roles = None if roles is None else tuple(roles)
    membership = _MEMBERSHIP.first(roles, user_id=user.pk, slug=str(slug))
    if membership is None:
        raise Http404("No such project")
    project = membership.project
    project.requester_role = membership.role
    return project


MANAGERS = (Role.MANAGER,)
REVIEWERS = (Role.MANAGER, Role.REVIEWER)
EVERYONE = (Role.MANAGER, Role.REVIEWER, Role.LABELER)


# --- Reads other apps use (training snapshots, sampling); keep these signatures stable. ---

def approved_demonstrations(project: Project) -> QuerySet[Demonstration]:
    """Demonstrations eligible for SFT: approved ones, plus submitted ones never sampled for review."""
    from django.db.models import Q

    return (
        Demonstration.objects.filter(prompt__project=project)
        .filter(Q(review_state=ReviewState.APPROVED) | Q(review_state=ReviewState.PENDING, needs_review=False))
        .select_related("prompt")
        .order_by("id")
    )


def rankings_for_training(project: Project) -> QuerySet[Ranking]:
    """Rankings eligible for reward-model training (not rejected, not waiting for a sampled review)."""
    from django.db.models import Q

    return (
        Ranking.objects.filter(prompt__project=project)
        .filter(Q(review_state=ReviewState.APPROVED) | Q(review_state=ReviewState.PENDING, needs_review=False))
        .select_related("prompt")
        .order_by("id")
    )


def prompts_of(project: Project) -> QuerySet[Prompt]:
    return Prompt.objects.filter(project=project).order_by("id")


# --- Task queue, review and API reads (anno-core). ---

def completions_to_rank(prompt: Prompt) -> QuerySet[Completion]:
    """The K completions a ranking task shows: the prompt's first ``completions_per_prompt`` by id."""
    k = prompt.project.completions_per_prompt
    ids = list(Completion.objects.filter(prompt=prompt).order_by("id").values_list("pk", flat=True)[:k])
    return Completion.objects.filter(pk__in=ids).order_by("id")


def labels_visible_to(model, project: Project, user) -> QuerySet:
    """Demonstrations or rankings of ``project``: every one for reviewers and managers, a labeler's own else."""
    items = model.objects.filter(prompt__project=project).select_related("prompt", "author").order_by("-id")
    if role_in(user, project) in REVIEWERS:
        return items
    return items.filter(author=user)


def _assignment(*, assignment_id: int, project_id: int, user_id: int) -> QuerySet[Assignment]:
    return Assignment.objects.filter(pk=assignment_id, project_id=project_id, user_id=user_id).select_related(
        "prompt", "project")


_ASSIGNMENT = Prepared(_assignment, assignment_id=int, project_id=int, user_id=int)


def assignment_of(project: Project, user, assignment_id: int) -> Assignment:
    """The requester's own assignment in ``project``; anyone else's (or another project's) is a 404."""
    assignment = _ASSIGNMENT.first(assignment_id=int(assignment_id), project_id=project.pk, user_id=user.pk)
    if assignment is None:
        raise Http404("No such task")
    return assignment


def prompt_matching(project: Project, record: dict) -> Prompt | None:
    """The project's prompt that ``record`` duplicates (same normalised conversation), if any."""
    from annotation.prompt_text import normalized_hash, to_messages

    return Prompt.objects.filter(project=project, normalized_hash=normalized_hash(to_messages(record))).first()


def prompt_of(project: Project, prompt_id: int) -> Prompt:
    prompt = Prompt.objects.filter(pk=prompt_id, project=project).first()
    if prompt is None:
        raise Http404("No such prompt")
    return prompt


def labeler_summary(project: Project, user, today=None) -> dict:
    """What a labeler sees about their own work: done today and in all, time per item, review outcomes."""
    import datetime as dt
    import statistics

    from django.utils import timezone

    today = today or timezone.localdate()
    start = timezone.make_aware(dt.datetime.combine(today, dt.time.min))
    summary: dict = {"date": today.isoformat()}
    for name, model in (("demonstrations", Demonstration), ("rankings", Ranking)):
        mine = model.objects.filter(prompt__project=project, author=user)
        times = [ms for ms in mine.filter(created_at__gte=start).values_list("time_spent_ms", flat=True) if ms]
        summary[name] = {
            "today": mine.filter(created_at__gte=start).count(),
            "total": mine.count(),
            "median_seconds_today": round(statistics.median(times) / 1000, 1) if times else None,
            "approved": mine.filter(review_state=ReviewState.APPROVED).count(),
            "pending_review": mine.filter(review_state=ReviewState.PENDING, needs_review=True).count(),
            "rejected": mine.filter(review_state=ReviewState.REJECTED).count(),
        }
    summary["skipped"] = Assignment.objects.filter(project=project, user=user, status=AssignmentStatus.SKIPPED).count()
    return summary

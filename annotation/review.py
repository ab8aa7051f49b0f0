"""The review state machine of demonstrations and rankings.

::

    PENDING (needs_review) --review_approve / review_edit--> APPROVED
    PENDING or APPROVED    --review_reject--> REJECTED  (its assignment becomes RETURNED: the slot is free again)

Every transition is a conditional update on the current state, so two reviewers acting on the same
item at once cannot both win: the second one gets an ``AnnotationError`` saying what happened.
Role checks belong to the caller (``project_for_user(..., REVIEWERS)``).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.errors import AnnotationError
from annotation.models import (
    Demonstration,
    Project,
    Ranking,
    ReviewState,
    TaskKind,
)
from annotation.queue import assignment_return

MODELS = {TaskKind.DEMONSTRATION: Demonstration, TaskKind.RANKING: Ranking}


def review_queue(*, project: Project, kind: str) -> QuerySet:
    """Items sampled for review and still waiting, oldest first."""
    model = MODELS.get(kind)
    if model is None:
        raise AnnotationError(f"unknown review kind {kind!r}; choose demonstration or ranking")
    return model.objects.filter(
        prompt__project=project, needs_review=True, review_state=ReviewState.PENDING
    ).order_by("created_at", "id")


def _transition(item, *, allowed: tuple[str, ...], **changes) -> None:
    updated = type(item).objects.filter(pk=item.pk, review_state__in=allowed).update(**changes)
    if not updated:
        current = type(item).objects.filter(pk=item.pk).values_list("review_state", flat=True).first()
        if current is None:
            raise AnnotationError("this item no longer exists")
        raise AnnotationError(f"this item is already {ReviewState(current).label.lower()}")
    item.refresh_from_db()


def _check(item) -> None:
    if not isinstance(item, Demonstration | Ranking):
        raise AnnotationError("only demonstrations and rankings are reviewed")


def _not_own(item, reviewer) -> None:
    """A label's author may not be its reviewer unless the project allows it (``allow_self_review``)."""
    if item.author_id == reviewer.pk and not item.prompt.project.allow_self_review:
        raise AnnotationError("you cannot approve or edit your own label; another reviewer must review it")


def review_approve(*, item, reviewer, comment: str = ""):
    """Approve a pending item; approving an approved one again changes nothing."""
    _check(item)
    _not_own(item, reviewer)
    if item.review_state == ReviewState.APPROVED and item.reviewer_id is not None:
        return item
    _transition(
        item, allowed=(ReviewState.PENDING, ReviewState.APPROVED), review_state=ReviewState.APPROVED,
        reviewer=reviewer, reviewed_at=timezone.now(), review_comment=(comment or "").strip(),
    )
    return item


def review_edit(*, item, reviewer, content: str):
    """Replace a demonstration's text and approve it; the labeler's text stays in ``original_content``."""
    if not isinstance(item, Demonstration):
        raise AnnotationError("only demonstrations can be edited; approve or reject a ranking")
    _not_own(item, reviewer)
    content = (content or "").strip()
    if not content:
        raise AnnotationError("the edited answer cannot be empty")
    original = item.original_content or item.content
    _transition(
        item, allowed=(ReviewState.PENDING, ReviewState.APPROVED), review_state=ReviewState.APPROVED,
        reviewer=reviewer, reviewed_at=timezone.now(), content=content, original_content=original,
    )
    return item


def review_reject(*, item, reviewer, reason: str):
    """Reject with a reason; the item's slot goes back to the queue for another labeler."""
    _check(item)
    reason = (reason or "").strip()
    if not reason:
        raise AnnotationError("say why the item is rejected; the labeler reads it")
    with transaction.atomic():
        _transition(
            item, allowed=(ReviewState.PENDING, ReviewState.APPROVED), review_state=ReviewState.REJECTED,
            reviewer=reviewer, reviewed_at=timezone.now(), review_comment=reason,
        )
        if item.assignment_id is not None:
            assignment_return(assignment_id=item.assignment_id)
    return item

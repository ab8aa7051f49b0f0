"""The labeling hot path's JSON as plain dicts: a task (next task, one's task) and a submitted demonstration.

A ``ModelSerializer`` builds its fields anew for every object it renders (about a tenth of a next-task
request's CPU). These functions write the same shapes directly; ``TaskSerializer`` and
``DemonstrationSerializer`` stay the schema's description of them, and a test keeps the two equal.
"""

from __future__ import annotations

import hashlib

from rest_framework.fields import DateTimeField

from annotation.models import Assignment, Demonstration, Prompt, TaskKind
from annotation.selectors import completions_to_rank

_MOMENT = DateTimeField()  # DRF's own formatting: ISO 8601 in the current time zone, "Z" for UTC


def moment(value) -> str | None:
    return _MOMENT.to_representation(value) if value else None


def completions_shown(assignment: Assignment) -> list[dict]:
    """A ranking task's K completions in an order of their own per task (so position tells nothing)."""
    if assignment.kind != TaskKind.RANKING:
        return []
    shown = sorted(
        completions_to_rank(assignment.prompt),
        key=lambda c: hashlib.sha256(f"{assignment.pk}:{c.pk}".encode()).hexdigest(),
    )
    return [{"id": c.pk, "text": c.text} for c in shown]


def prompt_data(prompt: Prompt, *, show_gold: bool) -> dict:
    """``is_gold`` only for reviewers and managers (``PromptSerializer`` says why)."""
    data = {"id": prompt.pk, "messages": prompt.messages, "text": prompt.text, "source": prompt.source,
            "metadata": prompt.metadata, "evidence": prompt.evidence}
    if show_gold:
        data["is_gold"] = prompt.is_gold
    data["flag_count"] = prompt.flag_count
    data["created_at"] = moment(prompt.created_at)
    return data


def task_data(assignment: Assignment, *, show_gold: bool) -> dict:
    return {"id": assignment.pk, "kind": str(assignment.kind), "status": str(assignment.status),
            "leased_at": moment(assignment.leased_at), "expires_at": moment(assignment.expires_at),
            "prompt": prompt_data(assignment.prompt, show_gold=show_gold),
            "completions": completions_shown(assignment)}


def demonstration_data(demo: Demonstration) -> dict:
    reviewer = demo.reviewer if demo.reviewer_id is not None else None
    return {"id": demo.pk, "prompt": demo.prompt_id, "prompt_text": demo.prompt.text,
            "assignment": demo.assignment_id, "author": demo.author.username, "content": demo.content,
            "original_content": demo.original_content, "review_state": str(demo.review_state),
            "needs_review": demo.needs_review, "reviewer": reviewer.username if reviewer else None,
            "reviewed_at": moment(demo.reviewed_at), "review_comment": demo.review_comment,
            "time_spent_ms": demo.time_spent_ms, "created_at": moment(demo.created_at)}

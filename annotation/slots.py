"""Slots of the task queue, counted on each prompt row.

A prompt has ``project.labels_per_item`` slots per kind. ``demonstrations_taken`` and
``rankings_taken`` count those held now: LEASED assignments (until the sweep marks a passed lease
EXPIRED), SUBMITTED ones and imported labels (answers, rankings). ``demonstration_open`` and
``ranking_open`` say whether a new labeler can have one (a ranking also needs its K completions);
partial indexes on them let the claim find the first open item without walking the done ones.
``annotation.queue`` moves the counts in each transition, under the prompt's row lock;
``slots_recount`` counts them again from the assignments when the project's settings change.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce

from annotation.models import (
    Assignment,
    AssignmentStatus,
    Completion,
    Demonstration,
    Project,
    Prompt,
    Ranking,
    RankingSource,
    TaskKind,
)

KINDS = (TaskKind.DEMONSTRATION, TaskKind.RANKING)
TAKEN = {TaskKind.DEMONSTRATION: "demonstrations_taken", TaskKind.RANKING: "rankings_taken"}
OPEN = {TaskKind.DEMONSTRATION: "demonstration_open", TaskKind.RANKING: "ranking_open"}
HOLDING = (AssignmentStatus.LEASED, AssignmentStatus.SUBMITTED)


def _count_of(queryset: QuerySet, field: str = "prompt"):
    """A correlated COUNT(*) subquery (no GROUP BY on the outer query, so FOR UPDATE stays legal)."""
    counted = queryset.order_by().values(field).annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def has_completions(project: Project) -> Exists:
    """The prompt has the K completions a ranking task shows."""
    k = project.completions_per_prompt
    return Exists(Completion.objects.filter(prompt=OuterRef("pk")).order_by("id")[k - 1:k])


def _open(kind: str, project: Project, delta: int = 0) -> ExpressionWrapper:
    """Whether a slot of ``kind`` is open once the count has moved by ``delta`` (in an UPDATE's SET,
    the columns read are the row's values before the update)."""
    still_free = Q(**{f"{TAKEN[kind]}__lt": project.labels_per_item - delta})
    if kind == TaskKind.RANKING:
        still_free &= has_completions(project)
    return ExpressionWrapper(still_free, output_field=BooleanField())


def slots_moved(kind: str, delta: int, project: Project) -> dict:
    """The UPDATE's values that take (``delta`` > 0) or give back slots of ``kind``."""
    taken = TAKEN[kind]
    return {taken: F(taken) + delta, OPEN[kind]: _open(kind, project, delta)}


def slots_move(prompt_ids, kind: str, delta: int, project: Project) -> None:
    """Take (``delta`` > 0) or give back slots of prompts whose rows this transaction has locked."""
    Prompt.objects.filter(pk__in=prompt_ids).update(**slots_moved(kind, delta, project))


def slots_recount(project: Project, prompts: QuerySet[Prompt] | None = None) -> int:
    """Count the slots of ``prompts`` (default: all of the project's) again from their assignments and
    labels, and whether each is open under the project's current settings. Locks the rows first, so no
    claim commits between the count and the write. Returns how many prompts were counted."""
    prompts = Prompt.objects.filter(project=project) if prompts is None else prompts
    holding = {kind: Assignment.objects.filter(prompt=OuterRef("pk"), kind=kind, status__in=HOLDING)
               for kind in KINDS}
    imported = {TaskKind.DEMONSTRATION: Demonstration.objects.filter(prompt=OuterRef("pk"), assignment__isnull=True),
                TaskKind.RANKING: Ranking.objects.filter(prompt=OuterRef("pk"), source=RankingSource.IMPORT)}
    with transaction.atomic():
        locked = len(prompts.select_for_update().values_list("pk", flat=True))
        prompts.update(**{TAKEN[kind]: _count_of(holding[kind]) + _count_of(imported[kind]) for kind in KINDS})
        prompts.update(**{OPEN[kind]: _open(kind, project) for kind in KINDS})
    return locked

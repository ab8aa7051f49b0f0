"""The task queue: the assignment state machine, with every transition in this module.

::

    (free slot) --task_next--> LEASED --demonstration_submit / ranking_submit--> SUBMITTED
                                 |  \\--task_skip--> SKIPPED            SUBMITTED --review_reject--> RETURNED
                                 \\--lease passes--> EXPIRED --task_next (same labeler, slot free)--> LEASED

A prompt has ``project.labels_per_item`` slots per kind. A slot is taken by a SUBMITTED assignment
or a LEASED one whose lease has not passed (and, for demonstrations, by an imported answer); SKIPPED,
EXPIRED and RETURNED ones give it back. Claiming locks the chosen prompt row with
``select_for_update(skip_locked=True)`` and counts its slots again in a fresh statement before
inserting, so concurrent labelers never share a slot on PostgreSQL; the unique constraint
(prompt, kind, user) keeps a labeler from getting the same item twice. On SQLite writes are
serialised anyway. Submitting is idempotent: the label hangs off its assignment one-to-one.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.errors import AnnotationError
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Completion,
    Demonstration,
    Project,
    Prompt,
    PromptSource,
    Ranking,
    ReviewState,
    TaskKind,
)
from annotation.prompt_text import PromptFormatError, normalized_hash, to_messages
from annotation.selectors import completions_to_rank

FLAGS = ("unsafe", "factually_wrong", "not_helpful", "personal_data")
QUEUE_KINDS = (TaskKind.DEMONSTRATION, TaskKind.RANKING)
MAX_TIME_SPENT_MS = 24 * 3600 * 1000
_CLAIM_ATTEMPTS = 5


def _live(kind: str, now: datetime) -> Q:
    return Q(kind=kind) & (Q(status=AssignmentStatus.SUBMITTED) | Q(status=AssignmentStatus.LEASED, expires_at__gt=now))


def _count_of(queryset: QuerySet, field: str = "prompt"):
    """A correlated COUNT(*) subquery (no GROUP BY on the outer query, so FOR UPDATE stays legal)."""
    counted = queryset.order_by().values(field).annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def slots_taken(prompt_id: int, kind: str, now: datetime) -> int:
    """Slots of one prompt that are taken right now (a fresh statement: sees every committed claim)."""
    taken = Assignment.objects.filter(_live(kind, now), prompt_id=prompt_id).count()
    if kind == TaskKind.DEMONSTRATION:
        taken += Demonstration.objects.filter(prompt_id=prompt_id, assignment__isnull=True).count()
    return taken


def _candidates(project: Project, user, kind: str, now: datetime, *, gold: bool) -> QuerySet[Prompt]:
    """Prompts ``user`` may be handed now, first come first served; gold items ignore the slot limit."""
    mine = Assignment.objects.filter(prompt=OuterRef("pk"), kind=kind, user=user).exclude(
        status=AssignmentStatus.EXPIRED
    )
    prompts = Prompt.objects.filter(project=project, is_gold=gold).filter(~Exists(mine))
    if kind == TaskKind.RANKING:
        prompts = prompts.annotate(
            n_completions=_count_of(Completion.objects.filter(prompt=OuterRef("pk")))
        ).filter(n_completions__gte=project.completions_per_prompt)
    if not gold:
        live = Assignment.objects.filter(_live(kind, now), prompt=OuterRef("pk"))
        imported = Demonstration.objects.filter(prompt=OuterRef("pk"), assignment__isnull=True)
        if project.labels_per_item == 1:
            # The common case as NOT EXISTS, which PostgreSQL runs as an anti-join instead of a count per row.
            prompts = prompts.filter(~Exists(live))
            if kind == TaskKind.DEMONSTRATION:
                prompts = prompts.filter(~Exists(imported))
        else:
            taken = _count_of(live)
            if kind == TaskKind.DEMONSTRATION:
                taken = taken + _count_of(imported)
            prompts = prompts.annotate(taken=taken).filter(taken__lt=project.labels_per_item)
    return prompts.order_by("id")


def leases_expire(*, project: Project, kind: str, now: datetime | None = None) -> int:
    """Mark leases that have passed EXPIRED; their slots go back to the pool. Returns how many."""
    now = now or timezone.now()
    passed = Assignment.objects.filter(project=project, kind=kind, status=AssignmentStatus.LEASED, expires_at__lte=now)
    if not passed.exists():
        return 0
    with transaction.atomic():
        # Rows another caller is already expiring (or submitting) are skipped, so concurrent sweeps never deadlock.
        ids = list(passed.select_for_update(skip_locked=True).values_list("pk", flat=True)[:1000])
        if not ids:
            return 0
        return Assignment.objects.filter(pk__in=ids, status=AssignmentStatus.LEASED).update(
            status=AssignmentStatus.EXPIRED
        )


def _gold_due(project: Project, user, kind: str) -> bool:
    """Serve a gold item now if that keeps this labeler's share of gold items at or under ``gold_rate``."""
    if project.gold_rate <= 0:
        return False
    served = Assignment.objects.filter(project=project, user=user, kind=kind).exclude(status=AssignmentStatus.EXPIRED)
    total = served.count()
    gold = served.filter(prompt__is_gold=True).count()
    return gold + 1 <= project.gold_rate * (total + 1)


def task_next(*, project: Project, user, kind: str, now: datetime | None = None) -> Assignment | None:
    """The labeler's live lease of this kind, else a newly claimed slot, else None (nothing left)."""
    if kind not in QUEUE_KINDS:
        raise AnnotationError(f"unknown task kind {kind!r}; choose demonstration or ranking")
    now = now or timezone.now()
    leases_expire(project=project, kind=kind, now=now)
    current = (
        Assignment.objects.filter(
            project=project, user=user, kind=kind, status=AssignmentStatus.LEASED, expires_at__gt=now
        )
        .select_related("prompt", "project")
        .order_by("leased_at", "id")
        .first()
    )
    if current is not None:
        return current
    pools = (True, False) if _gold_due(project, user, kind) else (False,)
    for gold in pools:
        for _ in range(_CLAIM_ATTEMPTS):
            with transaction.atomic():
                prompt = _candidates(project, user, kind, now, gold=gold).select_for_update(skip_locked=True).first()
                if prompt is None:
                    break
                if not gold and slots_taken(prompt.pk, kind, now) >= project.labels_per_item:
                    continue  # a concurrent labeler filled it between our snapshot and our lock
                assignment = _claim(project, prompt, user, kind, now)
                if assignment is not None:
                    return assignment
    return None


def _claim(project: Project, prompt: Prompt, user, kind: str, now: datetime) -> Assignment | None:
    expires = now + timedelta(seconds=project.lease_seconds)
    mine = Assignment.objects.filter(prompt=prompt, kind=kind, user=user)
    if mine.filter(status=AssignmentStatus.EXPIRED).update(
        status=AssignmentStatus.LEASED, leased_at=now, expires_at=expires, finished_at=None
    ):
        return mine.select_related("prompt", "project").get()
    try:
        with transaction.atomic():
            assignment = Assignment.objects.create(
                project=project, prompt=prompt, kind=kind, user=user, expires_at=expires
            )
    except IntegrityError:
        return None  # this labeler already holds a row for the item (a second tab got there first)
    assignment.prompt, assignment.project = prompt, project
    return assignment


def _locked(assignment: Assignment, user, kind: str | None) -> Assignment:
    """Lock the prompt then the assignment (the order task_next uses) and check whose task it is."""
    prompt = Prompt.objects.select_for_update().filter(pk=assignment.prompt_id).first()
    locked = Assignment.objects.select_for_update().filter(pk=assignment.pk).first()
    if locked is None or prompt is None:
        raise AnnotationError("this task no longer exists")
    if locked.user_id != getattr(user, "pk", None):
        raise AnnotationError("this task is leased to another labeler")
    if kind is not None and locked.kind != kind:
        raise AnnotationError(f"this is a {locked.kind} task, not a {kind} task")
    locked.prompt = prompt
    locked.project = Project.objects.get(pk=locked.project_id)
    return locked


def _ensure_open(assignment: Assignment, now: datetime) -> None:
    """A submission needs a lease; a passed lease still counts if nobody has taken the slot since."""
    status = assignment.status
    if status == AssignmentStatus.SKIPPED:
        raise AnnotationError("you skipped this task; take the next one")
    if status == AssignmentStatus.RETURNED:
        raise AnnotationError("this task was rejected in review and went back to the queue")
    if status == AssignmentStatus.SUBMITTED:
        raise AnnotationError("this task was already submitted")
    expired = status == AssignmentStatus.EXPIRED or assignment.expires_at <= now
    if expired and not assignment.prompt.is_gold:
        others = slots_taken(assignment.prompt_id, assignment.kind, now)
        if others >= assignment.project.labels_per_item:
            raise AnnotationError("your lease on this task expired and another labeler took it; take the next one")


def _finish(assignment: Assignment, now: datetime) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(status=AssignmentStatus.SUBMITTED, finished_at=now)
    assignment.status, assignment.finished_at = AssignmentStatus.SUBMITTED, now


def _review_fields(project: Project) -> dict:
    """Sample for review at the project's rate; the rest is approved on submission."""
    sampled = random.random() < project.review_rate
    return {"needs_review": sampled, "review_state": ReviewState.PENDING if sampled else ReviewState.APPROVED}


def _time(ms) -> int:
    try:
        return max(0, min(int(ms or 0), MAX_TIME_SPENT_MS))
    except (TypeError, ValueError):
        return 0


def demonstration_submit(*, assignment: Assignment, user, content: str, time_spent_ms: int = 0,
                         now: datetime | None = None) -> Demonstration:
    """Record the labeler's answer; a repeated call for the same assignment returns the first one unchanged."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(assignment, user, TaskKind.DEMONSTRATION)
        existing = Demonstration.objects.filter(assignment=locked).first()
        if existing is not None:
            return existing
        content = (content or "").strip()
        if not content:
            raise AnnotationError("write an answer before submitting")
        _ensure_open(locked, now)
        demo = Demonstration.objects.create(
            prompt=locked.prompt, author=user, assignment=locked, content=content,
            time_spent_ms=_time(time_spent_ms), **_review_fields(locked.project),
        )
        _finish(locked, now)
    assignment.status, assignment.finished_at = locked.status, locked.finished_at
    return demo


def ranking_validate(order, flags, completion_ids: list[int]) -> tuple[list[list[int]], dict[str, list[str]]]:
    """Tiers covering exactly ``completion_ids`` once each (ties allowed), and known flags on them."""
    if not isinstance(order, list) or not all(isinstance(tier, list) for tier in order):
        raise AnnotationError("order must be a list of tiers, each a list of completion ids, best first")
    allowed = set(completion_ids)
    tiers, seen = [], set()
    for tier in order:
        ids = []
        for value in tier:
            if isinstance(value, bool) or not isinstance(value, int):
                raise AnnotationError(f"order: {value!r} is not a completion id")
            if value not in allowed:
                raise AnnotationError(f"completion {value} is not one of this prompt's answers")
            if value in seen:
                raise AnnotationError(f"completion {value} is placed twice; each answer goes in one tier")
            seen.add(value)
            ids.append(value)
        if ids:
            tiers.append(ids)
    missing = sorted(allowed - seen)
    if missing:
        raise AnnotationError(f"completions {', '.join(map(str, missing))} are not ranked; place every answer")
    if flags is None:
        flags = {}
    if not isinstance(flags, dict):
        raise AnnotationError("flags must map a completion id to a list of flags")
    clean: dict[str, list[str]] = {}
    for key, names in flags.items():
        if str(key) not in {str(c) for c in allowed}:
            raise AnnotationError(f"flags: completion {key} is not one of this prompt's answers")
        if not isinstance(names, list):
            raise AnnotationError(f"flags of completion {key} must be a list")
        for name in names:
            if name not in FLAGS:
                raise AnnotationError(f"flag {name!r} on completion {key} is not one of {', '.join(FLAGS)}")
        if names:
            clean[str(key)] = sorted(set(names), key=FLAGS.index)
    return tiers, clean


def ranking_submit(*, assignment: Assignment, user, order: list[list[int]], flags: dict[str, list[str]] | None = None,
                   comment: str = "", time_spent_ms: int = 0, now: datetime | None = None) -> Ranking:
    """Record a ranking of the prompt's shown completions; a repeated call returns the first one unchanged."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked(assignment, user, TaskKind.RANKING)
        existing = Ranking.objects.filter(assignment=locked).first()
        if existing is not None:
            return existing
        shown = list(completions_to_rank(locked.prompt).values_list("pk", flat=True))
        tiers, clean_flags = ranking_validate(order, flags, shown)
        _ensure_open(locked, now)
        ranking = Ranking.objects.create(
            prompt=locked.prompt, author=user, assignment=locked, order=tiers, flags=clean_flags,
            comment=(comment or "").strip()[:5000], time_spent_ms=_time(time_spent_ms),
            **_review_fields(locked.project),
        )
        _finish(locked, now)
    assignment.status, assignment.finished_at = locked.status, locked.finished_at
    return ranking


def task_skip(*, assignment: Assignment, user, reason: str, now: datetime | None = None) -> Assignment:
    """Give the slot back with a reason; the labeler is not offered this item again."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise AnnotationError("say why you skip this task")
    with transaction.atomic():
        locked = _locked(assignment, user, None)
        if locked.status == AssignmentStatus.SKIPPED:
            return locked
        if locked.status in (AssignmentStatus.SUBMITTED, AssignmentStatus.RETURNED):
            raise AnnotationError("this task was already submitted; it cannot be skipped")
        Assignment.objects.filter(pk=locked.pk).update(
            status=AssignmentStatus.SKIPPED, skip_reason=reason[:200], finished_at=now
        )
        locked.refresh_from_db()
    return locked


def prompt_flag(*, prompt: Prompt, user, reason: str) -> Prompt:
    """Count a labeler's report that the prompt is bad (harmful, personal data, spam); managers see it."""
    reason = (reason or "").strip()
    if not reason:
        raise AnnotationError("say what is wrong with this prompt")
    with transaction.atomic():
        locked = Prompt.objects.select_for_update().get(pk=prompt.pk)
        metadata = dict(locked.metadata or {})
        reports = list(metadata.get("flags", []))[-49:]
        reports.append({"user": getattr(user, "username", ""), "reason": reason[:500]})
        metadata["flags"] = reports
        Prompt.objects.filter(pk=locked.pk).update(flag_count=F("flag_count") + 1, metadata=metadata)
        locked.refresh_from_db()
    return locked


def prompt_write(*, project: Project, user, text: str) -> Prompt:
    """A labeler's own prompt (Open-Assistant style); it joins the queue like an imported one."""
    try:
        messages = to_messages({"text": text})
    except PromptFormatError as exc:
        raise AnnotationError("write a prompt first") from exc
    digest = normalized_hash(messages)
    try:
        with transaction.atomic():
            return Prompt.objects.create(
                project=project, messages=messages, normalized_hash=digest, source=PromptSource.LABELER,
                created_by=user,
            )
    except IntegrityError as exc:
        raise AnnotationError("this prompt is already in the project") from exc

"""The task queue: the assignment state machine, with every transition in this module.

::

    (free slot) --task_next--> LEASED --demonstration_submit / ranking_submit--> SUBMITTED
                                 |  \\--task_skip--> SKIPPED            SUBMITTED --review_reject--> RETURNED
                                 \\--lease passes--> EXPIRED --task_next (same labeler, slot free)--> LEASED

A prompt has ``project.labels_per_item`` slots per kind; the prompt row counts the taken ones and
says whether one is open (``annotation.slots``). SKIPPED, EXPIRED and RETURNED assignments give their
slot back. Every transition here moves the count under the prompt's row lock, taken before any
assignment lock, so the count stays what ``slots_recount`` would find.

Claiming is ``SELECT ... FOR UPDATE SKIP LOCKED`` of the first open prompt through a partial index,
then the lease upsert and the count in the same transaction. PostgreSQL re-checks the locked row's
columns when a concurrent claim changed it, so two labelers never share a slot, and the cost does not
grow with the items already done. The unique constraint (prompt, kind, user) keeps a labeler from
getting the same item twice. On SQLite writes are serialised anyway; ``annotation.serialised`` keeps
the claim and the submission to two statements under its write lock. Submitting is idempotent: the
label hangs off its assignment one-to-one.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from annotation import serialised
from annotation.errors import AnnotationError
from annotation.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    Project,
    Prompt,
    PromptSource,
    Ranking,
    ReviewState,
    TaskKind,
)
from annotation.prompt_text import PromptFormatError, normalized_hash, to_messages
from annotation.ranking_rules import flags_for, ranking_validate
from annotation.selectors import completions_to_rank
from annotation.slots import KINDS, OPEN, TAKEN, has_completions, slots_move
from config.db.prepared import Prepared

# An assignment in one of these has its label recorded: submitting again returns that label.
LABELLED = (AssignmentStatus.SUBMITTED, AssignmentStatus.RETURNED)
MAX_TIME_SPENT_MS = 24 * 3600 * 1000
_CLAIM_ATTEMPTS = 5


def _candidates(project: Project, user, kind: str, *, gold: bool) -> QuerySet[Prompt]:
    """Prompts ``user`` may be handed now, first come first served; gold items ignore the slot limit."""
    mine = Assignment.objects.filter(prompt=OuterRef("pk"), kind=kind, user=user).exclude(
        status=AssignmentStatus.EXPIRED
    )
    if gold:
        prompts = Prompt.objects.filter(project=project, is_gold=True)
        if kind == TaskKind.RANKING:
            prompts = prompts.filter(has_completions(project))
    else:
        prompts = Prompt.objects.filter(project=project, is_gold=False, **{OPEN[kind]: True})
    return prompts.filter(~Exists(mine)).order_by("id")


def leases_expire(*, project: Project, kind: str, now: datetime | None = None) -> int:
    """Mark leases that have passed EXPIRED; their slots go back to the pool. Returns how many.

    Prompts and assignments another transaction holds are skipped (the next sweep gets them), so a
    sweep never waits and never deadlocks with a claim or a submission.
    """
    now = now or timezone.now()
    passed = Assignment.objects.filter(project=project, kind=kind, status=AssignmentStatus.LEASED, expires_at__lte=now)
    with transaction.atomic():
        prompt_ids = list(
            Prompt.objects.filter(pk__in=passed.values("prompt_id")).select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:1000]
        )
        expired = list(
            passed.filter(prompt_id__in=prompt_ids).select_for_update(skip_locked=True).values_list("pk", "prompt_id")
        )
        if not expired:
            return 0
        Assignment.objects.filter(pk__in=[pk for pk, _ in expired]).update(status=AssignmentStatus.EXPIRED)
        prompts_by_count = defaultdict(list)
        for prompt_id, n in Counter(prompt_id for _, prompt_id in expired).items():
            prompts_by_count[n].append(prompt_id)
        for n, ids in prompts_by_count.items():
            slots_move(ids, kind, -n, project)
    return len(expired)


def _gold_due(project: Project, user, kind: str) -> bool:
    """Serve a gold item now if that keeps this labeler's share of gold items at or under ``gold_rate``."""
    if project.gold_rate <= 0:
        return False
    served = Assignment.objects.filter(project=project, user=user, kind=kind).exclude(status=AssignmentStatus.EXPIRED)
    total = served.count()
    gold = served.filter(prompt__is_gold=True).count()
    return gold + 1 <= project.gold_rate * (total + 1)


def _leases(kind: str, *, project_id: int, user_id: int, now: datetime) -> QuerySet[Assignment]:
    return (
        Assignment.objects.filter(project_id=project_id, kind=kind, status=AssignmentStatus.LEASED)
        .filter(Q(user_id=user_id) | Q(expires_at__lte=now))
        .select_related("prompt")
        .order_by("leased_at", "id")
    )


_LEASES = Prepared(_leases, project_id=int, user_id=int, now=datetime)  # every next-task call reads it


def task_next(*, project: Project, user, kind: str, now: datetime | None = None) -> Assignment | None:
    """The labeler's live lease of this kind, else a newly claimed slot, else None (nothing left)."""
    if kind not in KINDS:
        raise AnnotationError(f"unknown task kind {kind!r}; choose demonstration or ranking")
    now = now or timezone.now()
    # One look at the project's leases: this labeler's own, and any that have passed and want a sweep.
    leases = _LEASES.objects(kind, project_id=project.pk, user_id=user.pk, now=now)
    for lease in leases:
        lease.project = project
    if any(lease.expires_at <= now for lease in leases):
        leases_expire(project=project, kind=kind, now=now)
    current = next((lease for lease in leases if lease.user_id == user.pk and lease.expires_at > now), None)
    if current is not None:
        return current
    pools = (True, False) if _gold_due(project, user, kind) else (False,)
    for gold in pools:
        if not connection.features.has_select_for_update_skip_locked:
            # SQLite: one writer at a time; annotation.serialised keeps its write lock short.
            assignment = serialised.claim(project=project, user=user, kind=kind, gold=gold, candidates=_candidates,
                                          now=now, index="prompt_gold" if gold else f"prompt_{kind}_open",
                                          lease=_lease)
            if assignment is not None:
                return assignment
            continue
        candidates = _candidates(project, user, kind, gold=gold)
        for _ in range(_CLAIM_ATTEMPTS):
            with transaction.atomic():
                prompt = candidates.select_for_update(skip_locked=True).first()
                if prompt is None:
                    break
                assignment = _lease(project, prompt, user, kind, now)
                if assignment is not None:
                    slots_move([prompt.pk], kind, 1, project)
                    return assignment
    return None


_LEASE_SQL = """
INSERT INTO {table} (project_id, prompt_id, kind, user_id, status, leased_at, expires_at, finished_at, skip_reason)
VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, '')
ON CONFLICT (prompt_id, kind, user_id) DO UPDATE
SET status = excluded.status, leased_at = excluded.leased_at, expires_at = excluded.expires_at, finished_at = NULL
WHERE {table}.status = %s
RETURNING id
"""


def _lease(project: Project, prompt: Prompt, user, kind: str, now: datetime) -> Assignment | None:
    """Lease ``prompt`` to ``user`` in one statement: a new row, or the labeler's own EXPIRED one again.
    None when the labeler already holds a live row for it (a second tab got there first)."""
    expires = now + timedelta(seconds=project.lease_seconds)
    moment = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            _LEASE_SQL.format(table=connection.ops.quote_name(Assignment._meta.db_table)),
            [project.pk, prompt.pk, kind, user.pk, AssignmentStatus.LEASED, moment(now), moment(expires),
             AssignmentStatus.EXPIRED],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Assignment(pk=row[0], project=project, prompt=prompt, kind=kind, user=user,
                      status=AssignmentStatus.LEASED, leased_at=now, expires_at=expires)


def _locked(assignment: Assignment, user, kind: str | None) -> Assignment:
    """Lock the prompt then the assignment (the order every transition uses) and check whose task it is."""
    prompt = Prompt.objects.select_for_update().filter(pk=assignment.prompt_id).first()
    locked = (
        Assignment.objects.select_for_update(of=("self",)).select_related("project").filter(pk=assignment.pk).first()
    )
    if locked is None or prompt is None:
        raise AnnotationError("this task no longer exists")
    if locked.user_id != getattr(user, "pk", None):
        raise AnnotationError("this task is leased to another labeler")
    if kind is not None and locked.kind != kind:
        raise AnnotationError(f"this is a {locked.kind} task, not a {kind} task")
    locked.prompt = prompt
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
    if status == AssignmentStatus.EXPIRED:
        # The sweep gave the slot back; take it again if it is still free.
        prompt, project = assignment.prompt, assignment.project
        if not prompt.is_gold and getattr(prompt, TAKEN[assignment.kind]) >= project.labels_per_item:
            raise AnnotationError("your lease on this task expired and another labeler took it; take the next one")
        slots_move([prompt.pk], assignment.kind, 1, project)


def _finish(assignment: Assignment, now: datetime) -> None:
    Assignment.objects.filter(pk=assignment.pk).update(status=AssignmentStatus.SUBMITTED, finished_at=now)
    assignment.status, assignment.finished_at = AssignmentStatus.SUBMITTED, now


def _submitted(assignment: Assignment, model):
    """The label already recorded for this assignment (a repeated submission), else None."""
    if assignment.status in LABELLED:
        return model.objects.filter(assignment=assignment).first()
    return None


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

    def build(locked: Assignment) -> Demonstration:
        answer = (content or "").strip()
        if not answer:
            raise AnnotationError("write an answer before submitting")
        return Demonstration(prompt=locked.prompt, author=user, assignment=locked, content=answer,
                             time_spent_ms=_time(time_spent_ms), **_review_fields(locked.project))

    if not connection.features.has_select_for_update:
        demo = serialised.submit(assignment=assignment, user=user, kind=TaskKind.DEMONSTRATION, build=build, now=now)
        if demo is not None:
            return demo
    with transaction.atomic():
        locked = _locked(assignment, user, TaskKind.DEMONSTRATION)
        existing = _submitted(locked, Demonstration)
        if existing is not None:
            return existing
        demo = build(locked)
        _ensure_open(locked, now)
        demo.save(force_insert=True)
        _finish(locked, now)
    assignment.status, assignment.finished_at = locked.status, locked.finished_at
    return demo


def ranking_submit(*, assignment: Assignment, user, order: list[list[int]], flags: dict[str, list[str]] | None = None,
                   comment: str = "", time_spent_ms: int = 0, now: datetime | None = None) -> Ranking:
    """Record a ranking of the prompt's shown completions; a repeated call returns the first one unchanged."""
    now = now or timezone.now()

    def build(locked: Assignment) -> Ranking:
        shown = list(completions_to_rank(locked.prompt).values_list("pk", flat=True))
        tiers, clean_flags = ranking_validate(order, flags, shown, flags_for(locked.prompt))
        return Ranking(prompt=locked.prompt, author=user, assignment=locked, order=tiers, flags=clean_flags,
                       comment=(comment or "").strip()[:5000], time_spent_ms=_time(time_spent_ms),
                       **_review_fields(locked.project))

    if not connection.features.has_select_for_update:
        ranking = serialised.submit(assignment=assignment, user=user, kind=TaskKind.RANKING, build=build, now=now)
        if ranking is not None:
            return ranking
    with transaction.atomic():
        locked = _locked(assignment, user, TaskKind.RANKING)
        existing = _submitted(locked, Ranking)
        if existing is not None:
            return existing
        ranking = build(locked)
        _ensure_open(locked, now)
        ranking.save(force_insert=True)
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
        if locked.status in LABELLED:
            raise AnnotationError("this task was already submitted; it cannot be skipped")
        if locked.status == AssignmentStatus.LEASED:
            slots_move([locked.prompt_id], locked.kind, -1, locked.project)
        Assignment.objects.filter(pk=locked.pk).update(
            status=AssignmentStatus.SKIPPED, skip_reason=reason[:200], finished_at=now
        )
        locked.status, locked.skip_reason, locked.finished_at = AssignmentStatus.SKIPPED, reason[:200], now
    return locked


def assignment_return(*, assignment_id: int, now: datetime | None = None) -> None:
    """A label rejected in review: its assignment becomes RETURNED and the slot goes back to the pool.
    Runs in the caller's transaction (review_reject's)."""
    prompt_id = Assignment.objects.filter(pk=assignment_id).values_list("prompt_id", flat=True).first()
    if prompt_id is None:
        return
    Prompt.objects.select_for_update().filter(pk=prompt_id).first()  # lock order: the prompt, then the assignment
    locked = Assignment.objects.select_for_update(of=("self",)).select_related("project").get(pk=assignment_id)
    if locked.status != AssignmentStatus.SUBMITTED:
        return
    Assignment.objects.filter(pk=locked.pk).update(status=AssignmentStatus.RETURNED, finished_at=now or timezone.now())
    slots_move([prompt_id], locked.kind, -1, locked.project)


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

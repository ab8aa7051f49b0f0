"""Labeling pages: project overview, write a demonstration, rank completions.

A task page is one full page around a ``#task`` fragment. Submitting, skipping or flagging posts
from that fragment with htmx and gets the next task's fragment back, so a labeler goes from one
item to the next with no page load. Without JavaScript the same posts redirect to the page.
"""

from __future__ import annotations

import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from annotation.errors import AnnotationError
from annotation.forms import (
    FLAG_REASONS,
    FLAGS,
    SKIP_REASONS,
    DemonstrationForm,
    FlagForm,
    PromptWriteForm,
    RankingForm,
    SkipForm,
)
from annotation.markdown import render_markdown
from annotation.models import (
    Assignment,
    Completion,
    Demonstration,
    Prompt,
    Ranking,
    ReviewState,
    Role,
    TaskKind,
)
from annotation.queue import (
    demonstration_submit,
    prompt_flag,
    prompt_write,
    ranking_submit,
    task_next,
    task_skip,
)
from annotation.ranking_rules import flags_for
from annotation.selectors import EVERYONE, completions_to_rank, project_for_user

TEMPLATES = {
    TaskKind.DEMONSTRATION: ("annotation/write.html", "annotation/_write_task.html", "annotation:write"),
    TaskKind.RANKING: ("annotation/rank.html", "annotation/_rank_task.html", "annotation:rank"),
}


@login_required
def overview(request, slug: str):
    project = project_for_user(request.user, slug, EVERYONE)
    today = timezone.localdate()
    prompts = Prompt.objects.filter(project=project)
    demos = Demonstration.objects.filter(prompt__project=project)
    rankings = Ranking.objects.filter(prompt__project=project)
    k = project.completions_per_prompt
    counts = {
        "prompts": prompts.count(),
        "rankable": prompts.annotate(n=Count("completions")).filter(n__gte=k).count(),
        "demonstrations": demos.count(),
        "demos_approved": demos.filter(review_state=ReviewState.APPROVED).count(),
        "rankings": rankings.count(),
        "pending_review": demos.filter(needs_review=True, review_state=ReviewState.PENDING).count()
        + rankings.filter(needs_review=True, review_state=ReviewState.PENDING).count(),
        "flagged": prompts.filter(flag_count__gt=0).count(),
        "mine_today": demos.filter(author=request.user, created_at__date=today).count()
        + rankings.filter(author=request.user, created_at__date=today).count(),
    }
    context = {
        "project": project, "role": project.requester_role, "counts": counts,
        "is_manager": project.requester_role == Role.MANAGER,
        "is_reviewer": project.requester_role in (Role.MANAGER, Role.REVIEWER),
        "members": project.memberships.select_related("user").order_by("role", "user__username"),
        "flagged": prompts.filter(flag_count__gt=0).order_by("-flag_count", "id")[:10],
    }
    return render(request, "annotation/overview.html", context)


@login_required
def write_page(request, slug: str):
    return _task_page(request, slug, TaskKind.DEMONSTRATION)


@login_required
def rank_page(request, slug: str):
    return _task_page(request, slug, TaskKind.RANKING)


def _task_page(request, slug: str, kind: str):
    project = project_for_user(request.user, slug, EVERYONE)
    try:
        assignment = task_next(project=project, user=request.user, kind=kind)
    except AnnotationError as exc:
        return _render_task(request, project, kind, None, error=str(exc))
    return _render_task(request, project, kind, assignment)


def _render_task(request, project, kind: str, assignment, *, error: str = "", notice: str = "", form=None,
                 fragment: bool | None = None, status: int = 200, lost_text: str = ""):
    full, partial, _ = TEMPLATES[kind]
    context = {
        "project": project, "kind": kind, "assignment": assignment, "error": error, "notice": notice,
        "lost_text": lost_text,
        "form": form, "skip_reasons": [r for r in SKIP_REASONS if kind == TaskKind.RANKING or r[0] != "broken"], "flags": FLAGS, "flag_reasons": FLAG_REASONS,
        "done_today": _done_today(project, request.user, kind),
        "prompt_form": PromptWriteForm(),
    }
    if assignment is not None:
        context["prompt"] = assignment.prompt
        context["flags"] = flags_for(assignment.prompt)
        if kind == TaskKind.RANKING:
            context["completions"] = shown_completions(assignment)
    use_fragment = bool(request.htmx) if fragment is None else fragment
    return render(request, partial if use_fragment else full, context, status=status)


def _done_today(project, user, kind: str) -> int:
    model = Demonstration if kind == TaskKind.DEMONSTRATION else Ranking
    return model.objects.filter(prompt__project=project, author=user, created_at__date=timezone.localdate()).count()


def shown_completions(assignment) -> list[Completion]:
    """The completions a ranking task shows, in an order shuffled per assignment (no position bias)."""

    def key(c: Completion) -> str:
        return hashlib.sha256(f"{assignment.pk}:{c.pk}".encode()).hexdigest()

    return sorted(completions_to_rank(assignment.prompt), key=key)


def _own_assignment(request, project, assignment_id: int, kind: str | None = None) -> Assignment:
    filters = {"pk": assignment_id, "project": project, "user": request.user}
    if kind:
        filters["kind"] = kind
    return get_object_or_404(Assignment.objects.select_related("prompt", "project"), **filters)


def _after_post(request, project, kind: str, *, notice: str):
    """The next task's fragment for htmx; a redirect to the task page for a plain form post."""
    if not request.htmx:
        return redirect(TEMPLATES[kind][2], slug=project.slug)
    return _task_page_fragment(request, project, kind, notice=notice)


def _task_page_fragment(request, project, kind: str, *, notice: str = "", error: str = "", lost_text: str = ""):
    try:
        assignment = task_next(project=project, user=request.user, kind=kind)
    except AnnotationError as exc:
        return _render_task(request, project, kind, None, error=str(exc), fragment=True)
    return _render_task(request, project, kind, assignment, notice=notice, error=error, lost_text=lost_text,
                        fragment=True)


def _task_gone(request, project, assignment, message: str, lost_text: str = ""):
    """The task can no longer be submitted (skipped, taken after its lease passed): say so, go on to the next."""
    if not request.htmx:
        messages.error(request, message)
        return redirect(TEMPLATES[assignment.kind][2], slug=project.slug)
    return _task_page_fragment(request, project, assignment.kind, error=message, lost_text=lost_text)


def _still_open(assignment) -> bool:
    assignment.refresh_from_db(fields=["status"])
    return assignment.status == Assignment.Status.LEASED


@login_required
@require_POST
def demonstration_post(request, slug: str, assignment_id: int):
    project = project_for_user(request.user, slug, EVERYONE)
    assignment = _own_assignment(request, project, assignment_id, TaskKind.DEMONSTRATION)
    form = DemonstrationForm(request.POST)
    if form.is_valid():
        try:
            demonstration_submit(
                assignment=assignment, user=request.user, content=form.cleaned_data["content"],
                time_spent_ms=form.cleaned_data["time_spent_ms"],
            )
        except AnnotationError as exc:
            if not _still_open(assignment):
                return _task_gone(request, project, assignment, str(exc), lost_text=form.cleaned_data["content"])
            form.add_error(None, str(exc))
        else:
            return _after_post(request, project, TaskKind.DEMONSTRATION, notice="Answer saved.")
    return _render_task(request, project, TaskKind.DEMONSTRATION, assignment, form=form,
                        error=" ".join(e for errs in form.errors.values() for e in errs), fragment=True,
                        status=200 if request.htmx else 400)


@login_required
@require_POST
def ranking_post(request, slug: str, assignment_id: int):
    project = project_for_user(request.user, slug, EVERYONE)
    assignment = _own_assignment(request, project, assignment_id, TaskKind.RANKING)
    form = RankingForm(request.POST, completion_ids=[c.pk for c in shown_completions(assignment)])
    if form.is_valid():
        try:
            ranking_submit(
                assignment=assignment, user=request.user, order=form.cleaned_data["order"], flags=form.flags(),
                comment=form.cleaned_data["comment"], time_spent_ms=form.cleaned_data["time_spent_ms"],
            )
        except AnnotationError as exc:
            if not _still_open(assignment):
                return _task_gone(request, project, assignment, str(exc))
            form.add_error(None, str(exc))
        else:
            return _after_post(request, project, TaskKind.RANKING, notice="Ranking saved.")
    return _render_task(request, project, TaskKind.RANKING, assignment, form=form,
                        error=" ".join(e for errs in form.errors.values() for e in errs), fragment=True,
                        status=200 if request.htmx else 400)


@login_required
@require_POST
def skip_post(request, slug: str, assignment_id: int):
    project = project_for_user(request.user, slug, EVERYONE)
    assignment = _own_assignment(request, project, assignment_id)
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _render_task(request, project, assignment.kind, assignment, error="Choose a reason to skip.",
                            fragment=True, status=200 if request.htmx else 400)
    try:
        task_skip(assignment=assignment, user=request.user, reason=form.reason_text())
    except AnnotationError as exc:
        return _render_task(request, project, assignment.kind, assignment, error=str(exc), fragment=True)
    return _after_post(request, project, assignment.kind, notice="Skipped.")


@login_required
@require_POST
def flag_post(request, slug: str, assignment_id: int):
    """Flag the prompt of a task as bad; the task is skipped too, as nobody should label it as is."""
    project = project_for_user(request.user, slug, EVERYONE)
    assignment = _own_assignment(request, project, assignment_id)
    form = FlagForm(request.POST)
    reason = (form.cleaned_data.get("reason") if form.is_valid() else "") or "flagged"
    try:
        prompt_flag(prompt=assignment.prompt, user=request.user, reason=reason)
        task_skip(assignment=assignment, user=request.user, reason=f"Flagged: {reason}")
    except AnnotationError as exc:
        return _render_task(request, project, assignment.kind, assignment, error=str(exc), fragment=True)
    return _after_post(request, project, assignment.kind, notice="Prompt flagged for a manager; here is the next one.")


@login_required
@require_POST
def prompt_new(request, slug: str):
    """A labeler writes a new prompt (Open-Assistant style); it joins the project's queue."""
    project = project_for_user(request.user, slug, EVERYONE)
    form = PromptWriteForm(request.POST)
    context = {"project": project, "prompt_form": form}
    if form.is_valid():
        try:
            prompt_write(project=project, user=request.user, text=form.cleaned_data["text"])
        except AnnotationError as exc:
            form.add_error("text", str(exc))
        else:
            context.update(prompt_form=PromptWriteForm(), prompt_notice="Thanks! Your prompt joined the queue.")
    if not request.htmx:
        return redirect("annotation:write", slug=project.slug)
    return render(request, "annotation/_prompt_form.html", context)


@login_required
@require_POST
def markdown_preview(request, slug: str):
    """How an answer will read: the same Markdown rendering and sanitising as every page uses."""
    project_for_user(request.user, slug, EVERYONE)
    text = request.POST.get("content", "")[:50_000]
    html = render_markdown(text) if text.strip() else format_html('<p class="muted">{}</p>', "Nothing to preview yet.")
    return HttpResponse(format_html('<div class="card-head"><strong>Preview</strong></div>{}', html))


def pairs_preview(order: list[list[int]], names: dict[int, str]) -> list[str]:
    """How a ranking reads, as the labeler saw it on the ranking page: each tier's ties (``"B = C"``, no
    comparison) then its comparisons with the tiers below (``"A > B"``); used by the review page."""
    def name(cid: int) -> str:
        return names.get(cid, str(cid))

    out = []
    for i, tier in enumerate(order):
        for a, better in enumerate(tier):
            out += [f"{name(better)} = {name(mate)}" for mate in tier[a + 1:]]
            out += [f"{name(better)} > {name(worse)}" for below in order[i + 1:] for worse in below]
    return out


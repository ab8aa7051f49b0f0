"""Review pages: reviewers and managers approve, edit or reject the sampled labels, one at a time.

Like the task pages, each action posts from the ``#review-item`` fragment with htmx and gets the
next pending item back; a plain form post redirects to the review page.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.errors import AnnotationError
from annotation.forms import ReviewEditForm, ReviewRejectForm
from annotation.models import Completion, Demonstration, Ranking, TaskKind
from annotation.review import review_approve, review_edit, review_queue, review_reject
from annotation.selectors import REVIEWERS, project_for_user
from annotation.templatetags.annotation_tags import letter
from annotation.views import pairs_preview, shown_completions

KINDS = {"demonstration": (TaskKind.DEMONSTRATION, Demonstration), "ranking": (TaskKind.RANKING, Ranking)}


def _kind(value: str | None) -> str:
    return value if value in KINDS else "demonstration"


@login_required
def review_page(request, slug: str):
    project = project_for_user(request.user, slug, REVIEWERS)
    kind = _kind(request.GET.get("kind"))
    return _render(request, project, kind, fragment=bool(request.htmx), switch="kind" not in request.GET)


def _render(request, project, kind: str, *, notice: str = "", error: str = "", item=None, fragment: bool,
            status: int = 200, switch: bool = True):
    """One pending item of ``kind``; when that queue is empty, the other queue's (unless a tab was chosen)."""
    queues = {name: review_queue(project=project, kind=task_kind) for name, (task_kind, _) in KINDS.items()}
    if item is None:
        item = queues[kind].select_related("prompt", "author", "assignment").first()
        other = "ranking" if kind == "demonstration" else "demonstration"
        if item is None and switch:
            item = queues[other].select_related("prompt", "author", "assignment").first()
            kind = other if item is not None else kind
    context = {
        "project": project, "kind": kind, "item": item, "notice": notice, "error": error,
        "pending": {name: queue.count() for name, queue in queues.items()},
    }
    if item is not None and kind == "ranking":
        context.update(_ranking_context(item))
    template = "annotation/_review_item.html" if fragment else "annotation/review.html"
    return render(request, template, context, status=status)


def _ranking_context(ranking: Ranking) -> dict:
    """Completions of a ranking grouped in its tiers, each with the letter its labeler saw and its flags."""
    ids = [cid for tier in ranking.order for cid in tier]
    by_id = {c.pk: c for c in Completion.objects.filter(prompt_id=ranking.prompt_id, pk__in=ids)}
    shown = shown_completions(ranking.assignment) if ranking.assignment_id else []
    names = {c.pk: letter(i) for i, c in enumerate(shown)}
    for cid in ids:  # an assignment-less (imported) ranking: letters in the order of its tiers
        names.setdefault(cid, letter(len(names)))
    tiers = [
        {"place": t + 1, "rows": [
            {"name": names[cid], "completion": by_id.get(cid), "flags": ranking.flags.get(str(cid), [])}
            for cid in tier
        ]}
        for t, tier in enumerate(ranking.order)
    ]
    pairs = pairs_preview(ranking.order, names)
    return {"tiers": tiers, "pairs": pairs, "comparisons": sum(" > " in p for p in pairs)}


def _item(project, kind: str, item_id: int):
    if kind not in KINDS:
        raise Http404("No such review kind")
    model = KINDS[kind][1]
    return get_object_or_404(model.objects.select_related("prompt", "author"), pk=item_id, prompt__project=project)


def _done(request, project, kind: str, notice: str):
    if not request.htmx:
        return redirect(f"/projects/{project.slug}/review/?kind={kind}")
    return _render(request, project, kind, notice=notice, fragment=True)


@login_required
@require_POST
def approve(request, slug: str, kind: str, item_id: int):
    project = project_for_user(request.user, slug, REVIEWERS)
    item = _item(project, kind, item_id)
    try:
        review_approve(item=item, reviewer=request.user, comment=request.POST.get("comment", "")[:2000])
    except AnnotationError as exc:
        return _render(request, project, kind, item=item, error=str(exc), fragment=True)
    return _done(request, project, kind, "Approved.")


@login_required
@require_POST
def edit(request, slug: str, kind: str, item_id: int):
    project = project_for_user(request.user, slug, REVIEWERS)
    item = _item(project, kind, item_id)
    form = ReviewEditForm(request.POST)
    if not form.is_valid():
        return _render(request, project, kind, item=item, error="The edited answer cannot be empty.", fragment=True)
    try:
        review_edit(item=item, reviewer=request.user, content=form.cleaned_data["content"])
    except AnnotationError as exc:
        return _render(request, project, kind, item=item, error=str(exc), fragment=True)
    return _done(request, project, kind, "Edited and approved; the original is kept.")


@login_required
@require_POST
def reject(request, slug: str, kind: str, item_id: int):
    project = project_for_user(request.user, slug, REVIEWERS)
    item = _item(project, kind, item_id)
    form = ReviewRejectForm(request.POST)
    if not form.is_valid():
        return _render(request, project, kind, item=item, error="Say why it is rejected.", fragment=True)
    try:
        review_reject(item=item, reviewer=request.user, reason=form.cleaned_data["reason"])
    except AnnotationError as exc:
        return _render(request, project, kind, item=item, error=str(exc), fragment=True)
    return _done(request, project, kind, "Rejected; the item went back to the queue.")

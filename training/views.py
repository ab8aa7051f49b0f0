"""Manager pages: runs (start, watch, cancel), model versions with their lineage, snapshots and exports.

Each view parses input, passes ``project_for_user(user, slug, MANAGERS)`` (a 404 for anyone else),
calls one service or selector and renders. Charts live on the dashboard; these pages show tables
and progress bars, and the run page refreshes its live part with htmx while the run is active.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from annotation.selectors import MANAGERS, project_for_user
from training import exports, selectors
from training.autostart import training_settings_of, training_settings_update
from training.errors import TrainingError
from training.forms import AutostartForm, RunStartForm, SnapshotFreezeForm
from training.models import FINISHED_STATUSES, RunKind, RunStatus
from training.runs import run_cancel
from training.services import STARTABLE_KINDS, run_start, sampling_defaults, snapshot_freeze
from training.snapshots import snapshot_file, snapshot_files
from training.stage_configs import RUNNER_KEYS, config_defaults

METRIC_ROWS_SHOWN = 200


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _with_eta(runs):
    now = timezone.now()
    for run in runs:
        run.eta_text = duration_text(selectors.run_eta_seconds(run))
        run.percent = round(run.progress * 100)
        run.phase_now = _phase_shown(run, now)
    return runs


def _phase_shown(run, now) -> dict | None:
    """What a running run does before its steps (``Reporter.phase``), with its own share and duration."""
    phase = run.phase or {}
    if run.status != RunStatus.RUNNING or not phase.get("name"):
        return None
    since = parse_datetime(phase.get("since") or "")
    done, total = phase.get("done", 0), phase.get("total", 0)
    return {
        "name": phase["name"], "done": done, "total": total,
        "percent": round(100 * min(done, total) / total) if total else None,
        "for": duration_text((now - since).total_seconds()) if since else "",
    }


def _defaults_by_kind(project) -> list[dict]:
    shown = []
    for kind in STARTABLE_KINDS:
        defaults = config_defaults(kind)
        if kind == RunKind.SAMPLING and defaults:
            defaults.update({k: v for k, v in sampling_defaults(project).items() if k in defaults})
        shown.append({
            "kind": kind,
            "label": RunKind(kind).label,
            "installed": bool(defaults),
            "json": json.dumps(defaults, indent=2),
            "runner_keys": RUNNER_KEYS.get(kind, {}),
        })
    return shown


@login_required
def runs_page(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    form = RunStartForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = run_start(
                project=project, kind=data["kind"], created_by=request.user, snapshot=data["snapshot"],
                parent_version=data["parent_version"], reward_version=data["reward_version"], config=data["config"],
            )
        except TrainingError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{run.get_kind_display()} run #{run.pk} queued.")
            return redirect("training:run", slug=project.slug, run_id=run.pk)
    runs = _with_eta(list(selectors.runs_of(project)[:100]))
    current = training_settings_of(project)
    context = {
        "project": project, "runs": runs, "form": form, "defaults": _defaults_by_kind(project),
        "any_active": any(r.status not in FINISHED_STATUSES for r in runs),
        "autostart": current,
        "autostart_form": AutostartForm(project=project, initial={
            "autostart_reward": current.autostart_reward, "autostart_every": current.autostart_every,
            "reward_parent": current.reward_parent_id, "reward_config": json.dumps(current.reward_config or {}),
        }),
    }
    template = "training/_runs_table.html" if request.htmx and request.method == "GET" else "training/runs.html"
    return render(request, template, context, status=400 if form.errors else 200)


@login_required
@require_POST
def autostart_view(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    form = AutostartForm(request.POST, project=project)
    if form.is_valid():
        try:
            training_settings_update(project=project, **form.cleaned_data)
        except TrainingError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, "Auto-start settings saved.")
    else:
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    return redirect(reverse("training:runs", args=[project.slug]) + "#autostart")


def _run_context(project, run) -> dict:
    _with_eta([run])
    points = run.metrics or []
    return {
        "project": project,
        "run": run,
        "finished": run.status in FINISHED_STATUSES,
        "columns": selectors.metric_columns(run),
        "points": list(reversed(points[-METRIC_ROWS_SHOWN:])),
        "points_total": len(points),
        "version": getattr(run, "model_version", None),
    }


@login_required
@require_GET
def run_page(request, slug: str, run_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    run = selectors.run_of(project, run_id)
    template = "training/_run_live.html" if request.htmx else "training/run.html"
    return render(request, template, _run_context(project, run))


@login_required
@require_POST
def run_cancel_view(request, slug: str, run_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    run = selectors.run_of(project, run_id)
    try:
        run = run_cancel(run=run)
    except TrainingError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Run #{run.pk} {'cancelled' if run.is_finished else 'will stop at its next step'}.")
    return redirect("training:run", slug=project.slug, run_id=run.pk)


@login_required
@require_GET
def models_page(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    return render(request, "training/models.html", {"project": project, "versions": selectors.versions_of(project)})


@login_required
@require_GET
def model_page(request, slug: str, name: str):
    project = project_for_user(request.user, slug, MANAGERS)
    version = selectors.version_of(project, name)
    context = {
        "project": project,
        "version": version,
        "lineage": selectors.lineage_of(version),
        "children": selectors.versions_of(project).filter(parent=version),
        "config_json": json.dumps(version.config, indent=2, sort_keys=True),
    }
    return render(request, "training/model.html", context)


@login_required
def snapshots_page(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    form = SnapshotFreezeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            snapshot = snapshot_freeze(project=project, kind=form.cleaned_data["kind"], created_by=request.user,
                                       options=form.cleaned_data["options"])
        except TrainingError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Snapshot #{snapshot.pk} holds {snapshot.row_count} rows.")
            return redirect("training:snapshots", slug=project.slug)
    snapshots = list(selectors.snapshots_of(project)[:200])
    for snapshot in snapshots:
        snapshot.files = snapshot_files(snapshot)
    context = {"project": project, "snapshots": snapshots, "form": form, "export_formats": exports.FORMATS}
    return render(request, "training/snapshots.html", context, status=400 if form.errors else 200)


@login_required
@require_GET
def snapshot_download(request, slug: str, snapshot_id: int, filename: str):
    project = project_for_user(request.user, slug, MANAGERS)
    snapshot = selectors.snapshot_of(project, snapshot_id)
    try:
        path = snapshot_file(snapshot, filename)
    except TrainingError as exc:
        raise Http404(str(exc)) from exc
    return FileResponse(open(path, "rb"), as_attachment=True,
                        filename=f"{project.slug}-snapshot-{snapshot.pk}-{filename}",
                        content_type="application/x-ndjson")


@login_required
@require_GET
def export_download(request, slug: str, fmt: str, file_format: str):
    project = project_for_user(request.user, slug, MANAGERS)
    try:
        return exports.export_response(project, fmt, file_format=file_format)
    except TrainingError as exc:
        raise Http404(str(exc)) from exc

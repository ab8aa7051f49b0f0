"""The training dashboard page: live curves of a run, versions along a lineage, chat outcomes per version.

Managers only (``project_for_user(..., MANAGERS)``: another project's dashboard is a 404). While the
shown run is running, its curves refresh every 5 s through htmx (``?partial=curves``).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.selectors import MANAGERS, project_for_user
from config.input import parse_id
from training.dashboard import training_dashboard as dashboard_data


def _int_or_none(value: str | None) -> int | None:
    return parse_id(value)


@login_required
@require_GET
def training_dashboard(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    context = {"project": project, "tab": "training",
               **dashboard_data(project, run_id=_int_or_none(request.GET.get("run")),
                                version_name=request.GET.get("version") or None)}
    if request.GET.get("partial") == "curves":
        return render(request, "training/_dashboard_curves.html", context)
    return render(request, "training/dashboard.html", context)

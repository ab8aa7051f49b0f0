"""The manager's dashboards: progress (items per state, pace, labelers) and label quality.

Thin views: parse the filter form, pass ``project_for_user(user, slug, MANAGERS)`` (another project's
dashboard is a 404), call one reader, render. Charts are Chart.js from our static files, each with a
table of the same numbers under it, so the page reads the same without JavaScript.
"""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.dashboard import Filters, project_dashboard
from annotation.models import Membership
from annotation.quality.report import quality_report
from annotation.selectors import MANAGERS, project_for_user

MAX_WINDOW_DAYS = 366


class DashboardFilterForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="From")
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="To")
    labeler = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Labeler")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        members = Membership.objects.filter(project=project).select_related("user").order_by("user__username")
        self.fields["labeler"].choices = [("", "Everyone"), *((m.user_id, m.user.username) for m in members)]

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return data

    def filters(self) -> Filters:
        """The window asked for, defaulting to the last 30 days and capped at a year."""
        data = self.cleaned_data if self.is_valid() else {}
        default = Filters.default()
        end = data.get("end") or (data["start"] + dt.timedelta(days=29) if data.get("start") else default.end)
        start = data.get("start") or end - (default.end - default.start)
        start = max(start, end - dt.timedelta(days=MAX_WINDOW_DAYS - 1))
        return Filters(start=start, end=end, labeler_id=data.get("labeler"))


@login_required
@require_GET
def dashboard(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    form = DashboardFilterForm(request.GET or None, project=project)
    filters = form.filters()
    context = {"project": project, "form": form, "filters": filters, "tab": "progress",
               **project_dashboard(project, filters)}
    return render(request, "annotation/dashboard.html", context, status=400 if form.errors else 200)


@login_required
@require_GET
def quality(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    return render(request, "annotation/dashboard_quality.html",
                  {"project": project, "tab": "quality", "report": quality_report(project)})

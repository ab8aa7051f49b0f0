"""Manager pages: new project, settings, members (the prompt import is in ``views_import``)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from annotation.errors import AnnotationError
from annotation.forms import MemberForm, ProjectNewForm, ProjectSettingsForm
from annotation.selectors import MANAGERS, project_for_user
from annotation.services import membership_set, project_create

try:  # anno-core's update service, when present; the settings form saves through it
    from annotation.services import project_update
except ImportError:  # pragma: no cover - until the service lands
    project_update = None


@login_required
def project_new(request):
    """Anyone signed in may start a project; its creator becomes its manager."""
    form = ProjectNewForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(created_by=request.user, **form.cleaned_data)
        except AnnotationError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Project {project.name} created. Import prompts or invite labelers next.")
            return redirect("annotation:project", slug=project.slug)
    return render(request, "annotation/project_new.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def settings_page(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    form = ProjectSettingsForm(request.POST or None, instance=project)
    if request.method == "POST" and form.is_valid():
        if project_update is not None:
            try:
                project_update(project=project, **{k: form.cleaned_data[k] for k in form.changed_data})
            except AnnotationError as exc:
                form.add_error(None, str(exc))
        else:
            form.save()
        if not form.errors:
            messages.success(request, "Settings saved.")
            return redirect("annotation:settings", slug=project.slug)
    return render(request, "annotation/settings.html", {"project": project, "form": form},
                  status=400 if form.errors else 200)


@login_required
def members_page(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    form = MemberForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.cleaned_data["username"]
        try:
            membership_set(project=project, user=user, role=form.cleaned_data["role"])
        except AnnotationError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{user.username} is now a {form.cleaned_data['role']} of {project.name}.")
            return redirect("annotation:members", slug=project.slug)
    members = project.memberships.select_related("user").order_by("role", "user__username")
    return render(request, "annotation/members.html", {"project": project, "form": form, "members": members},
                  status=400 if form.errors else 200)

"""Manager pages: new project, settings, members, and the invited user's answer (import: ``views_import``)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.errors import AnnotationError
from annotation.forms import MemberForm, ProjectNewForm, ProjectSettingsForm
from annotation.models import Invitation
from annotation.selectors import (
    CREATORS_ONLY,
    MANAGERS,
    invitation_for,
    invitations_of,
    may_create_projects,
    project_for_user,
)
from annotation.services import (
    invitation_accept,
    invitation_decline,
    membership_invite,
    project_create,
)

try:  # anno-core's update service, when present; the settings form saves through it
    from annotation.services import project_update
except ImportError:  # pragma: no cover - until the service lands
    project_update = None


@login_required
def project_new(request):
    """Who may start a project is the site setting ``PROJECT_CREATORS``; the creator becomes its manager."""
    if not may_create_projects(request.user):
        raise PermissionDenied(CREATORS_ONLY)
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
        user, role = form.cleaned_data["username"], form.cleaned_data["role"]
        try:
            added = membership_invite(project=project, user=user, role=role, invited_by=request.user)
        except AnnotationError as exc:
            form.add_error(None, str(exc))
        else:
            if isinstance(added, Invitation):
                messages.success(request, f"{user.username} is invited as {role}; they join once they accept "
                                          "on their home page.")
            else:
                messages.success(request, f"{user.username} is now a {role} of {project.name}.")
            return redirect("annotation:members", slug=project.slug)
    members = project.memberships.select_related("user").order_by("role", "user__username")
    return render(request, "annotation/members.html", {"project": project, "form": form, "members": members,
                                                       "invitations": invitations_of(project)},
                  status=400 if form.errors else 200)


@login_required
@require_POST
def invitation_answer(request, invitation_id: int, answer: str):
    """The invited user accepts (and lands in the project) or declines an invitation of their own."""
    invitation = invitation_for(request.user, invitation_id)
    project = invitation.project
    if answer == "accept":
        membership = invitation_accept(invitation=invitation, user=request.user)
        messages.success(request, f"You joined {project.name} as {membership.get_role_display().lower()}.")
        return redirect("annotation:project", slug=project.slug)
    invitation_decline(invitation=invitation, user=request.user)
    messages.success(request, f"You declined the invitation to {project.name}.")
    return redirect("home")

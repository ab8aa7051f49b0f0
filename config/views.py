from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from annotation.markdown import render_markdown
from annotation.selectors import (
    EVERYONE,
    invitations_for,
    labeler_summary,
    may_create_projects,
    project_for_user,
    projects_for_user,
)


@login_required
def home(request):
    """The landing page: the projects the user belongs to, with their role in each, and invitations to answer."""
    return render(request, "home.html", {"memberships": projects_for_user(request.user),
                                         "invitations": invitations_for(request.user),
                                         "may_create": may_create_projects(request.user)})


@login_required
def my_work(request):
    """The top bar's "My work": the user's own answers and rankings in each project, and how review went."""
    rows = []
    for membership in projects_for_user(request.user):
        summary = labeler_summary(membership.project, request.user)
        rows.append({
            "project": membership.project, "role": membership.get_role_display(), "summary": summary,
            **{key: summary["demonstrations"][name] + summary["rankings"][name]
               for key, name in (("approved", "approved"), ("pending", "pending_review"), ("rejected", "rejected"))},
        })
    return render(request, "me.html", {"rows": rows})


@login_required
def loop_report(request, slug):
    """The demo loop's report for a project the user belongs to (written by ``manage.py demo_loop``)."""
    from config.demo_loop.report import report_path

    project = project_for_user(request.user, slug, EVERYONE)
    path = report_path(project.slug)
    if not path.is_file():
        raise Http404("no loop report for this project yet")
    return render(request, "report.html", {"project": project, "body": render_markdown(path.read_text())})

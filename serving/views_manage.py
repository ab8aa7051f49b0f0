"""Manager pages of serving: deployments (deploy, roll back), moderation and feedback review,
template answers and the project's own categories; and every user's API keys."""

from __future__ import annotations

from django.conf import settings as site
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation.selectors import MANAGERS, project_for_user
from serving import selectors, services
from serving.answers import templates_table
from serving.errors import ServingError
from serving.keys import api_key_create, api_key_revoke
from serving.knowledge.services import knowledge_bases_attach
from serving.models import MAX_TOKENS_CEILING, ApiKey, KnowledgeBase
from serving.moderation import CATEGORIES


def _versions(project, kind: str):
    from training.selectors import versions_of

    return versions_of(project, kind=kind)


@login_required
def deployments(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    if request.method == "POST":
        policies, moderations = _versions(project, "policy"), _versions(project, "moderation")
        policy = policies.filter(pk=request.POST.get("policy") or 0).first()
        moderation = moderations.filter(pk=request.POST.get("moderation") or 0).first()
        bases = _chosen_bases(request, project)
        try:
            if policy is None:
                raise ServingError("choose a policy version to deploy")
            max_tokens = request.POST.get("max_tokens") or None
            if max_tokens is not None and not max_tokens.isdigit():
                raise ServingError("the answer length cap must be a whole number of tokens")
            services.deployment_create(project=project, policy=policy, moderation=moderation,
                                       created_by=request.user, max_tokens=max_tokens and int(max_tokens),
                                       knowledge_bases=bases)
            messages.success(request, f"{policy.name} now answers in the chat and the API.")
        except ServingError as exc:
            messages.error(request, str(exc))
        return redirect("serving:deployments", slug=slug)
    return render(request, "serving/deployments.html", {
        "project": project, "deployments": selectors.deployments_of(project).prefetch_related("knowledge_bases")[:50],
        "active": selectors.active_deployment(project),
        "policies": _versions(project, "policy"), "moderations": _versions(project, "moderation"),
        "max_tokens": site.DEPLOYMENT_MAX_TOKENS, "ceiling": MAX_TOKENS_CEILING,
        "knowledge_bases": KnowledgeBase.objects.filter(project=project).order_by("name"),
    })


def _chosen_bases(request, project) -> list[KnowledgeBase]:
    """The project's knowledge bases ticked in the form (at most a page's worth; others' ids are ignored)."""
    ids = [int(v) for v in request.POST.getlist("knowledge_bases")[:100] if v.isdigit()]
    return list(KnowledgeBase.objects.filter(project=project, pk__in=ids))


@login_required
@require_POST
def deployment_knowledge(request, slug: str, deployment_id: int):
    """Attach knowledge bases to a deployment (the live one, usually): its answers cite them from the next turn."""
    project = project_for_user(request.user, slug, MANAGERS)
    deployment = selectors.deployment_of(project, deployment_id)
    bases = _chosen_bases(request, project)
    try:
        knowledge_bases_attach(deployment=deployment, knowledge_bases=bases)
    except ServingError as exc:
        messages.error(request, str(exc))
    else:
        names = ", ".join(b.name for b in bases)
        messages.success(request, f"Answers now cite {names}." if bases else "Answers no longer search documents.")
    return redirect("serving:deployments", slug=slug)


@login_required
@require_POST
def deployment_activate(request, slug: str, deployment_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    deployment = services.deployment_activate(deployment=selectors.deployment_of(project, deployment_id))
    messages.success(request, f"Rolled back: {deployment.policy.name} answers again.")
    return redirect("serving:deployments", slug=slug)


@login_required
def moderation(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    settings = selectors.settings_of(project)
    custom = "\n".join(f"{name}: {', '.join(entries)}" for name, entries in settings.custom_categories.items())
    return render(request, "serving/moderation.html", {
        "project": project, "events": selectors.events_for_review(project)[:100],
        "feedback": selectors.feedback_for_review(project, handled=None)[:100],
        "open_feedback": selectors.feedback_for_review(project).count(),
        "handled_feedback": selectors.feedback_for_review(project, handled=True).count(),
        "settings": settings, "custom_text": custom,
        "templates": templates_table(project),
        "categories": [*CATEGORIES, *settings.custom_categories],
    })


@login_required
@require_POST
def event_review(request, slug: str, event_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    event = selectors.event_of(project, event_id)
    try:
        services.moderation_event_review(event=event, decision=request.POST.get("decision", ""), by=request.user,
                                         categories=request.POST.getlist("categories") or None)
    except ServingError as exc:
        messages.error(request, str(exc))
    return redirect("serving:moderation", slug=slug)


@login_required
@require_POST
def feedback_handle(request, slug: str, feedback_id: int):
    project = project_for_user(request.user, slug, MANAGERS)
    feedback = selectors.feedback_of(project, feedback_id)
    try:
        if request.POST.get("action") == "prompt":
            prompt = services.feedback_to_prompt(feedback=feedback)
            messages.success(request, f"The conversation is prompt #{prompt.pk} of this project.")
        else:
            services.feedback_dismiss(feedback=feedback)
    except ServingError as exc:
        messages.error(request, str(exc))
    return redirect("serving:moderation", slug=slug)


@login_required
@require_POST
def moderation_settings(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    try:
        custom = services.parse_custom_categories(request.POST.get("custom_categories", ""))
        services.serving_settings_update(project=project, custom_categories=custom,
                                         feedback_to_prompts=request.POST.get("feedback_to_prompts") == "on")
        messages.success(request, "Settings saved.")
    except ServingError as exc:
        messages.error(request, f"Custom categories: {exc}")
    return redirect("serving:moderation", slug=slug)


@login_required
@require_POST
def template_save(request, slug: str):
    project = project_for_user(request.user, slug, MANAGERS)
    try:
        services.template_set(project=project, category=request.POST.get("category", ""),
                              text=request.POST.get("text", ""))
        messages.success(request, "Template saved.")
    except ServingError as exc:
        messages.error(request, str(exc))
    return redirect("serving:moderation", slug=slug)


@login_required
def api_keys(request):
    new_key = None
    if request.method == "POST":
        try:
            if request.POST.get("revoke", "").isdigit():
                api_key_revoke(user=request.user, key_id=int(request.POST["revoke"]))
                messages.success(request, "Key revoked.")
            else:
                _, new_key = api_key_create(user=request.user, name=request.POST.get("name", ""))
        except ServingError as exc:
            messages.error(request, str(exc))
    return render(request, "serving/keys.html", {
        "keys": ApiKey.objects.filter(user=request.user).order_by("-created_at"), "new_key": new_key,
        "base_url": request.build_absolute_uri("/v1"), "api_url": request.build_absolute_uri("/api/"),
    })

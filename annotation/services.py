"""Writes for annotation: projects, memberships, prompts. Functions are ``<entity>_<action>``."""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from annotation.errors import AnnotationError
from annotation.evidence import EvidenceError, evidence_clean
from annotation.models import Completion, Invitation, Membership, Project, Prompt, PromptSource, Role
from annotation.prompt_text import normalized_hash, to_messages
from annotation.slots import slots_recount

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_ACCOUNTS = [("alice", Role.MANAGER), ("bob", Role.LABELER), ("charlie", Role.LABELER), ("dave", Role.REVIEWER)]


def project_create(*, name: str, created_by, slug: str | None = None, **fields) -> Project:
    """Create a project; its creator becomes its first manager."""
    from training.selectors import base_version

    slug = slug or slugify(name)[:80]
    if not slug:
        raise AnnotationError("a project needs a name with at least one letter or digit")
    fields.setdefault("base_model", base_version())
    with transaction.atomic():
        try:
            project = Project.objects.create(name=name, slug=slug, created_by=created_by, **fields)
        except IntegrityError as exc:
            raise AnnotationError(f"a project with the slug {slug!r} already exists") from exc
        Membership.objects.create(project=project, user=created_by, role=Role.MANAGER)
    return project


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise AnnotationError(f"unknown role {role!r}; choose one of {', '.join(Role.values)}")


def membership_set(*, project: Project, user, role: str) -> Membership:
    """Make ``user`` a member in ``role`` at once, no consent asked: for fixtures, the demo and site admins.

    What a manager does from the members page or the API is ``membership_invite``.
    """
    _check_role(role)
    with transaction.atomic():
        membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
        Invitation.objects.filter(project=project, user=user).delete()
    return membership


def membership_invite(*, project: Project, user, role: str, invited_by) -> Membership | Invitation:
    """A manager adds ``user`` in ``role``: an ``Invitation`` the user accepts or declines.

    An existing member's role changes at once (they joined already), and a site admin's
    (superuser's) additions take effect at once too. Inviting again replaces the pending role.
    """
    _check_role(role)
    if invited_by.is_superuser or Membership.objects.filter(project=project, user=user).exists():
        return membership_set(project=project, user=user, role=role)
    invitation, _ = Invitation.objects.update_or_create(project=project, user=user,
                                                        defaults={"role": role, "invited_by": invited_by})
    return invitation


def invitation_accept(*, invitation: Invitation, user) -> Membership:
    """The invited user says yes: they become a member in the offered role."""
    if invitation.user_id != user.pk:
        raise AnnotationError("this invitation is for someone else")
    return membership_set(project=invitation.project, user=user, role=invitation.role)


def invitation_decline(*, invitation: Invitation, user) -> None:
    if invitation.user_id != user.pk:
        raise AnnotationError("this invitation is for someone else")
    invitation.delete()


def prompt_create(*, project: Project, record: dict, source: str = PromptSource.IMPORT, created_by=None) -> Prompt:
    """Add one prompt (with its ``evidence`` passages, if the record has them); a duplicate of an existing
    prompt, or evidence that is not a bounded list of passages, raises ``AnnotationError``."""
    messages = to_messages(record)
    try:
        evidence = evidence_clean(record.get("evidence"))
    except EvidenceError as exc:
        raise AnnotationError(f"evidence {exc}") from exc
    digest = normalized_hash(messages)
    if Prompt.objects.filter(project=project, normalized_hash=digest).exists():
        raise AnnotationError("this prompt is already in the project")
    return Prompt.objects.create(
        project=project,
        messages=messages,
        normalized_hash=digest,
        source=source,
        metadata=record.get("metadata") or {},
        evidence=evidence,
        created_by=created_by,
    )


def demo_load(*, password: str) -> tuple[Project, list[tuple[str, str]]]:
    """The demo project with its prompts and four accounts; running it again changes nothing."""
    User = get_user_model()
    users = {}
    for username, role in DEMO_ACCOUNTS:
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@example.org"})
        if created:
            user.set_password(password)
            user.is_staff = role == Role.MANAGER
            user.save()
        users[username] = user
    project = Project.objects.filter(slug="demo").first()
    if project is None:
        project = project_create(
            name="Demo assistant",
            slug="demo",
            created_by=users["alice"],
            guidelines=(DEMO_DIR / "guidelines.md").read_text(),
        )
    for username, role in DEMO_ACCOUNTS:
        membership_set(project=project, user=users[username], role=role)
    with transaction.atomic():
        for line in (DEMO_DIR / "prompts.jsonl").read_text().splitlines():
            if line.strip():
                messages = to_messages(json.loads(line))
                Prompt.objects.get_or_create(
                    project=project,
                    normalized_hash=normalized_hash(messages),
                    defaults={"messages": messages, "source": PromptSource.IMPORT},
                )
    return project, [(u, r.value) for u, r in DEMO_ACCOUNTS]


def completions_add(*, prompt: Prompt, texts: list[str], model_version=None, sampling_run=None,
                    sampling_params: dict | None = None) -> list[Completion]:
    """Store sampled completions of one prompt; the K of them become one ranking item.

    Used by the training app's sampling runs; keep this signature stable. A model can emit NUL
    characters, which PostgreSQL text columns refuse: they are dropped.
    """
    with transaction.atomic():
        completions = Completion.objects.bulk_create(
            [
                Completion(prompt=prompt, text=text.replace("\x00", ""), model_version=model_version,
                           sampling_run=sampling_run, sampling_params=sampling_params or {})
                for text in texts
            ]
        )
        slots_recount(prompt.project, Prompt.objects.filter(pk=prompt.pk))  # K of them open a ranking slot
    return completions


PROJECT_SETTINGS = {
    "name", "guidelines", "completions_per_prompt", "labels_per_item", "review_rate", "lease_seconds", "gold_rate",
    "gold_threshold", "sampling_temperature", "sampling_top_p", "max_new_tokens", "rm_use_consensus", "base_model",
    "allow_self_review",
}


def project_update(*, project: Project, **fields) -> Project:
    """Change a project's settings; values a database constraint would refuse are an ``AnnotationError``."""
    unknown = set(fields) - PROJECT_SETTINGS
    if unknown:
        raise AnnotationError(f"unknown project setting(s): {', '.join(sorted(unknown))}")
    k = fields.get("completions_per_prompt", project.completions_per_prompt)
    if not 2 <= k <= 9:
        raise AnnotationError("K (completions per prompt) must be between 2 and 9")
    if fields.get("labels_per_item", project.labels_per_item) < 1:
        raise AnnotationError("labels per item must be at least 1")
    for name in ("review_rate", "gold_rate", "gold_threshold"):
        value = fields.get(name, getattr(project, name))
        if not 0 <= value <= 1:
            raise AnnotationError(f"{name.replace('_', ' ')} must be a share between 0 and 1")
    # Compared with the stored row, not the instance: a ModelForm's is_valid() has already set the new
    # values on it, and an unchanged-looking K or labels per item would leave done items closed.
    stored = Project.objects.filter(pk=project.pk).values("labels_per_item", "completions_per_prompt").first() or {}
    recount = any(fields.get(name, getattr(project, name)) != stored.get(name) for name in stored)
    for name, value in fields.items():
        setattr(project, name, value)
    with transaction.atomic():
        project.save(update_fields=list(fields) or None)
        if recount:
            slots_recount(project)  # which items still have an open slot depends on both settings
    return project

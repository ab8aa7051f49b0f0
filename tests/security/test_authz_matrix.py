"""Who may call what: every URL pattern (pages, /api/, /v1, each method) against every role.

``RULES`` says, per URL name, which level each method needs. The test walks the URL conf, so a new
endpoint without a rule fails ``test_every_url_pattern_has_a_rule`` until someone decides who may
use it. Then each (pattern, method) is called as each role and must be refused below the level
(a login redirect, 401, 403 or 404: a project you may not see does not exist for you) and let
through at or above it (any answer but those; a missing object is fine, "No such project" is not).

Object ids in the URLs are ids no row has: the matrix checks the role gate in front of every view;
whose object is whose is tested where the objects are (``tests/annotation/test_scoping.py``, ...).
Levels: PUBLIC, SIGNED_IN, MEMBER (any role in the project), REVIEWER, MANAGER, KEY (/v1: an API
key or a session), STAFF (Django's admin).
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from annotation.models import Role
from annotation.services import membership_set
from serving.keys import api_key_create

PUBLIC, SIGNED_IN, MEMBER, REVIEWER, MANAGER, KEY, STAFF = (
    "public", "signed-in", "member", "reviewer", "manager", "key", "staff")
G, P, GP = ("GET",), ("POST",), ("GET", "POST")


def rule(level: str, methods=G, **per_method) -> dict[str, str]:
    """{method: level}; ``per_method`` overrides a method's level (``POST=MANAGER``)."""
    return {**{m: level for m in methods}, **per_method}


RULES: dict[str, dict[str, str]] = {
    "home": rule(SIGNED_IN), "healthz": rule(PUBLIC), "my-work": rule(SIGNED_IN), "loop-report": rule(MEMBER),
    "login": rule(PUBLIC, GP), "logout": rule(PUBLIC, P),
    "api-schema": rule(PUBLIC), "api-docs": rule(PUBLIC), "favicon": rule(PUBLIC),
    "annotation:invitation-accept": rule(SIGNED_IN, P), "annotation:invitation-decline": rule(SIGNED_IN, P),
    "annotation-api:invitations": rule(SIGNED_IN),
    "annotation-api:invitation-accept": rule(SIGNED_IN, P), "annotation-api:invitation-decline": rule(SIGNED_IN, P),
    # annotation pages
    "annotation:project-new": rule(STAFF, GP),  # TUNELOOP_PROJECT_CREATORS=staff (the default)
    "annotation:project": rule(MEMBER), "annotation:write": rule(MEMBER), "annotation:write-alias": rule(MEMBER),
    "annotation:rank": rule(MEMBER), "annotation:rank-alias": rule(MEMBER),
    "annotation:demonstration-submit": rule(MEMBER, P), "annotation:ranking-submit": rule(MEMBER, P),
    "annotation:skip": rule(MEMBER, P), "annotation:flag": rule(MEMBER, P),
    "annotation:prompt-new": rule(MEMBER, P), "annotation:preview": rule(MEMBER, P),
    "annotation:review": rule(REVIEWER), "annotation:review-approve": rule(REVIEWER, P),
    "annotation:review-edit": rule(REVIEWER, P), "annotation:review-reject": rule(REVIEWER, P),
    "annotation:settings": rule(MANAGER, GP), "annotation:members": rule(MANAGER, GP),
    "annotation:import": rule(MANAGER), "annotation:import-upload": rule(MANAGER, P),
    "annotation:import-status": rule(MANAGER),
    # annotation API
    "annotation-api:projects": rule(SIGNED_IN, GP, POST=STAFF), "annotation-api:project": rule(MEMBER),
    "annotation-api:prompts": rule(MEMBER, GP, POST=MANAGER), "annotation-api:prompts-upload": rule(MANAGER, P),
    "annotation-api:prompts-write": rule(MEMBER, P), "annotation-api:prompt-flag": rule(MEMBER, P),
    "annotation-api:task-next": rule(MEMBER, GP), "annotation-api:task": rule(MEMBER),
    "annotation-api:task-demonstration": rule(MEMBER, P), "annotation-api:task-ranking": rule(MEMBER, P),
    "annotation-api:task-skip": rule(MEMBER, P), "annotation-api:demonstrations": rule(MEMBER),
    "annotation-api:rankings": rule(MEMBER), "annotation-api:me": rule(MEMBER),
    "annotation-api:reviews": rule(REVIEWER), "annotation-api:review-approve": rule(REVIEWER, P),
    "annotation-api:review-edit": rule(REVIEWER, P), "annotation-api:review-reject": rule(REVIEWER, P),
    "annotation-api:members": rule(MANAGER, GP),
    "annotation-api:preferences": rule(MANAGER, P), "annotation-api:preferences-upload": rule(MANAGER, P),
    # dashboards
    "dashboards:project": rule(MANAGER), "dashboards:quality": rule(MANAGER), "dashboards:training": rule(MANAGER),
    # training pages and API
    "training:runs": rule(MANAGER, GP), "training:autostart": rule(MANAGER, P), "training:run": rule(MANAGER),
    "training:run-cancel": rule(MANAGER, P), "training:models": rule(MANAGER), "training:model": rule(MANAGER),
    "training:snapshots": rule(MANAGER, GP), "training:snapshot-download": rule(MANAGER),
    "training:export": rule(MANAGER),
    "training:api-snapshots": rule(MANAGER, GP), "training:api-snapshot": rule(MANAGER),
    "training:api-snapshot-download": rule(MANAGER), "training:api-export": rule(MANAGER),
    "training:api-runs": rule(MANAGER, GP), "training:api-run": rule(MANAGER), "training:api-run-cancel": rule(MANAGER, P),
    "training:api-models": rule(MANAGER), "training:api-model": rule(MANAGER),
    "corpora": rule(MANAGER, GP), "corpus-demonstrations": rule(MANAGER, P), "corpus-download": rule(MANAGER),
    # serving pages and API
    "serving:chat-home": rule(SIGNED_IN), "serving:chat": rule(MEMBER), "serving:chat-send": rule(MEMBER, P),
    "serving:chat-regenerate": rule(MEMBER, P), "serving:feedback": rule(MEMBER, P),
    "serving:deployments": rule(MANAGER, GP), "serving:deployment-activate": rule(MANAGER, P),
    "serving:deployment-knowledge": rule(MANAGER, P),
    "serving:moderation": rule(MANAGER), "serving:event-review": rule(MANAGER, P),
    "serving:feedback-handle": rule(MANAGER, P), "serving:moderation-settings": rule(MANAGER, P),
    "serving:template-save": rule(MANAGER, P), "serving:keys": rule(SIGNED_IN, GP),
    "serving:api-deployments": rule(MANAGER, GP), "serving:api-deployment-activate": rule(MANAGER, P),
    "serving:api-feedback": rule(MEMBER, P), "serving:api-feedback-list": rule(MANAGER),
    "serving:api-events": rule(MANAGER), "serving:api-event-review": rule(MANAGER, P),
    "serving:api-keys": rule(SIGNED_IN, GP), "serving:api-key": rule(SIGNED_IN, ("DELETE",)),
    "serving:v1-models": rule(KEY), "serving:v1-chat": rule(KEY, P), "serving:v1-moderations": rule(KEY, P),
    # knowledge bases: members read, managers write
    "serving:knowledge_bases": rule(MEMBER, GP, POST=MANAGER), "serving:knowledge_base": rule(MEMBER, GP, POST=MANAGER),
    "serving:knowledge_base_progress": rule(MEMBER), "serving:knowledge_base_reindex": rule(MANAGER, P),
    "serving:knowledge_base_delete": rule(MANAGER, P), "serving:knowledge_document": rule(MEMBER),
    "serving:knowledge_document_delete": rule(MANAGER, P),
    "serving:api-knowledge-bases": rule(MEMBER, GP, POST=MANAGER),
    "serving:api-knowledge-base": rule(MEMBER, ("GET", "DELETE"), DELETE=MANAGER),
    "serving:api-knowledge-documents": rule(MEMBER, GP, POST=MANAGER),
    "serving:api-knowledge-document": rule(MEMBER, ("GET", "DELETE"), DELETE=MANAGER),
    "serving:api-knowledge-search": rule(MEMBER),
}
ADMIN_RULE = rule(STAFF)  # Django's admin (every route under admin/): its own login, staff only; checked on its index
ROLES = ("anonymous", "outsider", "labeler", "reviewer", "manager", "other_key")
RANK = {MEMBER: 1, REVIEWER: 2, MANAGER: 3}
ROLE_RANK = {"labeler": 1, "reviewer": 2, "manager": 3, "outsider": 0}
ARGS = {"slug": None, "kind": "demonstration", "token": "abc123", "name": "no-such-model", "fmt": "sft",
        "file_format": "jsonl", "filename": "data.jsonl"}


def url_patterns(resolver=None, prefix="", namespace=""):
    """(name with namespace, route) of every pattern in the URL conf."""
    for p in (resolver or get_resolver()).url_patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from url_patterns(p, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            yield (f"{namespace}{p.name}" if p.name else None), prefix + str(p.pattern)


def rule_of(name: str | None, route: str):
    if route.startswith("admin/"):
        return ADMIN_RULE
    return RULES.get(name)


def test_every_url_pattern_has_a_rule():
    missing = [f"{name} ({route})" for name, route in url_patterns() if rule_of(name, route) is None]
    assert missing == [], "add these to RULES in tests/security/test_authz_matrix.py"
    names = {name for name, _ in url_patterns()}
    assert sorted(set(RULES) - names) == [], "rules for URL names that no longer exist"


def _path(route: str, slug: str) -> str:
    def fill(match):
        converter, arg = match.group(1), match.group(2)
        if arg == "slug":
            return slug
        if converter == "int":
            return "987654"
        return ARGS.get(arg, "x")

    path = re.sub(r"<(?:(\w+):)?(\w+)>", fill, route)
    return "/" + path.replace("^", "").replace("$", "")


CASES = [(name, route) for name, route in url_patterns()
         if name in RULES or name == "admin:index"]


@pytest.fixture
def people(project, alice, bob, dave, eve, other_project):
    return {"manager": alice, "labeler": bob, "reviewer": dave, "outsider": eve}


def _call(client, method: str, path: str, **headers):
    if method == "GET":
        return client.get(path, **headers)
    return client.generic(method, path, data="{}", content_type="application/json", **headers)


def _refused(response) -> bool:
    if response.status_code in (401, 403, 404):
        return True
    return response.status_code == 302 and "login" in response.get("Location", "")


def _gate_passed(response, level: str) -> bool:
    if response.status_code in (401, 403, 405, 500):
        return False
    if level != PUBLIC and response.status_code == 302 and "login" in response.get("Location", ""):
        return False
    return not (response.status_code == 404 and b"No such project" in response.content)


def _expected(level: str, role: str, path: str) -> bool | None:
    """True: must pass; False: must be refused; None: either (no promise made)."""
    if level == PUBLIC:
        return True
    if level == STAFF:
        return False  # none of the roles is staff (project creation, the admin)
    if role == "anonymous":
        return False
    if level == KEY:
        return True
    if role == "other_key":
        # the key of a user in no project: not a member anywhere; what it may do on /api/ outside projects
        # depends on whether /api/ takes API keys
        return False if level in RANK else None
    if level == SIGNED_IN:
        return True
    return ROLE_RANK[role] >= RANK[level]


@pytest.mark.parametrize(("name", "route"), CASES, ids=[c[0] for c in CASES])
def test_each_role_gets_exactly_what_its_rule_allows(client, people, project, eve, name, route):
    rules = rule_of(name, route)
    path = _path(route, project.slug)
    _, raw_key = api_key_create(user=eve, name="matrix")
    wrong = []
    for method, level in rules.items():
        for role in ROLES:
            client.logout()
            headers = {}
            if role == "other_key":
                headers["HTTP_AUTHORIZATION"] = f"Bearer {raw_key}"
            elif role != "anonymous":
                client.force_login(people[role])
            response = _call(client, method, path, **headers)
            expected = _expected(level, role, path)
            if expected is True and not _gate_passed(response, level):
                wrong.append(f"{role} {method} {path}: {response.status_code}, should pass ({level})")
            elif expected is False and not _refused(response):
                wrong.append(f"{role} {method} {path}: {response.status_code}, should be refused ({level})")
    assert wrong == []


def test_the_matrix_notices_a_hole(client, people, project):
    """The checker itself: a labeler reaching a manager page would be reported."""
    membership_set(project=project, user=people["labeler"], role=Role.MANAGER)
    client.force_login(people["labeler"])
    response = client.get(f"/projects/{project.slug}/runs/")
    assert _expected(MANAGER, "labeler", "") is False and not _refused(response)

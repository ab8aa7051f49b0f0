"""Issue 13 ("broken for every user"): My work opens, the nav shows only what a role may open, errors are
styled, every answer carries a Content-Security-Policy and the pages hold no inline script."""

import re
from pathlib import Path

import pytest
from django.conf import settings

from tests.training import labels

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def test_the_top_bars_my_work_link_opens_the_users_work(client, project, bob):
    labels.demonstration(project, bob, "What is 2+2?", "4")
    client.force_login(bob)
    home = client.get("/").content.decode()
    href = re.search(r'<a href="([^"]+)">My work</a>', home).group(1)
    page = client.get(href)
    assert page.status_code == 200
    assert "Assistant" in page.content.decode() and "data-my-work" in page.content.decode()


@pytest.mark.parametrize(("user", "shown", "hidden"), [
    ("bob", ["Write", "Rank", "Chat"], ["Review", "Dashboard", "Runs", "Deployments", "Corpora"]),
    ("dave", ["Write", "Rank", "Review"], ["Dashboard", "Runs", "Deployments"]),
    ("alice", ["Review", "Dashboard", "Runs", "Models", "Deployments"], []),
])
def test_the_project_nav_shows_only_pages_the_role_can_open(client, project, user, shown, hidden, request):
    client.force_login(request.getfixturevalue(user))
    page = client.get(f"/projects/{project.slug}/").content.decode()
    nav = page[page.index('<nav class="subnav"'):page.index("</nav>", page.index('<nav class="subnav"'))]
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', nav)
    names = [name for _, name in links]
    assert all(name in names for name in shown) and not any(name in names for name in hidden)
    for href, _ in links:
        assert client.get(href).status_code == 200, href


def test_a_page_the_role_cannot_open_is_the_apps_styled_404(client, project, bob):
    client.force_login(bob)
    response = client.get(f"/projects/{project.slug}/runs/")
    body = response.content.decode()
    assert response.status_code == 404 and 'data-status="404"' in body and "tuneloop.css" in body


def test_the_500_and_403_templates_are_styled():
    for code in ("403", "404", "500"):
        text = (TEMPLATES / f"{code}.html").read_text()
        assert f'data-status="{code}"' in text


def test_every_answer_carries_a_content_security_policy_without_inline_script(client, alice):
    client.force_login(alice)
    for path in ("/", "/api/projects/", "/accounts/login/", "/api/docs/"):
        policy = client.get(path)["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_no_template_holds_an_inline_script_or_event_handler():
    """The CSP would block them; the browser test (tests/e2e/test_csp_browser.py) checks the rendered pages."""
    offenders = []
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        for match in re.finditer(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", text):
            offenders.append(f"{path.name}: {match.group(0)}")
        offenders += [f"{path.name}: {m}" for m in re.findall(r"\son[a-z]+=\"", text)]
    assert offenders == []


def test_the_api_docs_page_loads_its_script_from_a_url(client, alice):
    client.force_login(alice)
    body = client.get("/api/docs/").content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>\s*\S", body)


def test_browser_tests_save_screenshots_outside_the_tracked_docs(monkeypatch):
    import importlib

    import tests.e2e.shots as shots

    docs = Path(settings.BASE_DIR, "docs", "screenshots")
    monkeypatch.delenv("TUNELOOP_SCREENSHOTS", raising=False)
    default = importlib.reload(shots).SHOTS
    assert default != docs and docs not in default.parents
    monkeypatch.setenv("TUNELOOP_SCREENSHOTS", "docs/screenshots")
    chosen = importlib.reload(shots).SHOTS
    assert chosen == docs
    monkeypatch.delenv("TUNELOOP_SCREENSHOTS")
    importlib.reload(shots)


def test_the_start_command_says_how_to_create_a_superuser(django_user_model):
    from config.management.commands.up import admin_hint

    assert "manage.py createsuperuser" in admin_hint()
    django_user_model.objects.create_superuser("root", password="pw")
    assert "createsuperuser" not in admin_hint()

"""Issue 13: the pages run under the Content-Security-Policy with no violation (no inline script, no eval).

A real browser opens the main pages of each kind as the manager and a labeler; any
``securitypolicyviolation`` event or console report of a refused script or style fails the test.
"""

from __future__ import annotations

import pytest

from annotation.services import completions_add, prompt_create
from tests.e2e.test_labeling_browser import browser, login  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WATCH = """() => { window.__csp = []; document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + e.sourceFile + ':' + e.lineNumber)); }"""
MANAGER_PAGES = ["/", "/me/", "/projects/{slug}/", "/projects/{slug}/write/", "/projects/{slug}/rank/",
                 "/projects/{slug}/review/", "/projects/{slug}/import/", "/projects/{slug}/settings/",
                 "/projects/{slug}/members/", "/projects/{slug}/dashboard/", "/projects/{slug}/dashboard/quality/",
                 "/projects/{slug}/dashboard/training/", "/projects/{slug}/runs/", "/projects/{slug}/models/",
                 "/projects/{slug}/snapshots/", "/projects/{slug}/corpora/", "/projects/{slug}/deployments/",
                 "/projects/{slug}/moderation/", "/projects/{slug}/chat/", "/account/keys/", "/api/docs/",
                 "/projects/{slug}/no-such-page/"]
LABELER_PAGES = ["/", "/projects/{slug}/", "/projects/{slug}/write/", "/projects/{slug}/rank/", "/projects/{slug}/chat/"]


def _violations(page, base: str, paths: list[str], slug: str) -> list[str]:
    page.add_init_script(f"({WATCH})()")
    reports: list[str] = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and reports.append(msg.text))
    found = []
    for path in paths:
        url = base + path.format(slug=slug)
        page.goto(url, wait_until="domcontentloaded", timeout=30_000)
        page.wait_for_timeout(300)  # let deferred scripts (htmx, charts) run
        found += [f"{path}: {v}" for v in page.evaluate("window.__csp || []")]
        found += [f"{path}: {r}" for r in reports]
        reports.clear()
    return found


def test_main_pages_cause_no_csp_violation(browser, live_server, project, alice, bob):  # noqa: F811
    prompt_create(project=project, record={"text": "Name three rivers in Europe."})
    ranked = prompt_create(project=project, record={"text": "Say hello in French."})
    completions_add(prompt=ranked, texts=["Bonjour !", "Hello.", "Salut", "Hola"])
    manager = login(browser, live_server, "alice")
    assert _violations(manager, live_server.url, MANAGER_PAGES, project.slug) == []
    manager.goto(live_server.url + f"/projects/{project.slug}/")
    manager.keyboard.press("w")  # the overview's shortcut, now a static script
    manager.wait_for_url(f"**/projects/{project.slug}/write/")
    labeler = login(browser, live_server, "bob")
    assert _violations(labeler, live_server.url, LABELER_PAGES, project.slug) == []


def test_the_check_notices_an_inline_script(browser, live_server, alice):  # noqa: F811
    page = login(browser, live_server, "alice")
    page.add_init_script(f"({WATCH})()")
    page.goto(live_server.url + "/")
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
                  " document.body.appendChild(s); }")
    page.wait_for_timeout(200)
    assert page.evaluate("window.__csp").__len__() == 1 and page.evaluate("window.x") is None

"""Issue 13, Medium 3: a manager's custom category cannot stall the web process (ReDoS).

``re:(a|a)+$`` on Python's backtracking ``re`` doubles its time per character and holds the GIL, so
the moderation timeout cannot fire: 40 characters took the process for good. On RE2 it is an
ordinary pattern; what RE2 cannot run (backreferences, lookaround) is refused when it is saved.
"""

import pytest

from serving.custom_categories import MAX_CHARS, CustomCategories
from serving.moderation import load_moderator


@pytest.mark.timeout(60, method="thread")  # the old engine never returns: the thread method ends the run
def test_a_backtracking_pattern_is_matched_without_stalling():
    moderator = load_moderator(extra_categories={"spam": ["re:(a|a)+$", "re:(x+x+)+y"]}, timeout_ms=10_000)
    result = moderator.check("a" * 40 + "!")
    assert not result.failed_closed and not result.categories["spam"]
    assert moderator.check("x" * 5000).categories["spam"] is False
    assert moderator.check("banana").categories["spam"], "a real match still flags"


def test_custom_keywords_and_patterns_match_as_before():
    moderator = load_moderator(extra_categories={"competitors": ["acme corp", "re:globex\\s*inc"]}, timeout_ms=2000)
    assert moderator.check("Have you tried ACME Corp?").categories["competitors"]
    assert moderator.check("GLOBEX   Inc. is better").categories["competitors"]
    assert not moderator.check("acmeco is fine").categories["competitors"]


def test_a_text_over_the_cap_fails_closed_instead_of_being_skipped():
    moderator = load_moderator(extra_categories={"secret": ["re:project\\s+x"]}, timeout_ms=10_000)
    result = moderator.check("padding " * (MAX_CHARS // 8) + "project x")
    assert result.flagged and result.failed_closed and "custom categories" in result.error


def test_a_stored_pattern_re2_refuses_blocks_instead_of_being_ignored():
    categories = CustomCategories({"old": ["re:(a)\\1"]})
    with pytest.raises(ValueError, match="backreferences"):
        categories.matches("aa", "aa")


@pytest.mark.parametrize(("line", "why"), [
    ("echo: re:(a)\\1", "no backreferences"),
    ("peek: re:(?<=x)y", "lookbehind"),
    ("long: re:" + "a" * 400, "longer than 300 characters"),
])
def test_the_manager_gets_a_clear_error_when_saving_a_pattern_re2_cannot_run(client, alice, project, line, why):
    from serving.selectors import settings_of

    client.force_login(alice)
    response = client.post(f"/projects/{project.slug}/moderation/settings", {"custom_categories": line},
                           follow=True)
    page = response.content.decode()
    assert "Custom categories: line 1: the pattern" in page and why in page
    assert settings_of(project).custom_categories == {}

"""Template answers: what the user reads instead of a flagged message.

A project's own template for a category wins over the site-wide one (``project`` null), which wins
over the built-in text below. With several categories flagged, the most urgent decides: self-harm
first (the user may be at risk and needs resources, not a refusal), then the most serious others.
"""

from __future__ import annotations

from django.db.models import Q

from serving.models import TemplateResponse

DEFAULT_CATEGORY = "default"
PRIORITY = ("self-harm", "sexual/minors", "hate/threatening", "violence/graphic", "violence", "hate",
            "harassment", "sexual")

BUILT_IN = {
    "self-harm": (
        "I'm really sorry you're feeling this way, and I'm glad you said something. You don't have to "
        "go through this alone. Please reach out to someone you trust, or to a crisis line now: in the US "
        "call or text **988**, in the UK and Ireland call Samaritans on **116 123**, and elsewhere you can "
        "find a local helpline at findahelpline.com. If you are in immediate danger, call your local "
        "emergency number."
    ),
    "sexual/minors": "I can't help with anything that sexualises minors.",
    DEFAULT_CATEGORY: (
        "Sorry, I can't help with that. The message was held back by this assistant's content policy; "
        "if you think that is a mistake, use *Report* and a reviewer will look at it."
    ),
}


def deciding_category(categories: list[str]) -> str:
    """The category whose template answers a message flagged for ``categories``."""
    for category in PRIORITY:
        if category in categories:
            return category
    return categories[0] if categories else DEFAULT_CATEGORY


def template_text(project, categories: list[str]) -> str:
    """The template answer for a message of ``project`` flagged for ``categories``."""
    wanted = [deciding_category(categories), DEFAULT_CATEGORY]
    owners = Q(project__isnull=True) | (Q(project=project) if project is not None else Q())
    rows = {(row.project_id, row.category): row.text
            for row in TemplateResponse.objects.filter(owners, category__in=wanted)}
    for category in wanted:
        for owner in (getattr(project, "pk", None), None):
            if (owner, category) in rows:
                return rows[(owner, category)]
        if category in BUILT_IN:
            return BUILT_IN[category]
    return BUILT_IN[DEFAULT_CATEGORY]


def templates_table(project) -> list[dict]:
    """Every category's template as the manager edits it: the project's own text, or the fallback."""
    own = {row.category: row.text for row in TemplateResponse.objects.filter(project=project)}
    site = {row.category: row.text for row in TemplateResponse.objects.filter(project__isnull=True)}
    table = []
    for category in (*PRIORITY, DEFAULT_CATEGORY):
        fallback = site.get(category) or BUILT_IN.get(category) or site.get(DEFAULT_CATEGORY) or BUILT_IN[DEFAULT_CATEGORY]
        table.append({"category": category, "text": own.get(category, ""), "fallback": fallback,
                      "custom": category in own})
    return table

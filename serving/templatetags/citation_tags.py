"""Template helpers of the chat page's citations (``serving/_citations.html``)."""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

from serving.citations import citations_shown

register = template.Library()


@register.filter(name="citations_shown")
def citations_shown_filter(citations) -> list[dict]:
    return citations_shown(citations)


@register.filter
def passage_page(citation: dict, project_slug: str) -> str:
    """The passage on its document's page in this project, or "" when the citation lacks its ids."""
    try:
        url = reverse("serving:knowledge_document",
                      args=[project_slug, int(citation["knowledge_base_id"]), int(citation["document_id"])])
    except (KeyError, TypeError, ValueError, NoReverseMatch):
        return ""
    chunk = citation.get("chunk_id")
    return f"{url}#chunk-{int(chunk)}" if isinstance(chunk, int) else url


@register.filter
def cited_count(citations) -> int:
    return sum(1 for c in citations_shown(citations) if c.get("cited"))

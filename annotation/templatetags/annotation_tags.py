"""Template helpers of the labeling pages: Markdown, card letters, flag names."""

from __future__ import annotations

from django import template

from annotation import evidence as evidence_module
from annotation.markdown import render_markdown

register = template.Library()

FLAG_LABELS = {
    "unsafe": "Unsafe",
    "factually_wrong": "Factually wrong",
    "not_helpful": "Not helpful",
    "personal_data": "Personal data",
    "not_supported": "Not supported by the evidence",
}


@register.filter(name="markdown")
def markdown_filter(text):
    return render_markdown(text)


@register.filter
def letter(index) -> str:
    """0 -> A, 1 -> B ...: how completions are named on the ranking page."""
    try:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(index)]
    except (ValueError, IndexError, TypeError):
        return "?"


@register.filter
def flag_label(name: str) -> str:
    return FLAG_LABELS.get(name, str(name).replace("_", " "))


@register.filter
def get_item(mapping, key):
    if not mapping:
        return None
    return mapping.get(str(key))


@register.filter
def seconds(ms) -> str:
    """Milliseconds as a short duration: ``42 s`` or ``3 min 5 s``."""
    try:
        total = int(ms) // 1000
    except (TypeError, ValueError):
        return ""
    return f"{total // 60} min {total % 60} s" if total >= 60 else f"{total} s"


@register.filter
def evidence(value) -> list[dict]:
    """A prompt's (or an answer's) stored passages, read leniently: what ``_evidence.html`` lists."""
    return evidence_module.evidence_of(value)


@register.filter
def cited_numbers(text) -> list[int]:
    """The passage numbers an answer cites as ``[n]``."""
    return evidence_module.cited_numbers(str(text or ""))


@register.filter
def link_url(url) -> str:
    """A passage's link only when it is http(s) or a path on this site: never ``javascript:`` and the like."""
    url = str(url or "").strip()
    if url.startswith(("https://", "http://")) or (url.startswith("/") and not url.startswith("//")):
        return url
    return ""

"""Template helpers of the labeling pages: Markdown, card letters, flag names."""

from __future__ import annotations

from django import template

from annotation.markdown import render_markdown

register = template.Library()

FLAG_LABELS = {
    "unsafe": "Unsafe",
    "factually_wrong": "Factually wrong",
    "not_helpful": "Not helpful",
    "personal_data": "Personal data",
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

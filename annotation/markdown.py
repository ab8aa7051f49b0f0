"""Markdown for prompts, answers and guidelines: rendered, then sanitised with nh3.

Prompt and answer text comes from imports, labelers and models, so it is untrusted. Raw HTML in
the text is shown as text (a prompt asking "what does <script> do?" must read as written), so the
Markdown parser's raw-HTML handlers are switched off; ``nh3.clean`` (ammonia) is a second gate
that keeps only an allow-list of tags and attributes and drops links whose scheme is not
http(s)/mailto, so ``javascript:`` links render inert.
"""

from __future__ import annotations

import markdown as _markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

_EXTENSIONS = ["fenced_code", "tables", "sane_lists", "nl2br"]
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "i", "li", "ol", "p", "pre", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "th": {"align"}, "td": {"align"}, "code": {"class"},
               "ol": {"start"}}


def render_markdown(text: str | None) -> SafeString:
    """HTML safe to put in a page for any input text (Markdown semantics, no active content)."""
    if not text:
        return mark_safe("")
    # lazy_ol=False keeps a list's first number: models write "1." … "2." with paragraphs between the items.
    parser = _markdown.Markdown(extensions=_EXTENSIONS, output_format="html", lazy_ol=False)  # one per call
    parser.preprocessors.deregister("html_block")
    parser.inlinePatterns.deregister("html")
    html = parser.convert(str(text))
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(clean)  # noqa: S308 - sanitised by nh3 just above

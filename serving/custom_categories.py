"""A project's own moderation categories, matched in time linear in the text (no Django here).

A manager lists, per category, keywords (matched as whole words on the normalised text, also run
together: "acme corp" matches "acmecorp") and ``re:``-prefixed regular expressions (matched,
case-insensitively, on the normalised and on the raw text).

The regular expressions run on RE2 (``google-re2``), which has no backtracking: ``(a|a)+$`` costs
the same microseconds on 26 characters as on 26,000, where Python's ``re`` doubles its time with
every character and, holding the GIL, stalls the whole web process past any moderation timeout.
RE2 has no backreferences or lookaround; ``pattern_error`` says so when the manager saves such a
pattern. A text longer than ``MAX_CHARS`` is refused (the moderator then fails closed) rather than
matched in part, so nothing can slip past a category by padding.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import re2

from serving.normalize import normalize

MAX_CHARS = 100_000  # per checked text; inputs and answers are capped well below this upstream
MAX_PATTERN_CHARS = 300
MAX_ENTRIES = 100  # keywords and patterns per category
MAX_CATEGORIES = 20

_OPTIONS = re2.Options()
_OPTIONS.case_sensitive = False
_OPTIONS.log_errors = False  # a bad pattern is reported to the manager, not to stderr


class CustomCategoryError(ValueError):
    """A pattern RE2 cannot run, or a text too long to check."""


def keyword_pattern(phrase: str) -> str:
    """A normalised phrase as a whole-word pattern whose words may also be run together ("killyou")."""
    words = normalize(phrase).split()
    return r"(?<![a-z0-9])" + r"\s*".join(re.escape(w) for w in words) + r"(?![a-z0-9])"


def pattern_error(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a custom category's ``re:`` entry, or None when it can."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"longer than {MAX_PATTERN_CHARS} characters"
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return (f"{reason} (patterns run on RE2, in time linear in the text: no backreferences, "
                "no lookahead or lookbehind)")
    return None


class CustomCategories:
    """The compiled categories; iterating gives their names. ``matches`` raises ``CustomCategoryError``
    for a category whose stored pattern RE2 refuses (saved before patterns were checked), so the
    moderator fails closed instead of silently skipping it."""

    def __init__(self, categories: dict[str, list[str]]) -> None:
        self._compiled: dict[str, tuple[re.Pattern | None, object | None, str | None]] = {}
        for name, entries in categories.items():
            words = [keyword_pattern(e) for e in entries if not e.startswith("re:") and normalize(e)]
            regexes = [e[3:] for e in entries if e.startswith("re:")]
            problem = next((f"category {name!r}: pattern {r!r}: {why}" for r in regexes
                            if (why := pattern_error(r))), None)
            regex = (re2.compile("|".join(f"(?:{r})" for r in regexes), _OPTIONS)
                     if regexes and problem is None else None)
            self._compiled[name] = (re.compile("|".join(words)) if words else None, regex, problem)

    def __iter__(self) -> Iterator[str]:
        return iter(self._compiled)

    def __len__(self) -> int:
        return len(self._compiled)

    def matches(self, norm: str, raw: str) -> list[str]:
        """The categories ``raw`` (and its normalised form ``norm``) falls in."""
        if not self._compiled:
            return []
        if max(len(norm), len(raw)) > MAX_CHARS:
            raise CustomCategoryError(f"text of {len(raw)} characters is over the {MAX_CHARS} custom categories check")
        found = []
        for name, (words, regex, problem) in self._compiled.items():
            if problem is not None:
                raise CustomCategoryError(problem)
            if (words and words.search(norm)) or (regex and (regex.search(norm) or regex.search(raw))):
                found.append(name)
        return found

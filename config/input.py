"""Parsing helpers for untrusted input that turn Python's own failure modes into clear errors.

* ``loads``: ``json.loads`` that reports nesting too deep for the parser (a ``RecursionError``
  from ``[[[[...`` a hundred thousand levels down) as an ordinary ``json.JSONDecodeError``, so every
  caller that already answers bad JSON with a 400 or a line error covers it too.
* ``parse_id``: a database id from a query parameter, or ``None``; ``"²".isdigit()`` is true and
  ``int("9" * 30)`` overflows the database's bigint, both of which used to end in a 500.
"""

from __future__ import annotations

import json
import re

MAX_ID = 2**63 - 1  # PostgreSQL bigint; SQLite's integer
_ID = re.compile(r"[0-9]{1,19}")


def loads(text: str | bytes):
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text if isinstance(text, str) else "", 0) from None


def parse_id(raw: str | None) -> int | None:
    """The id in ``raw`` when it is plain ASCII digits within the database's range, else ``None``."""
    if raw is None or not _ID.fullmatch(raw.strip()):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None

"""Preference records from a local file (e.g. Anthropic HH's ``*.jsonl.gz``) read through the importer's parser.

The benches use this to train and evaluate on public pairs without a database: each record goes through
``annotation.preference_import.parse_preference``, the function the import page and API use, so an HH
transcript is split at its last assistant turn exactly as an import would. Nothing here downloads.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path


def read_rankings_rows(path: Path, limit: int) -> list[dict]:
    """Up to ``limit`` records of a JSONL(.gz) file as ranking rows ``{prompt, completions, ranks}``; a record
    the parser rejects is skipped and counted (the import page would refuse the whole file instead)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("TUNELOOP_EMBEDDED", "1")
    import django

    django.setup()
    from annotation.preference_import import parse_preference

    rows, rejected = [], 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if len(rows) >= limit:
                break
            if not line.strip():
                continue
            try:
                preference = parse_preference(json.loads(line))
            except ValueError:
                rejected += 1
                continue
            rows.append({"prompt": preference.messages, "completions": preference.completions,
                         "ranks": preference.ranks})
    if rejected:
        print(f"{path}: {rejected} records the importer rejects, skipped")
    return rows


def read_pairs(path: Path, limit: int) -> list[dict]:
    """Up to ``limit`` (prompt, chosen, rejected) pairs of a file (the best and worst answer of each ranking)."""
    pairs = []
    for row in read_rankings_rows(path, limit):
        ranks = row["ranks"]
        best, worst = ranks.index(min(ranks)), ranks.index(max(ranks))
        if ranks[best] != ranks[worst]:
            pairs.append({"prompt": row["prompt"], "chosen": row["completions"][best],
                          "rejected": row["completions"][worst]})
    return pairs

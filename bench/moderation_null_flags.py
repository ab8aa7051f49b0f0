"""Flags that the dev figures cannot see: categories a model raises where the corpus' label is null.

Dev AUPRC, precision and recall (bench/moderation_quality.py) mask a null label: a tweet from a hate-speech
set says nothing about violence, so flagging it as violence costs nothing there. This bench counts those
flags on the dev rows that are positive in no category (most of them are labelled for one or two
categories only), per category and per source, plus how many of the rows are flagged at all. A model
whose head learned "informal or profane" as a category shows up here and nowhere else.

Read the counts as an upper bound on false positives, not as false positives: some rows are harmful in
a category their source never labelled (offensive tweets are often harassment or sexual). Compare
models on the same rows, e.g. the shipped folder against a rebuild with ``--out DIR``.

Run: .venv/bin/python bench/moderation_null_flags.py [--folder DIR ...] [--show N]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving.moderation import DEFAULT_FOLDER, Moderator  # noqa: E402
from training.moderation_data import read_corpus  # noqa: E402
from training.moderation_model import load_model  # noqa: E402


def null_flags(moderator: Moderator, rows: list[dict]) -> tuple[int, collections.Counter, dict[str, list[str]]]:
    """(rows flagged at all, flags per (category, source) where the label is null, flagged texts per category)."""
    flagged, counts, texts = 0, collections.Counter(), collections.defaultdict(list)
    for row in rows:
        result = moderator.check(row["text"])
        flagged += result.flagged
        for category, on in result.categories.items():
            if on and row["categories"].get(category, None) is None:
                counts[category, row["source"].split("@")[0]] += 1
                texts[category].append(row["text"])
    return flagged, counts, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", action="append", help="model folder (repeatable; default: the shipped one)")
    parser.add_argument("--max-chars", type=int, default=600, help="leave out longer rows (windows: slow)")
    parser.add_argument("--show", type=int, default=0, help="print N random flagged texts per category")
    args = parser.parse_args()
    rows = [r for r in read_corpus("dev") if len(r["text"]) <= args.max_chars
            and not any(v == 1 for v in r["categories"].values())]
    for folder in args.folder or [str(DEFAULT_FOLDER)]:
        moderator = Moderator(load_model(folder)[0], timeout_ms=None)
        flagged, counts, texts = null_flags(moderator, rows)
        per_category = collections.Counter()
        for (category, _), n in counts.items():
            per_category[category] += n
        print(f"{folder}: {flagged} of {len(rows)} dev rows positive nowhere are flagged; "
              f"flags where the label is null, per category: {dict(per_category.most_common())}")
        for (category, source), n in counts.most_common(8):
            print(f"    {category:18s} {n:5d}  {source}")
        rng = random.Random(0)
        for category, found in texts.items():
            for text in rng.sample(found, min(args.show, len(found))):
                print(f"    [{category}] {text[:120]!r}")


if __name__ == "__main__":
    main()

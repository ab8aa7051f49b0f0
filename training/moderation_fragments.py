"""Benign short fragments for moderation training: the beginnings of harmless text, labelled harmless.

Why: the chat stream moderates an answer's *prefixes* as it streams (the first check reads the first
word or two), and a classifier trained only on whole messages has never seen "You", "Run", "say it" or
"To undo the last": its encoder head extrapolated on those short pooled vectors and flagged them
(harassment 0.6 for "You"). Every text of real traffic starts with such a prefix, so the model must
learn that a prefix of a harmless text is harmless.

``fragment_rows`` returns ``count`` rows of 1-8 word prefixes and 3-30 word spans from anywhere in the
text (the stream's later checks read such a window: new words plus some already shown before them) of:

- the corpus train split's rows with no positive label (their 0 and null labels are kept: a prefix of
  a row a source judged harmless for hate is harmless for hate; a null stays unknown);
- assistant-style prose with every category known 0: Python's own documentation topics
  (``pydoc_data.topics``, shipped with CPython, PSF licence: read at training time, not stored), the
  demo loop's prompts and answers (annotation/demo/loop.jsonl), the hand-written everyday chat lines
  (serving/moderation_data/everyday.txt) and story sentences (training/corpus_data/tiny_stories.txt);
  a share gets the markdown an assistant writes ("1. **...**", "- ", "### ").

Pieces of *harmful* rows are never made: "I am going to" is harmless alone, but a harmful row's
piece can already carry its harm ("I will kill"), and labelling it 0 would teach the wrong thing.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_LOOP = ROOT / "annotation" / "demo" / "loop.jsonl"
EVERYDAY = ROOT / "serving" / "moderation_data" / "everyday.txt"
STORIES = ROOT / "training" / "corpus_data" / "tiny_stories.txt"
MAX_WORDS = 8
MAX_SPAN_WORDS = 30
SPAN_SHARE = 0.35  # of the fragments: mid-text spans; the rest are prefixes
CORPUS_SHARE = 0.5  # of the fragments; the rest come from assistant-style prose
_PROSE = re.compile(r"[A-Za-z][A-Za-z ,.;:'()-]+")
MARKDOWN = ("{}", "{}", "{}", "1. **{}**", "2. {}", "- {}", "- **{}**", "**{}**", "### {}", "> {}", "{}:")


def pydoc_paragraphs(limit_chars: int = 400) -> list[str]:
    """Prose paragraphs of Python's documentation topics (no code blocks), up to ``limit_chars`` each."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a Python built without its docs
        return []
    out = []
    for key in sorted(topics):
        for block in topics[key].split("\n\n"):
            lines = [line.strip() for line in block.splitlines()]
            if not lines or any(line.startswith((">>>", "...", "*", "+", "|")) for line in lines):
                continue
            text = " ".join(lines)
            text = text.replace("**", "").replace("``", "").replace("`", "")
            words = text.split()
            prose = sum(1 for w in words if _PROSE.fullmatch(w))
            if len(words) >= 4 and prose >= 0.8 * len(words):
                out.append(text[:limit_chars])
    return out


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def prose_sources() -> list[list[str]]:
    """Assistant-style and everyday benign text the fragments are cut from, one list per source."""
    demo = []
    if DEMO_LOOP.is_file():
        for line in DEMO_LOOP.read_text().splitlines():
            record = json.loads(line)
            demo += [record["prompt"], record["demonstration"]]
    stories = [s.strip() + "." for line in _lines(STORIES) for s in line.split(".") if len(s.split()) >= 3]
    return [texts for texts in (pydoc_paragraphs(), demo + _lines(EVERYDAY), stories) if texts]


def prefix(text: str, rng: random.Random, max_words: int = MAX_WORDS) -> str:
    """The first 1..``max_words`` words of ``text`` (shorter prefixes likelier: the stream's first checks)."""
    words = text.split()
    if not words:
        return ""
    n = min(len(words), min(rng.randint(1, max_words), rng.randint(1, max_words)))
    return " ".join(words[:n])


def span(text: str, rng: random.Random, max_words: int = MAX_SPAN_WORDS) -> str:
    """A run of 3..``max_words`` words from anywhere in ``text``: what the stream's later checks read
    (the unreleased words plus some released ones before them, cut at a word boundary)."""
    words = text.split()
    n = min(len(words), rng.randint(3, max_words))
    start = rng.randint(0, len(words) - n)
    return " ".join(words[start:start + n])


def cut(text: str, rng: random.Random) -> str:
    return span(text, rng) if rng.random() < SPAN_SHARE else prefix(text, rng)


def fragment_rows(corpus_rows: list[dict], categories: list[str], count: int, seed: int) -> list[dict]:
    """``count`` benign prefix rows (corpus labels kept for corpus prefixes; all known 0 for prose)."""
    if count <= 0:
        return []
    rng = random.Random(seed)
    benign = [r for r in corpus_rows if not any(v == 1 for v in r["categories"].values())]
    prose = prose_sources()
    zeros = {c: 0 for c in categories}
    rows, seen = [], set()
    for _ in range(count * 3):
        if len(rows) >= count:
            break
        if benign and (not prose or rng.random() < CORPUS_SHARE):
            row = rng.choice(benign)
            text, labels = cut(row["text"], rng), dict(row["categories"])
        elif prose:
            text = rng.choice(MARKDOWN).format(cut(rng.choice(rng.choice(prose)), rng))
            labels = dict(zeros)
        else:
            break
        if text.strip() and text not in seen:
            seen.add(text)
            rows.append({"text": text, "categories": labels, "source": "fragment"})
    return rows

"""Scripted labelers for the demo loop: they answer and rank by rules written for this project.

The demonstrations and the keywords each good answer mentions ship in ``annotation/demo/loop.jsonl``.
A scripted labeler prefers, in this order: an answer that states the fact asked for (one of the
item's keywords), an answer without repetition, and a short answer (the guidelines ask for two to
five sentences). Those are the preferences the reward model is expected to learn.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

LOOP_FILE = Path(__file__).resolve().parents[2] / "annotation" / "demo" / "loop.jsonl"
_WORD = re.compile(r"[\w'-]+")


@dataclass(frozen=True)
class LoopItem:
    prompt: str
    demonstration: str
    keywords: tuple[str, ...]


def load_items(path: Path = LOOP_FILE) -> list[LoopItem]:
    items = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            items.append(LoopItem(row["prompt"], row["demonstration"], tuple(k.lower() for k in row["keywords"])))
    return items


def repetition(text: str) -> float:
    """Share of repeated word trigrams (0 = none repeated)."""
    words = _WORD.findall(text.lower())
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    if not trigrams:
        return 0.0
    return 1 - len(set(trigrams)) / len(trigrams)


def score(answer: str, keywords: tuple[str, ...]) -> float:
    text = answer.lower()
    words = _WORD.findall(text)
    if not words:
        return -10.0
    value = 3.0 if any(k in text for k in keywords) else 0.0
    value -= 4.0 * repetition(answer)
    value += 1.0 if len(words) <= 40 else -min(3.0, (len(words) - 40) / 20)
    return value


def rank(answers: list[str], keywords: tuple[str, ...]) -> list[list[int]]:
    """Indices of ``answers`` as tiers, best first; equal scores tie."""
    scored = sorted(((round(score(a, keywords), 3), i) for i, a in enumerate(answers)), key=lambda t: -t[0])
    tiers: list[list[int]] = []
    last = None
    for value, index in scored:
        if value == last:
            tiers[-1].append(index)
        else:
            tiers.append([index])
            last = value
    return tiers

"""Gold items: prompts with a known answer, mixed into the queues to measure each labeler.

A gold prompt's ``gold_answer`` holds ``{"ranking": [[id], ...]}`` (tiers of its completion ids) and/or
``{"text": "..."}``. A labeler's *gold accuracy* is the share of the gold's strict preferences (pairs
it puts in different tiers) that the labeler's ranking states the same way; a tie where the gold has
an order counts as a miss, and pairs the gold ties are not scored. Demonstrations on gold prompts get a
word-level similarity to the gold text (shown, not used for flagging: many good answers differ).

Labelers whose gold accuracy is under ``project.gold_threshold`` are *flagged* for the manager to look
at; nothing here drops or down-weights their labels.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import combinations
from statistics import fmean

from annotation.quality.agreement import Order, tiers_of


def gold_ranking_accuracy(order: Order, gold: Order) -> float | None:
    """Share of the gold's strict pairs the ranking orders the same way; None when the gold orders nothing shown."""
    mine, truth = tiers_of(order), tiers_of(gold)
    scored = correct = 0
    for a, b in combinations(sorted(set(mine) & set(truth)), 2):
        if truth[a] == truth[b]:
            continue
        scored += 1
        correct += (truth[a] < truth[b]) == (mine[a] < mine[b]) and mine[a] != mine[b]
    return correct / scored if scored else None


def text_similarity(text: str, gold: str) -> float:
    """Word-level similarity ratio (difflib) of an answer to the gold text, 0..1."""
    return SequenceMatcher(None, text.split(), gold.split(), autojunk=False).ratio()


@dataclass
class LabelerGold:
    user_id: int
    username: str
    rankings: int = 0
    accuracy: float | None = None
    demonstrations: int = 0
    similarity: float | None = None
    flagged: bool = False


def gold_report(project) -> list[LabelerGold]:
    """Each labeler's gold accuracy on the project, flagged ones first, then by name.

    Gold items are a small share of the labels, so their rankings are read row by row; every ranking
    on a gold prompt counts, reviewed or not, since a rejected answer on a gold item is evidence too.
    """
    from annotation.models import Demonstration, Ranking

    accuracy: dict[int, list[float]] = defaultdict(list)
    similarity: dict[int, list[float]] = defaultdict(list)
    names: dict[int, str] = {}
    rankings = Ranking.objects.filter(prompt__project=project, prompt__is_gold=True).values_list(
        "author_id", "author__username", "order", "prompt__gold_answer"
    )
    for author_id, username, order, answer in rankings.iterator(chunk_size=2000):
        gold = (answer or {}).get("ranking")
        if not gold:
            continue
        names[author_id] = username
        score = gold_ranking_accuracy(order, gold)
        if score is not None:
            accuracy[author_id].append(score)
    demos = Demonstration.objects.filter(prompt__project=project, prompt__is_gold=True).values_list(
        "author_id", "author__username", "content", "prompt__gold_answer"
    )
    for author_id, username, content, answer in demos.iterator(chunk_size=2000):
        gold_text = (answer or {}).get("text")
        if not gold_text:
            continue
        names[author_id] = username
        similarity[author_id].append(text_similarity(content, gold_text))
    report = []
    for user_id, username in names.items():
        scores, sims = accuracy.get(user_id, []), similarity.get(user_id, [])
        mean = fmean(scores) if scores else None
        report.append(LabelerGold(
            user_id=user_id, username=username, rankings=len(scores), accuracy=mean,
            demonstrations=len(sims), similarity=fmean(sims) if sims else None,
            flagged=mean is not None and mean < project.gold_threshold,
        ))
    return sorted(report, key=lambda r: (not r.flagged, r.username))


def flagged_labelers(project) -> list[LabelerGold]:
    return [row for row in gold_report(project) if row.flagged]

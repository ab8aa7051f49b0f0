"""The quality page's figures for one project: agreement, flag agreement, consensus and gold per labeler.

Agreement needs every ranking of a prompt side by side, so it reads label rows; to stay fast on a
project with 100k labels it looks at the latest ``PROMPT_LIMIT`` multiply-labelled prompts (the page
says so when it samples). Rejected rankings are left out: a reviewer already said they are wrong.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db.models import Count

from annotation.models import Ranking, ReviewState
from annotation.quality.agreement import (
    AgreementSummary,
    FlagStats,
    agreement_with_consensus,
    flag_agreement,
    ranking_agreement,
    tiers_of,
)
from annotation.quality.consensus import ranked_pairs
from annotation.quality.gold import gold_report

PROMPT_LIMIT = 1000
FLAG_CATEGORIES = ("unsafe", "factually_wrong", "not_helpful", "personal_data")


@dataclass
class QualityReport:
    summary: AgreementSummary
    flags: list[FlagStats]
    labelers: list[dict] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)
    multi_prompts: int = 0
    sampled: bool = False
    limit: int = PROMPT_LIMIT


def _multi_prompts(project, limit: int):
    """The latest ``limit`` prompts with two or more kept rankings (a subquery), and how many there are in all."""
    grouped = (
        Ranking.objects.filter(prompt__project=project).exclude(review_state=ReviewState.REJECTED)
        .values("prompt_id").annotate(n=Count("id")).filter(n__gte=2)
    )
    return grouped.order_by("-prompt_id").values("prompt_id")[:limit], grouped.count()


def labelled_set(project, *, limit: int = PROMPT_LIMIT):
    """``(items, flags, shown, total)`` of the latest ``limit`` multiply-labelled prompts (see agreement.py)."""
    prompt_ids, total = _multi_prompts(project, limit)
    items: dict[int, dict[int, list]] = defaultdict(dict)
    flags: dict[int, dict[int, dict]] = defaultdict(dict)
    shown: dict[int, dict[int, list[int]]] = defaultdict(dict)
    rows = (
        Ranking.objects.filter(prompt_id__in=prompt_ids).exclude(review_state=ReviewState.REJECTED)
        .order_by("id").values_list("prompt_id", "author_id", "order", "flags")
    )
    for prompt_id, author_id, order, given in rows.iterator(chunk_size=2000):
        tiers = tiers_of(order)  # converted once: every comparison below reuses it
        items[prompt_id][author_id] = tiers
        flags[prompt_id][author_id] = given or {}
        shown[prompt_id][author_id] = list(tiers)
    return items, flags, shown, total


def quality_report(project, *, limit: int = PROMPT_LIMIT) -> QualityReport:
    items, flags, shown, total = labelled_set(project, limit=limit)
    summary = ranking_agreement(items)
    seen_categories = {name for by in flags.values() for marks in by.values() for names in marks.values()
                       for name in names}
    categories = [*FLAG_CATEGORIES, *sorted(seen_categories - set(FLAG_CATEGORIES))]
    consensus = {pid: ranked_pairs(list(by.values())) for pid, by in items.items() if len(by) >= 2}
    with_consensus = agreement_with_consensus(items, consensus)
    gold = {row.user_id: row for row in gold_report(project)}
    user_ids = set(with_consensus) | set(gold) | {p.labeler_a for p in summary.pairs} | {p.labeler_b for p in summary.pairs}
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    labelers = []
    for user_id in sorted(user_ids, key=lambda u: names.get(u, "")):
        mine, g = with_consensus.get(user_id, {}), gold.get(user_id)
        labelers.append({
            "username": names.get(user_id, f"user {user_id}"),
            "items": mine.get("items", 0), "agreement": mine.get("agreement"), "tau": mine.get("tau"),
            "gold_items": g.rankings if g else 0, "gold_accuracy": g.accuracy if g else None,
            "gold_similarity": g.similarity if g else None, "flagged": bool(g and g.flagged),
        })
    pairs = [{"a": names.get(p.labeler_a, p.labeler_a), "b": names.get(p.labeler_b, p.labeler_b),
              "shared": p.shared_items, "agreement": p.agreement, "tau": p.tau} for p in summary.pairs]
    return QualityReport(
        summary=summary, flags=flag_agreement(flags, shown, categories), labelers=labelers, pairs=pairs,
        multi_prompts=total, sampled=total > len(items), limit=limit,
    )

"""How much labelers agree: pairwise agreement, Kendall's tau, Krippendorff's alpha, flag agreement.

Pure functions over plain data, no Django. A ranking is ``order``: a list of tiers of completion ids,
best first, ties sharing a tier (``[[3], [1, 4], [2]]``). A labelled set is
``items = {prompt_id: {labeler_id: order}}``; flags are ``{prompt_id: {labeler_id: {completion_id: [names]}}}``.

Definitions (the tests compute each one by hand):

- *pairwise agreement* of two rankings: over the pairs of completions both rank, the share on which
  they state the same relation (better, worse or tied);
- *Kendall's tau*: ``scipy.stats.kendalltau`` (tau-b, which corrects for ties) of the two tier vectors;
- *Krippendorff's alpha (ordinal)*: ``krippendorff.alpha`` with labelers as coders and every
  (prompt, completion) as a unit whose value is its tier;
- *flag agreement* per category: over units flagged-or-not by two or more labelers, the share of labeler
  pairs that agree on whether the category applies, with the nominal alpha beside it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from statistics import fmean

Order = Sequence[Sequence[int]]


def tiers_of(order: Order | Mapping[int, int]) -> Mapping[int, int]:
    """Completion id -> tier index (0 = best). A mapping is taken as already converted, so callers that
    compare one ranking many times convert it once (every function here accepts either form)."""
    if isinstance(order, Mapping):
        return order
    return {int(cid): tier for tier, ids in enumerate(order or []) for cid in ids}


def _relation(a: int, b: int) -> int:
    return (a > b) - (a < b)


def pairwise_agreement(order_a: Order, order_b: Order) -> float | None:
    """Share of shared completion pairs on which both rankings state the same relation; None if none shared."""
    ta, tb = tiers_of(order_a), tiers_of(order_b)
    shared = sorted(set(ta) & set(tb))
    pairs = list(combinations(shared, 2))
    if not pairs:
        return None
    same = sum(_relation(ta[i], ta[j]) == _relation(tb[i], tb[j]) for i, j in pairs)
    return same / len(pairs)


@lru_cache(maxsize=65536)
def _tau_of(x: tuple[int, ...], y: tuple[int, ...]) -> float | None:
    from scipy.stats import kendalltau

    tau = kendalltau(x, y).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def kendall_tau(order_a: Order, order_b: Order) -> float | None:
    """Kendall's tau-b of two rankings over their shared completions; None when undefined (all tied).

    scipy costs about a millisecond a call, and rankings of K <= 9 repeat the same few tier patterns,
    so results are cached by the pair of tier vectors (tau depends on nothing else).
    """
    ta, tb = tiers_of(order_a), tiers_of(order_b)
    shared = sorted(set(ta) & set(tb))
    if len(shared) < 2:
        return None
    return _tau_of(tuple(ta[c] for c in shared), tuple(tb[c] for c in shared))


def _alpha(value_counts: list[list[int]], level: str) -> float | None:
    """``krippendorff.alpha`` from per-unit value counts (units x values, values in order); None if undefined.

    Counts instead of a coders x units matrix: the same alpha, without a mostly-empty matrix of every
    labeler against every unit. Only units with two or more values are passed (the others are unpairable).
    """
    import krippendorff
    import numpy as np

    counts = np.array([row for row in value_counts if sum(row) >= 2], dtype=float)
    # undefined when no unit is pairable or there is nothing to disagree about (one value used in all)
    if counts.size == 0 or int((counts.sum(axis=0) > 0).sum()) < 2:
        return None
    try:
        alpha = krippendorff.alpha(value_counts=counts, level_of_measurement=level)
    except (ValueError, ZeroDivisionError):
        return None
    return None if math.isnan(alpha) else float(alpha)


def krippendorff_alpha_ordinal(items: Mapping[int, Mapping[int, Order]]) -> float | None:
    """Ordinal alpha of the tiers labelers gave, units = (prompt, completion) seen by two or more labelers."""
    units: list[list[int]] = []
    for by_labeler in items.values():
        if len(by_labeler) < 2:
            continue
        per_completion: dict[int, list[int]] = defaultdict(list)
        for order in by_labeler.values():
            for cid, tier in tiers_of(order).items():
                per_completion[cid].append(tier)
        units.extend(per_completion.values())
    if not units:
        return None
    width = 1 + max(max(tiers) for tiers in units)
    counts = []
    for tiers in units:
        row = [0] * width
        for tier in tiers:
            row[tier] += 1
        counts.append(row)
    return _alpha(counts, "ordinal")


@dataclass
class PairStats:
    """Agreement of two labelers over the prompts both ranked."""

    labeler_a: int
    labeler_b: int
    shared_items: int = 0
    agreement: float | None = None
    tau: float | None = None


def _pair_figures(items: Mapping[int, Mapping[int, Order]]):
    """Per labeler pair: shared prompts, agreements and taus (each comparison computed once)."""
    agreements: dict[tuple[int, int], list[float]] = defaultdict(list)
    taus: dict[tuple[int, int], list[float]] = defaultdict(list)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for by_labeler in items.values():
        for a, b in combinations(sorted(by_labeler), 2):
            shared[(a, b)] += 1
            agreement = pairwise_agreement(by_labeler[a], by_labeler[b])
            if agreement is not None:
                agreements[(a, b)].append(agreement)
            tau = kendall_tau(by_labeler[a], by_labeler[b])
            if tau is not None:
                taus[(a, b)].append(tau)
    return shared, agreements, taus


def labeler_pairs(items: Mapping[int, Mapping[int, Order]]) -> list[PairStats]:
    """Mean pairwise agreement and mean Kendall's tau for each pair of labelers with shared prompts."""
    shared, agreements, taus = _pair_figures(items)
    return [
        PairStats(labeler_a=a, labeler_b=b, shared_items=n,
                  agreement=fmean(agreements[(a, b)]) if agreements[(a, b)] else None,
                  tau=fmean(taus[(a, b)]) if taus[(a, b)] else None)
        for (a, b), n in sorted(shared.items())
    ]


@dataclass
class AgreementSummary:
    """Project-level figures: mean over every labeler pair on every shared prompt."""

    items: int = 0
    comparisons: int = 0
    agreement: float | None = None
    tau: float | None = None
    alpha: float | None = None
    pairs: list[PairStats] = field(default_factory=list)


def ranking_agreement(items: Mapping[int, Mapping[int, Order]]) -> AgreementSummary:
    """Pairwise agreement, Kendall's tau and ordinal alpha of a labelled set (only multiply-labelled prompts count)."""
    multi = {pid: by for pid, by in items.items() if len(by) >= 2}
    shared, agreements, taus = _pair_figures(multi)
    all_agreements = [v for values in agreements.values() for v in values]
    all_taus = [v for values in taus.values() for v in values]
    return AgreementSummary(
        items=len(multi), comparisons=len(all_agreements),
        agreement=fmean(all_agreements) if all_agreements else None,
        tau=fmean(all_taus) if all_taus else None,
        alpha=krippendorff_alpha_ordinal(multi),
        pairs=[
            PairStats(labeler_a=a, labeler_b=b, shared_items=n,
                      agreement=fmean(agreements[(a, b)]) if agreements[(a, b)] else None,
                      tau=fmean(taus[(a, b)]) if taus[(a, b)] else None)
            for (a, b), n in sorted(shared.items())
        ],
    )


@dataclass
class FlagStats:
    category: str
    units: int
    agreement: float | None
    alpha: float | None
    flagged: int


def flag_agreement(
    flags: Mapping[int, Mapping[int, Mapping[str, Iterable[str]]]],
    shown: Mapping[int, Mapping[int, Iterable[int]]],
    categories: Iterable[str],
) -> list[FlagStats]:
    """Per category, how often labelers agree on whether it applies to a completion they both saw.

    ``shown`` says which completions each labeler saw per prompt (so no flag means "judged fine");
    ``flags[prompt][labeler]`` maps a completion id (str or int) to its flag names.
    """
    units: list[list[set[str]]] = []  # per completion judged by 2+ labelers: each labeler's flag names
    for prompt_id, by_labeler in shown.items():
        if len(by_labeler) < 2:
            continue
        given = flags.get(prompt_id, {})
        per_completion: dict[int, list[set[str]]] = defaultdict(list)
        for labeler, completion_ids in by_labeler.items():
            marks = {int(k): set(v) for k, v in (given.get(labeler) or {}).items()}
            for cid in completion_ids:
                per_completion[int(cid)].append(marks.get(int(cid), set()))
        units.extend(judged for judged in per_completion.values() if len(judged) >= 2)
    stats = []
    for category in categories:
        matches = total = flagged = 0
        counts = []
        for judged in units:
            yes = sum(category in names for names in judged)
            no = len(judged) - yes
            flagged += yes
            total += len(judged) * (len(judged) - 1) // 2
            matches += yes * (yes - 1) // 2 + no * (no - 1) // 2
            counts.append([no, yes])
        stats.append(FlagStats(category=category, units=len(units), agreement=matches / total if total else None,
                               alpha=_alpha(counts, "nominal"), flagged=flagged))
    return stats


def agreement_with_consensus(
    items: Mapping[int, Mapping[int, Order]], consensus: Mapping[int, Order]
) -> dict[int, dict]:
    """Per labeler: prompts compared, mean pairwise agreement and mean tau against each prompt's consensus."""
    agreements: dict[int, list[float]] = defaultdict(list)
    taus: dict[int, list[float]] = defaultdict(list)
    for prompt_id, merged in consensus.items():
        for labeler, order in items.get(prompt_id, {}).items():
            agreement = pairwise_agreement(order, merged)
            if agreement is not None:
                agreements[labeler].append(agreement)
            tau = kendall_tau(order, merged)
            if tau is not None:
                taus[labeler].append(tau)
    return {
        labeler: {"items": len(values), "agreement": fmean(values),
                  "tau": fmean(taus[labeler]) if taus[labeler] else None}
        for labeler, values in agreements.items()
    }

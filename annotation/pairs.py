"""A ranking of K completions read as pairwise comparisons (what reward models train on).

A ranking is stored once as tiers, best first; ``[[3], [1, 4], [2]]`` expands to 3>1, 3>4, 3>2,
1>2, 4>2. Completions in one tier tie and give no pair, so a full ranking of K without ties gives
C(K, 2) pairs and every tie removes one.
"""

from __future__ import annotations


def ranking_pairs(order: list[list[int]]) -> list[tuple[int, int]]:
    """``(better, worse)`` for every two completions in different tiers, better tiers first."""
    pairs: list[tuple[int, int]] = []
    for i, tier in enumerate(order):
        for worse_tier in order[i + 1:]:
            pairs.extend((better, worse) for better in tier for worse in worse_tier)
    return pairs

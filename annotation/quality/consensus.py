"""One consensus ranking from several: ranked pairs (Tideman), the merge Open-Assistant used.

Ranked pairs is Condorcet-consistent and approximates the Kemeny ranking (the order that
disagrees with the fewest voter comparisons) without Kemeny's factorial search:

1. count, for every two completions a and b, the voters who put a strictly above b (ties count for neither);
2. sort the pairs with a winner by margin, largest first (then by winning votes, then by ids, so the
   result is deterministic);
3. lock each pair in that order unless it would close a cycle with pairs already locked;
4. read tiers off the locked graph: a completion's tier is the longest locked path that reaches it.
   Completions no locked pair separates (margin 0 both ways) share a tier: ties survive the merge.

``consensus_rankings(project)`` and ``consensus_merged(rankings)`` apply it to a project's labels; the
rest of the module is pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from itertools import combinations, groupby

from annotation.quality.agreement import Order, tiers_of


def preference_counts(orders: Iterable[Order]) -> dict[tuple[int, int], int]:
    """``counts[(a, b)]`` = voters who ranked ``a`` strictly above ``b``."""
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for order in orders:
        tiers = tiers_of(order)
        for a, b in combinations(tiers, 2):
            if tiers[a] < tiers[b]:
                counts[(a, b)] += 1
            elif tiers[b] < tiers[a]:
                counts[(b, a)] += 1
    return counts


def _reaches(edges: dict[int, set[int]], start: int, goal: int) -> bool:
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in edges[node] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return False


def ranked_pairs(orders: Sequence[Order]) -> list[list[int]]:
    """The consensus of ``orders`` (lists of tiers of ids, possibly over different subsets) as tiers, best first."""
    orders = [tiers_of(order) for order in orders]
    candidates = sorted({c for order in orders for c in order})
    counts = preference_counts(orders)
    pairs = []
    for a, b in combinations(candidates, 2):
        margin = counts[(a, b)] - counts[(b, a)]
        if margin > 0:
            pairs.append((margin, counts[(a, b)], a, b))
        elif margin < 0:
            pairs.append((-margin, counts[(b, a)], b, a))
    pairs.sort(key=lambda p: (-p[0], -p[1], p[2], p[3]))
    edges: dict[int, set[int]] = {c: set() for c in candidates}
    for _, _, winner, loser in pairs:
        if not _reaches(edges, loser, winner):
            edges[winner].add(loser)
    depth = dict.fromkeys(candidates, 0)
    incoming = {c: sum(c in edges[o] for o in candidates) for c in candidates}
    ready = [c for c in candidates if incoming[c] == 0]
    while ready:  # topological walk: the graph is acyclic by construction
        node = ready.pop()
        for nxt in edges[node]:
            depth[nxt] = max(depth[nxt], depth[node] + 1)
            incoming[nxt] -= 1
            if incoming[nxt] == 0:
                ready.append(nxt)
    tiers: dict[int, list[int]] = defaultdict(list)
    for c in candidates:
        tiers[depth[c]].append(c)
    return [sorted(tiers[d]) for d in sorted(tiers)]


def kemeny_distance(order: Order, orders: Iterable[Order]) -> int:
    """Voter comparisons ``order`` contradicts (a tie against a strict preference counts one): what Kemeny minimises."""
    mine = tiers_of(order)
    distance = 0
    for other in orders:
        theirs = tiers_of(other)
        for a, b in combinations(sorted(set(mine) & set(theirs)), 2):
            distance += ((mine[a] > mine[b]) - (mine[a] < mine[b])) != ((theirs[a] > theirs[b]) - (theirs[a] < theirs[b]))
    return distance


# --- Reads of a project's labels (Django from here on). ---

def consensus_rankings(project) -> dict[int, list[list[int]]]:
    """One consensus order per prompt ranked by two or more labelers, over the rankings eligible for training."""
    from annotation.selectors import rankings_for_training

    rows = (
        rankings_for_training(project).order_by("prompt_id", "id").values_list("prompt_id", "order")
    )
    merged = {}
    for prompt_id, group in groupby(rows.iterator(chunk_size=2000), key=lambda r: r[0]):
        orders = [order for _, order in group]
        if len(orders) >= 2:
            merged[prompt_id] = ranked_pairs(orders)
    return merged


def consensus_merged(rankings: Iterable) -> Iterator:
    """Rankings sorted by prompt in, one per prompt out: a multiply-labelled prompt's first ranking with the consensus order.

    The yielded object is the prompt's lowest-id ranking (so a snapshot keeps a real ranking id) with
    ``order`` replaced in memory by the merge of the group; it is never saved. Streams: only one
    prompt's rankings are held at a time.
    """
    for _, group in groupby(rankings, key=lambda r: r.prompt_id):
        members = list(group)
        first = members[0]
        if len(members) >= 2:
            first.order = ranked_pairs([m.order for m in members])
        yield first

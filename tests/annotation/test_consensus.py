"""Consensus rankings of constructed sets whose right answer is known."""

from itertools import permutations

from annotation.quality.consensus import consensus_merged, consensus_rankings, kemeny_distance, ranked_pairs
from tests.training import labels


def test_unanimous_voters_give_their_order():
    assert ranked_pairs([[[3], [1], [2]]] * 3) == [[3], [1], [2]]


def test_the_tennessee_capital_election():
    # The textbook example for ranked pairs: Memphis 42%, Nashville 26%, Chattanooga 15%, Knoxville 17%.
    memphis, nashville, chattanooga, knoxville = 1, 2, 3, 4
    orders = (
        [[[memphis], [nashville], [chattanooga], [knoxville]]] * 42
        + [[[nashville], [chattanooga], [knoxville], [memphis]]] * 26
        + [[[chattanooga], [knoxville], [nashville], [memphis]]] * 15
        + [[[knoxville], [chattanooga], [nashville], [memphis]]] * 17
    )
    assert ranked_pairs(orders) == [[nashville], [chattanooga], [knoxville], [memphis]]


def test_a_cycle_is_broken_at_its_weakest_pair():
    # A>B wins 5-2, B>C wins 5-2, C>A wins 4-3: locking the two strong pairs leaves A, B, C
    orders = [[[1], [2], [3]]] * 3 + [[[2], [3], [1]]] * 2 + [[[3], [1], [2]]] * 2
    merged = ranked_pairs(orders)
    assert merged == [[1], [2], [3]]
    best = min((list(map(list, zip(p, strict=True))) for p in permutations([1, 2, 3])),
               key=lambda order: kemeny_distance(order, orders))
    assert kemeny_distance(merged, orders) == kemeny_distance(best, orders), "agrees with Kemeny here"


def test_ties_survive_when_voters_split_evenly():
    assert ranked_pairs([[[1], [2], [3]], [[1], [3], [2]]]) == [[1], [2, 3]]
    assert ranked_pairs([[[1], [2, 3]], [[1], [2, 3]]]) == [[1], [2, 3]]


def test_voters_who_saw_different_subsets_are_merged():
    # 1 > 2 from one voter, 2 > 3 from another: consensus 1, 2, 3
    assert ranked_pairs([[[1], [2]], [[2], [3]]]) == [[1], [2], [3]]


def test_consensus_rankings_of_a_project_merge_only_multiply_labelled_prompts(project, bob, charlie, dave):
    shared = labels.ranked(project, bob, "Shared?", ["a", "b", "c"], [[0], [1], [2]])
    ids = [c.pk for c in shared.prompt.completions.order_by("id")]
    from annotation.models import Ranking

    Ranking.objects.create(prompt=shared.prompt, author=charlie, order=[[ids[0]], [ids[2]], [ids[1]]],
                           review_state="approved")
    Ranking.objects.create(prompt=shared.prompt, author=dave, order=[[ids[0]], [ids[1]], [ids[2]]],
                           review_state="approved")
    labels.ranked(project, bob, "Alone", ["x", "y"], [[0], [1]])
    merged = consensus_rankings(project)
    assert merged == {shared.prompt_id: [[ids[0]], [ids[1]], [ids[2]]]}

    rows = list(consensus_merged(Ranking.objects.filter(prompt__project=project).order_by("prompt_id", "id")))
    assert len(rows) == 2, "one ranking per prompt"
    assert rows[0].pk == shared.pk and rows[0].order == [[ids[0]], [ids[1]], [ids[2]]]

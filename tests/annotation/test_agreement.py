"""Agreement figures on hand-made labels, each checked against the number worked out by hand below."""

import pytest

from annotation.quality.agreement import (
    agreement_with_consensus,
    flag_agreement,
    kendall_tau,
    krippendorff_alpha_ordinal,
    pairwise_agreement,
    ranking_agreement,
)


def test_two_rankings_that_swap_one_pair_agree_on_five_of_six_pairs():
    # 4 completions -> C(4,2) = 6 pairs; only (1, 2) is stated the other way round
    assert pairwise_agreement([[1], [2], [3], [4]], [[2], [1], [3], [4]]) == pytest.approx(5 / 6)


def test_a_tie_against_a_strict_order_is_a_disagreement():
    # pairs (1,2) and (1,3) agree; (2,3) is tied in one and ordered in the other -> 2 of 3
    assert pairwise_agreement([[1], [2, 3]], [[1], [2], [3]]) == pytest.approx(2 / 3)


def test_only_completions_both_ranked_are_compared():
    # shared {1, 2}: one pair, stated the same way
    assert pairwise_agreement([[1], [2], [9]], [[1], [8], [2]]) == 1.0
    assert pairwise_agreement([[1]], [[2]]) is None


def test_kendall_tau_of_one_swap_in_four():
    # concordant 5, discordant 1, no ties: tau = (5 - 1) / 6
    assert kendall_tau([[1], [2], [3], [4]], [[2], [1], [3], [4]]) == pytest.approx(4 / 6)
    assert kendall_tau([[1], [2], [3]], [[3], [2], [1]]) == pytest.approx(-1.0)


def test_kendall_tau_b_corrects_for_ties():
    # x = tiers (0,1,1), y = (0,1,2): concordant 2, discordant 0, ties only in x: 1
    # tau_b = (2 - 0) / sqrt((3 - 1) * (3 - 0)) = 2 / sqrt(6)
    assert kendall_tau([[1], [2, 3]], [[1], [2], [3]]) == pytest.approx(2 / 6 ** 0.5)


def test_krippendorff_ordinal_alpha_by_hand():
    # Two labelers rank prompt 10 over completions 1..3 and prompt 20 over completion 4.
    # Units (prompt, completion) with tiers:   A: 0 0 1 2    B: 0 1 1 2
    #   (A ranks [[1,2],[3],[4]]: 1,2 tie at 0, 3 at 1, 4 at 2; B ranks [[1],[2,3],[4]])
    # Coincidence matrix over values {0,1,2}: o00=2, o01=o10=1, o11=2, o22=2; n0=3, n1=3, n2=2, n=8.
    # Ordinal distances d(c,k) = (sum_{g=c..k} n_g - (n_c+n_k)/2)^2: d01 = 9, d02 = 30.25, d12 = 6.25.
    # Observed: sum o*d = 2*9 = 18. Expected: sum n_c n_k d = 2*(9*9 + 6*30.25 + 6*6.25) = 600.
    # alpha = 1 - (n-1) * 18 / 600 = 1 - 126/600 = 0.79
    items = {10: {1: [[1, 2], [3], [4]], 2: [[1], [2, 3], [4]]}}
    assert krippendorff_alpha_ordinal(items) == pytest.approx(0.79)


def test_identical_rankings_have_perfect_agreement():
    items = {1: {1: [[1], [2], [3]], 2: [[1], [2], [3]]}, 2: {1: [[4], [5]], 2: [[4], [5]]}}
    summary = ranking_agreement(items)
    assert summary.agreement == 1.0 and summary.tau == pytest.approx(1.0) and summary.alpha == pytest.approx(1.0)


def test_project_summary_averages_over_labeler_pairs_and_skips_single_labels():
    items = {
        1: {1: [[1], [2], [3], [4]], 2: [[2], [1], [3], [4]], 3: [[1], [2], [3], [4]]},
        2: {1: [[5], [6]]},  # one labeler only: not an agreement item
    }
    summary = ranking_agreement(items)
    # pairs (1,2): 5/6, (1,3): 1, (2,3): 5/6 -> mean 8/9; taus 2/3, 1, 2/3 -> mean 7/9
    assert summary.items == 1 and summary.comparisons == 3
    assert summary.agreement == pytest.approx(8 / 9)
    assert summary.tau == pytest.approx(7 / 9)
    by_pair = {(p.labeler_a, p.labeler_b): p for p in summary.pairs}
    assert by_pair[(1, 3)].agreement == 1.0 and by_pair[(1, 2)].shared_items == 1


def test_flag_agreement_per_category():
    # prompt 1, completions 1 and 2 seen by labelers 7, 8, 9
    shown = {1: {7: [1, 2], 8: [1, 2], 9: [1, 2]}}
    flags = {1: {7: {"1": ["unsafe"]}, 8: {"1": ["unsafe", "factually_wrong"]}, 9: {}}}
    stats = {s.category: s for s in flag_agreement(flags, shown, ["unsafe", "factually_wrong", "not_helpful"])}
    # unsafe, completion 1: verdicts (T, T, F) -> labeler pairs agree 1 of 3; completion 2: all F -> 3 of 3
    assert stats["unsafe"].agreement == pytest.approx(4 / 6) and stats["unsafe"].units == 2
    # factually_wrong, completion 1: (F, T, F) -> 1 of 3 agree; completion 2: 3 of 3
    assert stats["factually_wrong"].agreement == pytest.approx(4 / 6)
    assert stats["not_helpful"].agreement == 1.0 and stats["not_helpful"].alpha is None  # nothing to disagree on
    assert stats["unsafe"].flagged == 2


def test_agreement_with_consensus_per_labeler():
    items = {1: {1: [[1], [2], [3]], 2: [[2], [1], [3]]}}
    consensus = {1: [[1], [2], [3]]}
    result = agreement_with_consensus(items, consensus)
    assert result[1]["agreement"] == 1.0 and result[2]["agreement"] == pytest.approx(2 / 3)
    assert result[2]["tau"] == pytest.approx(1 / 3) and result[2]["items"] == 1


def test_alpha_from_counts_equals_the_library_on_a_coders_by_units_matrix():
    import random

    import krippendorff
    import numpy as np

    rng = random.Random(3)
    items, matrix_columns = {}, []
    for prompt_id in range(30):
        ids = [prompt_id * 10 + k for k in range(4)]
        labelers = rng.sample(range(5), rng.choice((2, 3)))
        items[prompt_id] = {}
        for labeler in labelers:
            order = list(ids)
            rng.shuffle(order)
            items[prompt_id][labeler] = [[c] for c in order]
        for cid in ids:
            column = [np.nan] * 5
            for labeler in labelers:
                column[labeler] = next(t for t, tier in enumerate(items[prompt_id][labeler]) if cid in tier)
            matrix_columns.append(column)
    expected = krippendorff.alpha(reliability_data=np.array(matrix_columns).T, level_of_measurement="ordinal")
    assert krippendorff_alpha_ordinal(items) == pytest.approx(expected)

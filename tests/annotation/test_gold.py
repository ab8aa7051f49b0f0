"""Gold items measure each labeler against a known ranking; the ones under the threshold are flagged."""

import pytest

from annotation.models import Demonstration, Prompt, Ranking
from annotation.quality.gold import flagged_labelers, gold_ranking_accuracy, gold_report, text_similarity
from tests.training import labels


def test_accuracy_is_the_share_of_gold_preferences_kept():
    gold = [[1], [2], [3], [4]]  # 6 strict pairs
    assert gold_ranking_accuracy([[1], [2], [3], [4]], gold) == 1.0
    assert gold_ranking_accuracy([[2], [1], [3], [4]], gold) == pytest.approx(5 / 6)
    # a tie where gold orders counts as a miss: (1,2) tied -> 5 of 6
    assert gold_ranking_accuracy([[1, 2], [3], [4]], gold) == pytest.approx(5 / 6)
    assert gold_ranking_accuracy([[4], [3], [2], [1]], gold) == 0.0


def test_pairs_the_gold_ties_are_not_scored():
    # gold ties 2 and 3: scored pairs (1,2), (1,3) -> the labeler keeps both
    assert gold_ranking_accuracy([[1], [3], [2]], [[1], [2, 3]]) == 1.0
    assert gold_ranking_accuracy([[1], [2]], [[1, 2]]) is None


def test_text_similarity_is_one_for_the_same_words():
    assert text_similarity("Paris is the capital", "Paris is the capital") == 1.0
    assert 0 < text_similarity("Paris is the capital", "The capital is Paris") < 1


def _gold_prompt(project, text, answers):
    prompt = labels.prompt(project, text, is_gold=True)
    ids = [prompt.completions.create(text=a).pk for a in answers]
    Prompt.objects.filter(pk=prompt.pk).update(gold_answer={"ranking": [[ids[0]], [ids[1]], [ids[2]]]})
    return prompt, ids


def test_each_labeler_gets_gold_accuracy_and_those_below_the_threshold_are_flagged(project, bob, charlie):
    project.gold_threshold = 0.7
    project.save()
    g1, a = _gold_prompt(project, "Gold one", ["best", "mid", "worst"])
    g2, b = _gold_prompt(project, "Gold two", ["best", "mid", "worst"])
    # bob: perfect on both -> 1.0
    Ranking.objects.create(prompt=g1, author=bob, order=[[a[0]], [a[1]], [a[2]]])
    Ranking.objects.create(prompt=g2, author=bob, order=[[b[0]], [b[1]], [b[2]]])
    # charlie: reversed on g1 (0 of 3), one swap on g2 (2 of 3) -> mean (0 + 2/3) / 2 = 1/3
    Ranking.objects.create(prompt=g1, author=charlie, order=[[a[2]], [a[1]], [a[0]]])
    Ranking.objects.create(prompt=g2, author=charlie, order=[[b[1]], [b[0]], [b[2]]])
    # a ranking on an ordinary prompt does not count
    labels.ranked(project, charlie, "Not gold", ["x", "y"], [[0], [1]])

    report = {row.username: row for row in gold_report(project)}
    assert report["bob"].accuracy == 1.0 and report["bob"].rankings == 2 and not report["bob"].flagged
    assert report["charlie"].accuracy == pytest.approx(1 / 3) and report["charlie"].flagged
    assert [row.username for row in flagged_labelers(project)] == ["charlie"]
    assert Ranking.objects.filter(author=charlie).count() == 3, "flagging drops nothing"


def test_demonstrations_on_gold_prompts_get_a_text_similarity(project, bob):
    prompt = labels.prompt(project, "Capital of France?", is_gold=True, gold_answer={"text": "Paris is the capital"})
    Demonstration.objects.create(prompt=prompt, author=bob, content="Paris is the capital")
    (row,) = gold_report(project)
    assert row.similarity == 1.0 and row.demonstrations == 1 and row.accuracy is None and not row.flagged

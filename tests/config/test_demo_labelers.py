from config.demo_loop.labelers import load_items, rank, repetition, score


def test_the_shipped_demo_set_has_a_demonstration_and_keywords_for_every_prompt():
    items = load_items()
    assert len(items) >= 30
    for item in items:
        assert item.demonstration and item.keywords
        assert score(item.demonstration, item.keywords) > 3  # the demonstration itself ranks well


def test_a_scripted_labeler_prefers_the_fact_then_no_repetition_then_brevity():
    keywords = ("paris",)
    answers = [
        "I am not sure.",
        "The capital of France is Paris.",
        "Paris Paris Paris Paris Paris Paris Paris Paris is the the the the capital capital capital.",
        "France is a country in Europe with a long history and many cities, " * 4,
    ]
    order = rank(answers, keywords)
    assert order[0] == [1]
    assert order[-1] in ([2], [3])
    assert repetition(answers[2]) > 0.3 and repetition(answers[1]) == 0


def test_equal_answers_tie():
    assert rank(["Yes.", "Yes."], ("no",)) == [[0, 1]]

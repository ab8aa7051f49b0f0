"""Sampling K completions per prompt from a policy: counts, seeds, greedy decoding, batching."""

import json

import pytest

from training.reporting import ListReporter
from training.sampling import SamplingConfig, sample_completions
from training.sft import train_sft

PROMPTS = [
    [{"role": "user", "content": "What is 3 plus one?"}],
    [{"role": "system", "content": "Answer with a sentence."}, {"role": "user", "content": "What is 7 plus one?"}],
    [{"role": "user", "content": "What is 12 plus one?"}],
]


@pytest.fixture(scope="module")
def policy(tiny_model_dir, tmp_path_factory):
    """The tiny model after a short SFT, so greedy answers are real text rather than newlines."""
    folder = tmp_path_factory.mktemp("policy")
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                          {"role": "assistant", "content": f"{i} plus one is {i + 1}."}]} for i in range(20)]
    (folder / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    train_sft(tiny_model_dir, folder / "sft.jsonl", folder / "model",
              {"max_steps": 40, "batch_size": 4, "learning_rate": 5e-3, "max_length": 64, "eval_fraction": 0.1})
    return folder / "model"


def test_k_completions_per_prompt_with_progress_per_batch(tiny_model_dir):
    reporter = ListReporter()
    config = SamplingConfig(k=3, max_new_tokens=6, batch_size=4, temperature=1.0, top_p=0.95, seed=1)
    answers = sample_completions(tiny_model_dir, PROMPTS, config, reporter)

    assert len(answers) == 3 and all(len(a) == 3 for a in answers)
    assert all(isinstance(text, str) and text == text.strip() for a in answers for text in a)
    assert reporter.steps == [(1, 3), (2, 3), (3, 3)]  # 9 sequences in batches of 4
    assert reporter.metrics[-1]["completions"] == 9
    assert len({text for a in answers for text in a}) > 1  # sampled, not all the same


def test_the_same_seed_gives_the_same_completions_and_another_seed_others(tiny_model_dir):
    config = SamplingConfig(k=2, max_new_tokens=6, batch_size=3, temperature=1.0, seed=7)
    first = sample_completions(tiny_model_dir, PROMPTS, config)
    assert sample_completions(tiny_model_dir, PROMPTS, config) == first
    assert sample_completions(tiny_model_dir, PROMPTS, SamplingConfig(**{**config.__dict__, "seed": 8})) != first


def test_sampled_answers_of_a_trained_policy_are_non_empty_text(policy):
    answers = sample_completions(policy, PROMPTS, SamplingConfig(k=4, max_new_tokens=12, temperature=0.7))
    assert all(len(a) == 4 and all(text for text in a) for a in answers)


def test_temperature_zero_is_greedy_and_batching_with_left_padding_does_not_change_it(policy):
    config = SamplingConfig(k=3, max_new_tokens=12, temperature=0.0, batch_size=9)
    together = sample_completions(policy, PROMPTS, config)

    assert all(len(set(a)) == 1 and a[0] for a in together)
    assert "plus one is" in together[0][0]
    alone = [sample_completions(policy, [p], SamplingConfig(k=1, max_new_tokens=12, temperature=0.0))[0][0]
             for p in PROMPTS]
    assert alone == [a[0] for a in together]


def test_no_prompts_no_work_and_bad_settings_are_refused(tiny_model_dir):
    assert sample_completions(tiny_model_dir, [], SamplingConfig()) == []
    with pytest.raises(ValueError):
        SamplingConfig(k=0)
    with pytest.raises(ValueError):
        SamplingConfig(top_p=0.0)

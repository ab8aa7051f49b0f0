"""PPO end to end on the tiny Llama, against a reward model whose score is a known function.

``fraction_reward_model`` writes a real ``AutoModelForSequenceClassification`` folder (the production
loading and scoring path) whose weights are set by hand: every token embeds as (+1 or -1, 1, ..., 1)
(+1 for even ids), the first layer's attention is uniform (zero queries and keys) and copies the sign
channel, everything else is zero. The score at the last token is then a strictly increasing
function of the mean sign of all tokens of chat_template(prompt + answer): answers made of even-id
tokens are better. A fresh tiny policy samples almost uniformly, so PPO has something to learn.
"""

import json
import math

import pytest
import torch

from training.ppo import PPOConfig, train_ppo
from training.ppo_rollout import answer_mask, reward_model_scores
from training.reporting import ListReporter, TrainingDiverged

PROMPTS = ["Write a short poem about the sea.", "What is the capital of France?", "Explain photosynthesis simply.",
           "How do I sort a list in Python?", "Say hello.", "Name a colour.", "Count to five.", "Tell a joke."]
GAIN = 4.0
FAST = dict(batch_size=8, mini_batch_size=4, max_new_tokens=16, learning_rate=3e-3, checkpoint_every=100)


def fraction_reward_model(tiny_dir, out, *, nan=False):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_dir, num_labels=1, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        for name, p in rm.named_parameters():
            p.fill_(1.0 if "norm" in name else 0.0)
        emb = rm.model.embed_tokens.weight
        emb[:, 1:] = 1.0
        emb[:, 0] = torch.where(torch.arange(emb.shape[0]) % 2 == 0, 1.0, -1.0)
        attention = rm.model.layers[0].self_attn
        attention.v_proj.weight[0, 0] = 1.0  # value channel 0 = sign of the token
        attention.o_proj.weight[0, 0] = GAIN  # residual dim 0 += GAIN * mean sign so far
        rm.score.weight[0, 0] = math.nan if nan else 1.0
    rm.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def expected_score(tok, prompt, answer):
    text = tok.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False)
    signs = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in tok(text, add_special_tokens=False)["input_ids"]])
    x = signs[-1] + GAIN * signs.mean()
    return (x / torch.sqrt((x**2 + 63) / 64)).item()  # the final RMSNorm over (x, 1, ..., 1)


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p}], "prompt_id": i}) + "\n"
                               for i, p in enumerate(PROMPTS)))
    sft = root / "sft.jsonl"
    sft.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p}, {
        "role": "assistant", "content": "The capital of France is Paris."}]}) + "\n" for p in PROMPTS))
    return {"root": root, "policy": tiny_model_dir, "rm": fraction_reward_model(tiny_model_dir, root / "rm"),
            "prompts": prompts, "sft": sft}


def run(setup, name, reporter=None, **config):
    out = setup["root"] / name
    kwargs = {k: config.pop(k) for k in ("resume_from", "checkpoint_dir", "sft_data_path") if k in config}
    result = train_ppo(setup["policy"], setup["rm"], setup["prompts"], out, PPOConfig(**(FAST | config)),
                       reporter or ListReporter(), **kwargs)
    return out, result


def mean(values):
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def beta_runs(setup):
    """The same 16 iterations with a fixed beta of 0 and of 1."""
    free = run(setup, "free", iterations=16, init_kl_coef=0.0, adaptive_kl=False)[1]
    held = run(setup, "held", iterations=16, init_kl_coef=1.0, adaptive_kl=False)[1]
    return free["iterations"], held["iterations"]


def test_the_reward_model_scores_the_known_function(setup):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(setup["rm"])
    rm = AutoModelForSequenceClassification.from_pretrained(setup["rm"], num_labels=1)
    prompt = [{"role": "user", "content": "Say hello."}]
    answers = ["hello", "the quick brown fox", "0 2 4 6 8 a"]
    scores = reward_model_scores(rm, tok, [prompt] * 3, answers, max_length=1024, batch_size=2)
    assert scores.tolist() == pytest.approx([expected_score(tok, prompt, a) for a in answers], abs=1e-4)


def test_answers_end_at_their_first_stop_token():
    responses = torch.tensor([[5, 7, 2, 0, 0], [5, 6, 7, 8, 9], [2, 2, 2, 2, 2]])
    assert answer_mask(responses, [2]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_reward_rises_while_kl_stays_finite(beta_runs):
    free, _ = beta_runs
    rewards, kls = [p["reward"] for p in free], [p["kl"] for p in free]
    assert mean(rewards[-4:]) > mean(rewards[:4]) + 0.3, rewards
    assert kls[0] == pytest.approx(0.0, abs=1e-5)  # policy == reference before the first update
    assert all(math.isfinite(k) and k > -0.5 for k in kls), kls
    assert max(kls) < 50
    for point in free:
        assert set(point) >= {"iteration", "reward", "kl", "entropy", "clip_fraction", "value_loss", "policy_loss",
                              "beta"}
        assert 0.0 <= point["clip_fraction"] <= 1.0 and point["entropy"] > 0


def test_a_large_kl_coefficient_keeps_the_policy_closer_to_the_reference(beta_runs):
    free, held = beta_runs
    assert all(p["beta"] == 1.0 for p in held)
    assert mean([p["kl"] for p in held[-6:]]) < 0.5 * mean([p["kl"] for p in free[-6:]])


def test_one_iteration_updates_the_policy_and_saves_a_plain_causal_lm(setup):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reporter = ListReporter()
    out, result = run(setup, "one", reporter, iterations=1)
    before = AutoModelForCausalLM.from_pretrained(setup["policy"])
    after = AutoModelForCausalLM.from_pretrained(out)
    changed = [n for n, p in after.named_parameters() if not torch.equal(p, before.state_dict()[n])]
    assert changed
    assert not (out / "value_head.safetensors").exists()
    assert AutoTokenizer.from_pretrained(out)("hello")["input_ids"]
    assert reporter.steps == [(1, 1)]
    assert set(reporter.metrics[0]) >= {"reward", "kl", "entropy", "clip_fraction", "value_loss", "policy_loss", "beta"}
    assert result["final_reward"] == result["iterations"][0]["reward"]


def test_a_diverging_update_raises_naming_the_iteration(setup):
    with pytest.raises(TrainingDiverged, match=r"at iteration 1\b"):
        run(setup, "nan", iterations=3, learning_rate=1e30)


def test_a_nan_reward_model_score_raises(setup, tmp_path):
    setup = setup | {"rm": fraction_reward_model(setup["policy"], tmp_path / "nan-rm", nan=True)}
    with pytest.raises(TrainingDiverged, match="reward-model score became nan at iteration 1"):
        run(setup, "nan-rm", iterations=2)


def test_resume_continues_at_the_checkpointed_iteration_and_repeats_the_run(setup, tmp_path):
    reporter = ListReporter()
    _, full = run(setup, "full", reporter, iterations=4, checkpoint_every=2, checkpoint_dir=tmp_path / "ckpt")
    assert [step for _, step in reporter.checkpoints] == [2]
    checkpoint = reporter.checkpoints[0][0]
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 2 and len(state["history"]) == 2 and "value" in state["kl_controller"]

    resumed_reporter = ListReporter()
    _, resumed = run(setup, "resumed", resumed_reporter, iterations=4, checkpoint_every=2, resume_from=checkpoint)
    assert [step for step, _ in resumed_reporter.steps] == [3, 4]
    assert resumed["resumed_from_iteration"] == 2
    assert [p["iteration"] for p in resumed["iterations"]] == [1, 2, 3, 4]
    for a, b in zip(full["iterations"], resumed["iterations"], strict=True):
        assert b["reward"] == pytest.approx(a["reward"], abs=1e-4)
        assert b["kl"] == pytest.approx(a["kl"], abs=1e-3)


def test_ptx_term_keeps_the_sft_likelihood_higher(setup):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.chat_data import collate, read_conversations, summed_token_loss, tokenize_all

    common = dict(iterations=3, learning_rate=1e-2, init_kl_coef=0.0, adaptive_kl=False)
    plain, _ = run(setup, "no-ptx", **common)
    mixed, result = run(setup, "ptx", ptx_coef=1.0, sft_data_path=setup["sft"], **common)
    assert all(p["ptx_loss"] > 0 for p in result["iterations"])

    def sft_nll(folder):
        tok = AutoTokenizer.from_pretrained(folder)
        examples, _ = tokenize_all(tok, read_conversations(setup["sft"]), 512)
        with torch.no_grad():
            total, count = summed_token_loss(AutoModelForCausalLM.from_pretrained(folder),
                                             collate(examples, tok.pad_token_id))
        return total.item() / count

    assert sft_nll(mixed) < sft_nll(plain) - 0.5


def test_config_defaults_build_through_the_stage_registry():
    from training.errors import TrainingError
    from training.models import RunKind
    from training.stage_configs import config_build, config_defaults

    defaults = config_defaults(RunKind.PPO)
    assert defaults["max_new_tokens"] == 48 and 1e-6 <= defaults["learning_rate"] <= 1e-5
    assert config_build(RunKind.PPO, {"iterations": 3, "ptx_snapshot": 7}).iterations == 3
    with pytest.raises(TrainingError, match="unknown"):
        config_build(RunKind.PPO, {"iteratons": 3})
    with pytest.raises(TrainingError):
        config_build(RunKind.PPO, {"score_normalization": "sometimes"})


def test_training_log_probs_are_those_of_the_sampler(tiny_model_dir):
    """The forward pass PPO trains on scores the answers exactly as ``generate`` drew them (left padding,
    temperature), so the importance ratios start at 1."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.ppo_loss import logprobs_from_logits
    from training.ppo_rollout import answer_forward, encode_prompts, pad_id, stop_token_ids

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    query, query_mask = encode_prompts(tok, [[{"role": "user", "content": p}] for p in PROMPTS[:3]], 256)
    assert query_mask[:, 0].tolist().count(0) >= 1  # some rows are left-padded
    torch.manual_seed(0)
    out = model.generate(input_ids=query, attention_mask=query_mask, do_sample=True, temperature=0.7, top_k=0,
                         max_new_tokens=8, pad_token_id=pad_id(tok), eos_token_id=stop_token_ids(model, tok),
                         output_scores=True, return_dict_in_generate=True)
    answers = out.sequences[:, query.shape[1]:]
    mask = answer_mask(answers, stop_token_ids(model, tok))
    sampled = torch.stack([torch.log_softmax(s, -1) for s in out.scores], 1).gather(-1, answers[..., None])[..., 0]
    with torch.no_grad():
        logits, _ = answer_forward(model, out.sequences, torch.cat([query_mask, mask.long()], 1), query.shape[1], 0.7)
    assert ((logprobs_from_logits(logits, answers) - sampled).abs() * mask).max() < 1e-4

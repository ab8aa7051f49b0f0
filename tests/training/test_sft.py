"""SFT on the tiny model: the loss falls on assistant tokens only, packing, LoRA, resume, divergence."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.chat_data import (
    IGNORE_INDEX,
    pack_examples,
    read_conversations,
    tokenize_all,
    tokenize_conversation,
)
from training.reporting import ListReporter, TrainingDiverged
from training.sft import SFTConfig, evaluate, split_examples, train_sft

QUICK = {"max_steps": 16, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 3e-3, "eval_fraction": 0.2,
         "max_length": 64, "warmup_ratio": 0.1, "checkpoint_every": 0}


def transcripts(n=20):
    return [{"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                          {"role": "assistant", "content": f"{i} plus one is {i + 1}."}]} for i in range(n)]


@pytest.fixture
def parent(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "parent")


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in transcripts()) + "\n")
    return path


def test_only_assistant_tokens_are_trained_on(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 plus one?"},
                {"role": "assistant", "content": "3."}, {"role": "user", "content": "And 3 plus one?"},
                {"role": "assistant", "content": "4."}]
    example = tokenize_conversation(tokenizer, messages, max_length=512)

    trained = tokenizer.decode([t for t, label in zip(example.input_ids, example.labels, strict=True)
                                if label != IGNORE_INDEX])
    assert trained == "3.<|im_end|>\n4.<|im_end|>\n"
    assert tokenizer.decode(example.input_ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    user_turn = tokenizer("What is 2 plus one?", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(example.input_ids)) if example.input_ids[i:i + len(user_turn)] == user_turn)
    assert set(example.labels[start:start + len(user_turn)]) == {IGNORE_INDEX}
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(example.input_ids, example.labels, strict=True))


def test_a_transcript_cut_before_its_answer_is_dropped(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    long_question = [{"role": "user", "content": "why " * 100}, {"role": "assistant", "content": "because"}]
    examples, dropped = tokenize_all(tokenizer, [long_question, transcripts(1)[0]["messages"]], max_length=32)
    assert dropped == 1 and len(examples) == 1 and len(examples[0].input_ids) <= 32


def test_packing_keeps_every_token_and_trains_no_token_across_examples(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples, _ = tokenize_all(tokenizer, [row["messages"] for row in transcripts(10)], max_length=64)
    blocks = pack_examples(examples, block_size=96)

    assert all(len(b.input_ids) <= 96 for b in blocks) and len(blocks) < len(examples)
    def flat(items, attribute):
        return [token for item in items for token in getattr(item, attribute)]

    assert flat(blocks, "input_ids") == flat(examples, "input_ids")
    # an example's first token is never a target (alone it has nothing before it)
    assert flat(blocks, "labels") == [t for e in examples for t in [-100, *e.labels[1:]]]


def test_the_held_out_split_is_by_prompt(tmp_path):
    rows = [[{"role": "user", "content": f"Question {i % 5}?"}, {"role": "assistant", "content": f"Answer {i}."}]
            for i in range(20)]
    train, held_out = split_examples(rows, 0.2, seed=3)
    train_prompts = {r[0]["content"] for r in train}
    held_out_prompts = {r[0]["content"] for r in held_out}
    assert held_out and not train_prompts & held_out_prompts
    assert len(held_out) == 4 and len(train) == 16  # one of five prompts, all four of its answers


def test_sft_lowers_train_and_eval_loss_and_saves_the_trained_model(parent, data, tmp_path):
    reporter = ListReporter()
    metrics = train_sft(parent, data, tmp_path / "out", QUICK, reporter)

    assert metrics["steps"] == 16 and [s for s, _ in reporter.steps] == list(range(1, 17))
    assert metrics["train_loss"] < 0.7 * metrics["train_loss_first"]
    assert metrics["eval_loss"] < 0.7 * metrics["eval_loss_initial"]
    assert metrics["eval_examples"] == 4 and metrics["train_examples"] == 16 and metrics["world_size"] == 1
    assert metrics["tokens_per_second"] > 0 and "eval_loss" in reporter.metrics[-1]
    # The saved folder is the trained model: its held-out loss is the one the run reported.
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    _, held_out = split_examples(read_conversations(data), 0.2, 0)
    examples, _ = tokenize_all(tokenizer, held_out, 64)
    assert evaluate(model, examples, 2, tokenizer.pad_token_id) == pytest.approx(metrics["eval_loss"], rel=1e-5)


def test_packed_sft_learns_too(parent, data, tmp_path):
    metrics = train_sft(parent, data, tmp_path / "out", SFTConfig(**QUICK | {"packing": True, "max_length": 96}))
    assert metrics["sequences"] < metrics["train_examples"]
    assert metrics["eval_loss"] < 0.8 * metrics["eval_loss_initial"]


def test_lora_saves_merged_weights_that_differ_from_the_parent(parent, data, tmp_path):
    before = load_file(parent / "model.safetensors")
    metrics = train_sft(parent, data, tmp_path / "out", QUICK | {"lora": True, "lora_r": 4, "learning_rate": 1e-2})

    out = tmp_path / "out"
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    after = model.state_dict()
    assert not any("lora" in name for name in after)
    changed = [name for name, w in before.items() if name in after and not torch.equal(w, after[name])]
    assert any("q_proj" in name for name in changed)
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])  # frozen
    assert torch.equal(load_file(parent / "model.safetensors")["model.norm.weight"], before["model.norm.weight"])
    assert metrics["eval_loss"] < metrics["eval_loss_initial"]


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resuming_from_a_checkpoint_continues_at_its_step_on_the_same_trajectory(parent, data, tmp_path, lora):
    # LoRA dropout draws random masks: the checkpoint must carry the random state to replay them.
    config = QUICK | {"max_steps": 6, "checkpoint_every": 3, "lora": lora, "lora_dropout": 0.3}
    whole = ListReporter()
    train_sft(parent, data, tmp_path / "whole", config, whole, checkpoint_dir=tmp_path / "ck")
    (path, step), = whole.checkpoints
    assert step == 3 and path == tmp_path / "ck" / "step-3"
    assert json.loads((path / "trainer_state.json").read_text())["step"] == 3
    assert (path / "optimizer.pt").is_file()

    resumed = ListReporter()
    metrics = train_sft(parent, data, tmp_path / "resumed", config, resumed, resume_from=path,
                        checkpoint_dir=tmp_path / "ck2")
    assert metrics["resumed_from_step"] == 3 and metrics["steps"] == 6
    assert [s for s, _ in resumed.steps] == [4, 5, 6]
    for a, b in zip(whole.metrics[3:], resumed.metrics, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "resumed") is not None


def test_a_diverging_run_stops_with_the_step_named(parent, data, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"SFT (loss|gradient norm) became (nan|inf) at step [1-4]\b"):
        train_sft(parent, data, tmp_path / "out", QUICK | {"learning_rate": 1e30, "max_steps": 4})
    assert not (tmp_path / "out").exists()


def test_unknown_settings_and_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="learnig_rate"):
        SFTConfig.from_dict({"learnig_rate": 1.0})
    with pytest.raises(ValueError, match="lr_scheduler"):
        SFTConfig(lr_scheduler="exponential")
    assert math.isclose(SFTConfig().learning_rate, 1e-5)


@pytest.mark.slow
def test_lora_sft_of_the_real_base_model_loads_and_samples(real_base, tmp_path):
    from training.sampling import SamplingConfig, sample_completions

    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in transcripts(8)))
    config = SFTConfig(lora=True, max_steps=2, batch_size=2, max_length=96, eval_fraction=0.25, learning_rate=2e-4)
    metrics = train_sft(real_base, data, tmp_path / "out", config)

    assert math.isfinite(metrics["eval_loss"]) and math.isfinite(metrics["train_loss"])
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out") is not None
    answers = sample_completions(tmp_path / "out", [[{"role": "user", "content": "What is 5 plus one?"}]],
                                 SamplingConfig(k=2, max_new_tokens=8, seed=0))
    assert len(answers) == 1 and len(answers[0]) == 2 and all(isinstance(a, str) for a in answers[0])

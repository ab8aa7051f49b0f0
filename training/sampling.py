"""K completions per prompt from a policy: batched, left-padded generation, seeded per batch.

Each prompt is rendered with the chat template and its generation prompt, repeated K times
(rather than ``num_return_sequences``, so greedy decoding at temperature 0 works the same way) and
generated in batches of ``batch_size`` sequences. Only the new tokens are decoded, special tokens
skipped, whitespace stripped. Generation stops at EOS and at the chat template's end-of-turn token.
The field names ``k``, ``temperature``, ``top_p`` and ``max_new_tokens`` are the project's sampling
settings (``training.services.sampling_defaults``). No Django here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from training.reporting import NullReporter, Reporter

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>")


@dataclass
class SamplingConfig:
    k: int = 4
    temperature: float = 0.7  # 0 = greedy (then the K answers are identical)
    top_p: float = 0.9
    max_new_tokens: int = 128
    batch_size: int = 8  # sequences generated at once (prompts x K)
    max_prompt_tokens: int = 1024  # longer prompts keep their end (the latest turns)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("k, batch_size and max_new_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


def load_policy(policy_dir: Path):
    """(model, tokenizer) ready for batched generation: float32, eval mode, left padding."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def stop_token_ids(model, tokenizer) -> list[int]:
    """EOS of the model and tokenizer plus the end-of-turn marker of the chat template, if the vocab has one."""
    ids = set()
    configured = model.generation_config.eos_token_id
    ids.update(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    return sorted(ids)


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list[list[dict]], config: SamplingConfig, seed: int) -> list[str]:
    """One completion per prompt in ``prompts`` (one batch), decoded from the new tokens only."""
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                       truncation=True, max_length=config.max_prompt_tokens)
    sample = config.temperature > 0
    options = {"do_sample": True, "temperature": config.temperature, "top_p": config.top_p, "top_k": 0} if sample \
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        output = model.generate(
            **inputs, max_new_tokens=config.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=stop_token_ids(model, tokenizer), **options,
        )
    new_tokens = output[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def sample_completions(
    policy_dir: Path, prompts: list[list[dict]], config: SamplingConfig, reporter: Reporter = NullReporter()
) -> list[list[str]]:
    """``config.k`` completions for each prompt (a list of chat messages), in prompt order."""
    if isinstance(config, dict):
        config = SamplingConfig(**config)
    if not prompts:
        return []
    reporter.phase("loading model")
    model, tokenizer = load_policy(Path(policy_dir))
    requests = [index for index in range(len(prompts)) for _ in range(config.k)]
    batches = [requests[i : i + config.batch_size] for i in range(0, len(requests), config.batch_size)]
    answers: list[list[str]] = [[] for _ in prompts]
    reporter.phase(f"generating the first batch of {len(batches)}")
    for number, batch in enumerate(batches):
        texts = generate_texts(model, tokenizer, [prompts[i] for i in batch], config, config.seed + number)
        for index, text in zip(batch, texts, strict=True):
            answers[index].append(text)
        reporter.progress(number + 1, len(batches), {"completions": sum(len(a) for a in answers)})
    return answers

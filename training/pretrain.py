"""Pre-training a decoder-only model on a plain-text corpus, from scratch or continued.

From scratch: a byte-level BPE tokenizer is trained on the corpus (with SmolLM2's ChatML special
tokens and chat template, so SFT can start from the result) and a small Llama is built from a
config. Continued: the model and tokenizer of ``init_dir`` are trained further. Either way:
next-token loss on packed blocks, AdamW with a cosine schedule after warm-up, validation
perplexity next to the unigram baseline, self-describing checkpoints, and resume.

The global batch is split over processes under ``torchrun``: each rank takes every
``world_size``-th sequence of the same global batch and gradients are averaged, so one process
and N processes follow the same trajectory up to float rounding.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch

from training.checkpoint_io import torch_save
from training.distributed import all_reduce_sum, autocast, average_gradients, barrier, device, world
from training.pretrain_config import PretrainConfig
from training.reporting import NullReporter, Reporter, TrainingDiverged


def read_documents(corpus_path: Path) -> list[str]:
    return [line.strip() for line in Path(corpus_path).read_text(encoding="utf-8").splitlines() if line.strip()]


def split_documents(docs: list[str], eval_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(docs) * eval_fraction)) if len(docs) > 1 else 0
    eval_ids = set(order[:n_eval])
    train = [d for i, d in enumerate(docs) if i not in eval_ids]
    return train, [d for i, d in enumerate(docs) if i in eval_ids]


def train_tokenizer(texts: list[str], vocab_size: int):
    from training.tiny import build_tokenizer

    return build_tokenizer(texts, vocab_size=vocab_size)


def pack(tokenizer, docs: list[str], block_size: int) -> torch.Tensor:
    """Concatenate documents separated by EOS and cut into blocks of ``block_size`` tokens."""
    ids: list[int] = []
    for doc in docs:
        ids.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    n_blocks = len(ids) // block_size
    if n_blocks == 0:
        raise ValueError(f"the corpus has {len(ids)} tokens, fewer than one block of {block_size}")
    return torch.tensor(ids[: n_blocks * block_size]).view(n_blocks, block_size)


def unigram_perplexity(train_blocks: torch.Tensor, eval_blocks: torch.Tensor, vocab_size: int) -> float:
    """Perplexity of an add-one unigram model from the training tokens, on the eval targets."""
    counts = Counter(train_blocks[:, 1:].reshape(-1).tolist())
    total = sum(counts.values()) + vocab_size
    targets = eval_blocks[:, 1:].reshape(-1).tolist()
    nll = -sum(math.log((counts.get(t, 0) + 1) / total) for t in targets) / len(targets)
    return math.exp(nll)


def lr_at(step: int, config: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.learning_rate * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def batch_indices(step: int, n_blocks: int, batch_size: int, seed: int) -> list[int]:
    """The global batch of ``step``: a fixed permutation per epoch, so resume replays the same data.

    Always ``batch_size`` blocks (a corpus of fewer blocks is cycled), so every rank gets an equal,
    non-empty share."""
    per_epoch = max(1, n_blocks // batch_size)
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return [order[(offset * batch_size + i) % n_blocks] for i in range(batch_size)]


def optimizer_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices (>= 2-D: linear and embedding weights) only, never on
    norm weights or biases, whose decay towards 0 would fight the normalisation they implement."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def build_model(tokenizer, config: PretrainConfig):
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.n_embd,
        intermediate_size=config.n_embd * 4,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_head,
        max_position_embeddings=config.block_size,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return model


@torch.no_grad()
def evaluate(model, blocks: torch.Tensor, batch_size: int) -> float:
    """Mean next-token loss over ``blocks``, summed over processes (each takes its share)."""
    rank, size = world()
    model.eval()
    loss_sum, count = 0.0, 0
    mine = blocks[rank::size]
    where = next(model.parameters()).device
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size].to(where)
        with autocast():
            out = model(input_ids=chunk, labels=chunk)  # the model shifts labels by one itself
        n = chunk[:, 1:].numel()
        loss_sum += out.loss.item() * n
        count += n
    model.train()
    total_loss, total_count = all_reduce_sum([loss_sum, float(count)])
    return total_loss / max(1.0, total_count)


def _save_checkpoint(path: Path, model, tokenizer, optimizer, step: int, config: PretrainConfig, history: list) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    torch_save(optimizer.state_dict(), path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"step": step, "config": asdict(config), "history": history}))


def pretrain(
    corpus_path: Path,
    out_dir: Path,
    config: PretrainConfig | dict,
    reporter: Reporter = NullReporter(),
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
    init_dir: Path | None = None,
) -> dict:
    """Train on ``corpus_path`` and save a causal LM + tokenizer folder to ``out_dir``; returns metrics."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(config, dict):
        config = PretrainConfig.from_dict(config)
    rank, size = world()
    if config.batch_size % size:
        raise ValueError(f"batch_size {config.batch_size} does not split over {size} processes")
    torch.manual_seed(config.seed)
    out_dir, started = Path(out_dir), time.time()
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
    init_dir = Path(init_dir) if init_dir else None
    train_docs, eval_docs = split_documents(read_documents(corpus_path), config.eval_fraction, config.seed)

    start_step, history = 0, []
    if resume_from is not None:
        resume_from = Path(resume_from)
        tokenizer = AutoTokenizer.from_pretrained(resume_from)
        model = AutoModelForCausalLM.from_pretrained(resume_from, dtype=torch.float32)
        state = json.loads((resume_from / "trainer_state.json").read_text())
        start_step, history = state["step"], state["history"]
    elif config.from_scratch or init_dir is None:
        tok_dir = (checkpoint_dir or out_dir.parent / f".{out_dir.name}-work") / "tokenizer"
        if rank == 0:
            train_tokenizer(train_docs, config.vocab_size).save_pretrained(tok_dir)
        barrier()
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        model = build_model(tokenizer, config)
    else:
        tokenizer = AutoTokenizer.from_pretrained(init_dir)
        model = AutoModelForCausalLM.from_pretrained(init_dir, dtype=torch.float32)

    model.to(device())
    train_blocks = pack(tokenizer, train_docs, config.block_size)
    eval_blocks = pack(tokenizer, eval_docs, config.block_size)
    baseline = unigram_perplexity(train_blocks, eval_blocks, len(tokenizer))
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, config.weight_decay), lr=config.learning_rate, betas=(0.9, 0.95)
    )
    if resume_from is not None:
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=True))
    initial_eval = evaluate(model, eval_blocks, config.batch_size) if start_step == 0 else history[0]["val_loss"]
    if start_step == 0:
        history.append({"step": 0, "val_loss": initial_eval})
    model.train()
    tokens = 0
    for step in range(start_step, config.max_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        batch = train_blocks[batch_indices(step, len(train_blocks), config.batch_size, config.seed)][rank::size]
        batch = batch.to(device())
        with autocast():
            loss = model(input_ids=batch, labels=batch).loss
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"pre-training loss became {loss.item()} at step {step + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(model)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(f"pre-training gradient norm became {grad_norm} at step {step + 1}")
        optimizer.step()
        tokens += batch.numel() * size
        (mean_loss,) = all_reduce_sum([loss.item() / size])
        done = step + 1
        point = {"loss": round(mean_loss, 5), "lr": lr_at(step, config)}
        if done % config.eval_every == 0 or done == config.max_steps:
            val = evaluate(model, eval_blocks, config.batch_size)
            point |= {"val_loss": round(val, 5), "val_perplexity": round(math.exp(val), 3)}
            history.append({"step": done, "val_loss": val})
        if rank == 0:
            reporter.progress(done, config.max_steps, point)
            if checkpoint_dir is not None and done % config.checkpoint_every == 0 and done < config.max_steps:
                path = Path(checkpoint_dir) / f"step-{done}"
                _save_checkpoint(path, model, tokenizer, optimizer, done, config, history)
                reporter.checkpoint(path, done)
        barrier()

    final_val = history[-1]["val_loss"]
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
    barrier()
    elapsed = time.time() - started
    return {
        "steps": config.max_steps,
        "resumed_from_step": start_step,
        "world_size": size,
        "val_loss": final_val,
        "val_perplexity": math.exp(final_val),
        "val_perplexity_initial": math.exp(initial_eval),
        "unigram_perplexity": baseline,
        "tokens": tokens,
        "tokens_per_second": tokens / elapsed if elapsed else 0.0,
        "device": str(device()),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


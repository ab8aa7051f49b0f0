"""Supervised fine-tuning of a causal LM on chat transcripts, loss on the assistant's tokens only.

Our own PyTorch loop rather than TRL's ``SFTTrainer``: on this CPU it is faster for the same
batches (``bench/sft_throughput.py`` measures both), it is small enough to read in one sitting, and
it shares checkpoints, resume and multi-process training with ``training/pretrain.py``.

Full fine-tuning by default; ``lora=True`` trains LoRA adapters (peft) and saves the merged weights,
so every version folder opens with ``AutoModelForCausalLM.from_pretrained``. A seeded held-out
split of whole examples gives ``eval_loss`` before and after training.

Under ``torchrun`` each rank takes every ``world_size``-th sequence of the same global batch; every
rank divides its summed token loss by the token count of the *global* batch and gradients are
averaged, so one process and N processes follow the same trajectory up to float rounding.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from training.chat_data import (
    IGNORE_INDEX,
    Example,
    collate,
    pack_examples,
    pad_id,
    read_conversations,
    summed_token_loss,
    tokenize_all,
)
from training.checkpoint_io import torch_save
from training.distributed import all_reduce_sum, autocast, average_gradients, barrier, device, world
from training.reporting import NullReporter, Reporter, TrainingDiverged


@dataclass
class SFTConfig:
    epochs: float = 2.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 8  # sequences per optimizer step, over all processes
    micro_batch_size: int = 2  # sequences per forward pass in one process (gradient accumulation)
    max_length: int = 512
    packing: bool = False
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"  # cosine | linear | constant
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_fraction: float = 0.1
    eval_every: int = 0  # steps; 0 = only before and after training
    checkpoint_every: int = 50
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # or comma-separated module names
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> SFTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SFT setting(s): {', '.join(unknown)}")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.lr_scheduler not in ("cosine", "linear", "constant"):
            raise ValueError(f"lr_scheduler must be cosine, linear or constant, not {self.lr_scheduler!r}")
        if self.batch_size < 1 or self.micro_batch_size < 1 or self.max_length < 2:
            raise ValueError("batch_size and micro_batch_size must be >= 1 and max_length >= 2")


def prompt_key(messages: list[dict]) -> str:
    """What a transcript answers: every turn before its last (assistant) one."""
    return json.dumps(messages[:-1], sort_keys=True, ensure_ascii=False)


def split_examples(items: list, eval_fraction: float, seed: int, key=prompt_key) -> tuple[list, list]:
    """A seeded split by prompt, as the reward model splits: two answers to one prompt are never on
    both sides, so the held-out loss is measured on prompts the model has not been trained on."""
    groups = list(dict.fromkeys(key(x) for x in items))
    order = list(range(len(groups)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(groups) * eval_fraction)) if len(groups) > 1 and eval_fraction > 0 else 0
    held_out = {groups[i] for i in order[:n_eval]}
    return [x for x in items if key(x) not in held_out], [x for x in items if key(x) in held_out]


def total_steps(n_train: int, config: SFTConfig) -> int:
    if config.max_steps > 0:
        return config.max_steps
    return max(1, math.ceil(config.epochs * max(1, n_train // config.batch_size)))


def lr_at(step: int, total: int, config: SFTConfig) -> float:
    """Linear warm-up over ``warmup_ratio`` of the steps, then cosine/linear decay to ``min_lr_ratio``."""
    warmup = math.ceil(config.warmup_ratio * total)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    if config.lr_scheduler == "constant":
        return config.learning_rate
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if config.lr_scheduler == "cosine" else 1 - progress
    return config.learning_rate * (config.min_lr_ratio + (1 - config.min_lr_ratio) * shape)


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """The global batch of ``step``: one seeded permutation per epoch, so a resumed run replays the same data."""
    per_epoch = max(1, n // batch_size)
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return order[offset * batch_size : (offset + 1) * batch_size]


def _micro_batches(examples: list[Example], size: int) -> list[list[Example]]:
    return [examples[i : i + size] for i in range(0, len(examples), size)]


def _step_loss(model, mine: list[Example], global_tokens: int, config: SFTConfig, pad: int, size: int) -> float:
    """Forward/backward this rank's share; returns the share's summed token loss (for logging)."""
    total = 0.0
    if not mine:  # more ranks than sequences: contribute zero gradients so the all-reduce lines up
        mine = [Example([pad, pad], [IGNORE_INDEX, IGNORE_INDEX])]
    for micro in _micro_batches(mine, config.micro_batch_size):
        with autocast():
            loss_sum, _ = summed_token_loss(model, collate(micro, pad))
        (loss_sum * size / global_tokens).backward()
        total += loss_sum.item()
    return total


@torch.no_grad()
def evaluate(model, examples: list[Example], batch_size: int, pad: int) -> float:
    """Mean token loss over ``examples`` (assistant tokens only), each rank taking its share."""
    rank, size = world()
    was_training = model.training
    model.eval()
    loss_sum, count = 0.0, 0
    for micro in _micro_batches(examples[rank::size], batch_size):
        with autocast():
            loss, n = summed_token_loss(model, collate(micro, pad))
        loss_sum += loss.item()
        count += n
    model.train(was_training)
    total_loss, total_count = all_reduce_sum([loss_sum, float(count)])
    return total_loss / total_count if total_count else float("nan")


def _lora_wrap(model, config: SFTConfig):
    from peft import LoraConfig, get_peft_model

    targets = config.lora_target_modules
    target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _load(parent_dir: Path, resume_from: Path | None, config: SFTConfig):
    """The model to train: the parent (wrapped in fresh LoRA adapters) or a checkpoint of this run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resume_from or parent_dir)
    if config.lora:
        base = AutoModelForCausalLM.from_pretrained(parent_dir, dtype=torch.float32)
        if resume_from is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(base, resume_from, is_trainable=True)
        else:
            model = _lora_wrap(base, config)
    else:
        model = AutoModelForCausalLM.from_pretrained(resume_from or parent_dir, dtype=torch.float32)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _save_checkpoint(path: Path, model, tokenizer, optimizer, step: int, config: SFTConfig, state: dict) -> None:
    """Weights (the adapters only under LoRA), tokenizer, optimizer and a self-describing state file."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    torch_save(optimizer.state_dict(), path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"step": step, "config": asdict(config), **state}))


def _rng_file(path: Path, rank: int) -> Path:
    return Path(path) / f"rng-rank{rank}.pt"


def _save_rng(path: Path, rank: int) -> None:
    """This rank's random state (LoRA dropout draws from it), so a resumed run draws the same masks."""
    path.mkdir(parents=True, exist_ok=True)
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    torch_save(state, _rng_file(path, rank))


def _restore_rng(path: Path, rank: int) -> None:
    saved = _rng_file(path, rank)
    if not saved.is_file():  # a checkpoint from before the state was saved: the data order still replays
        return
    state = torch.load(saved, weights_only=True)
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _save_final(out_dir: Path, model, tokenizer, lora: bool) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    final = model.merge_and_unload() if lora else model
    final.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def train_sft(
    parent_dir: Path,
    data_path: Path,
    out_dir: Path,
    config: SFTConfig | dict,
    reporter: Reporter = NullReporter(),
    *,
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
) -> dict:
    """Fine-tune ``parent_dir`` on the transcripts of ``data_path``; save a causal LM + tokenizer to ``out_dir``."""
    if isinstance(config, dict):
        config = SFTConfig.from_dict(config)
    rank, size = world()
    torch.manual_seed(config.seed)
    parent_dir, out_dir, started = Path(parent_dir), Path(out_dir), time.time()
    resume_from = Path(resume_from) if resume_from else None
    reporter.phase("loading model")
    model, tokenizer = _load(parent_dir, resume_from, config)
    model.to(device())  # before the optimizer exists, so its state lives on the same device
    pad = pad_id(tokenizer)

    conversations = read_conversations(data_path)
    if not conversations:
        raise ValueError(f"{data_path} has no transcripts ending with an assistant turn")
    train_convs, eval_convs = split_examples(conversations, config.eval_fraction, config.seed)
    train, dropped = tokenize_all(tokenizer, reporter.counted("tokenizing examples", train_convs), config.max_length)
    evals, _ = tokenize_all(tokenizer, eval_convs, config.max_length)
    if not train:
        raise ValueError(f"no training example keeps an assistant token within max_length={config.max_length}")
    if config.packing:
        train = pack_examples(train, config.max_length)
    steps = total_steps(len(train), config)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    start_step, history, state = 0, [], {}
    if resume_from is not None:
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=True))
        state = json.loads((resume_from / "trainer_state.json").read_text())
        start_step, history = state["step"], state["history"]
        initial_eval, first_loss = state["eval_loss_initial"], state.get("train_loss_first")
        _restore_rng(resume_from, rank)
    else:
        reporter.phase(f"evaluating before training on {len(evals)} held-out examples")
        initial_eval, first_loss = evaluate(model, evals, config.micro_batch_size, pad), None
    evaluated = [h["eval_loss"] for h in history if h.get("eval_loss") is not None]
    eval_loss = evaluated[-1] if evaluated else initial_eval

    model.train()
    tokens, loop_started, recent = 0, time.time(), []
    for step in range(start_step, steps):
        lr = lr_at(step, steps, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [train[i] for i in batch_indices(step, len(train), config.batch_size, config.seed)]
        global_tokens = sum(e.trained_tokens for e in batch)
        optimizer.zero_grad(set_to_none=True)
        loss_sum = _step_loss(model, batch[rank::size], global_tokens, config, pad, size)
        (total_loss,) = all_reduce_sum([loss_sum])
        loss = total_loss / global_tokens
        if not math.isfinite(loss):
            raise TrainingDiverged(f"SFT loss became {loss} at step {step + 1}")
        average_gradients(model)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip))
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(f"SFT gradient norm became {grad_norm} at step {step + 1}")
        optimizer.step()
        step_tokens = sum(len(e.input_ids) for e in batch)
        tokens += step_tokens
        done = step + 1
        first_loss = loss if first_loss is None else first_loss
        recent = [*recent, loss][-10:]
        point = {"loss": round(loss, 5), "lr": lr, "grad_norm": round(grad_norm, 4), "tokens": step_tokens}
        if (config.eval_every and done % config.eval_every == 0) or done == steps:
            eval_loss = evaluate(model, evals, config.micro_batch_size, pad)
            point["eval_loss"] = round(eval_loss, 5) if math.isfinite(eval_loss) else None
        history.append({"step": done, **point})
        checkpointing = checkpoint_dir is not None and config.checkpoint_every and \
            done % config.checkpoint_every == 0 and done < steps
        if checkpointing:
            _save_rng(Path(checkpoint_dir) / f"step-{done}", rank)
        if rank == 0:
            reporter.progress(done, steps, point)
            if checkpointing:
                path = Path(checkpoint_dir) / f"step-{done}"
                _save_checkpoint(path, model, tokenizer, optimizer, done, config, {
                    "history": history, "eval_loss_initial": initial_eval, "train_loss_first": first_loss})
                reporter.checkpoint(path, done)
        barrier()

    if rank == 0:
        _save_final(out_dir, model, tokenizer, config.lora)
    barrier()
    elapsed = time.time() - loop_started
    trained_losses = recent or [h["loss"] for h in history[-10:] if "loss" in h]
    return {
        "steps": steps,
        "resumed_from_step": start_step,
        "world_size": size,
        "train_loss": sum(trained_losses) / len(trained_losses) if trained_losses else float("nan"),
        "train_loss_first": first_loss,
        "eval_loss": eval_loss,
        "eval_loss_initial": initial_eval,
        "train_examples": len(train_convs) - dropped,
        "eval_examples": len(evals),
        "dropped_examples": dropped,
        "sequences": len(train),
        "tokens": tokens,
        "tokens_per_second": tokens / elapsed if elapsed and tokens else 0.0,
        "device": str(device()),
        "lora": config.lora,
        "wall_seconds": time.time() - started,
    }

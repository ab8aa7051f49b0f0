"""The reward model: one scalar score per (prompt, answer), trained on full rankings (InstructGPT).

Two recipes (``backbone``). The default, ``frozen`` (``training.reward_head``), reads every answer once
with the parent frozen and fits only the score head, in closed form; ``trained`` fine-tunes, as the rest
of this docstring describes. The score is the head's mean over the answer's tokens by default
(``pooling``, ``training.reward_scoring``).

A ranking of K completions is one batch element, packed in one row (``reward_data.pack``): the prompt
is encoded once and each completion on top of it, blind to the others, giving K scores, and the loss
is -mean log sigmoid(r_better - r_worse) over all C(K,2) pairs of that ranking with different ranks (``grouped_ranking_loss``; ties are skipped, an all-ties ranking adds nothing).
TRL's ``RewardTrainer`` takes the same rankings as C(K,2) separate (chosen, rejected) pairs and
runs 2*C(K,2) sequences through the model, each with its own copy of the prompt (``bench/rm_pairs.py``
and ``bench/rm_grouped_vs_pairs.py`` measure both), and it drops over-long pairs, where we cut the
prompt from the left and count (``reward_data``). Batches are length-bucketed (``epoch_batches``) and a
step's rankings go through the model in micro-batches of similar packed length (``micro_batch_tokens``
bounds the padded tokens of one forward), so little padding is computed.

The model is ``AutoModelForSequenceClassification`` initialised from a causal LM folder (the head is
new: one row, or one per hidden state the frozen recipe reads, ``config.reward_layers``) and
``pad_token_id`` set in its config, saved with its tokenizer so ``load_reward_model`` / PPO / the
demo's win-rate open it with ``from_pretrained``. Scoring and the held-out accuracy live in
``training.reward_scoring`` (re-exported here for existing callers).

``train_layers`` N > 0 (default 8) lets only the top N transformer layers, the final norm and the head
learn: the embeddings and the lower layers run forward only (autograd records nothing below the first
trained layer), so a step costs well under a full forward-backward on a CPU, and AdamW (fused) skips
them; 0, or a model no deeper than N, trains every layer and the embeddings. On SmolLM2-135M (30
layers) the default trains on about 3.5x the pairs per CPU second of training every layer
(``bench/rm_pairs.py``; ``bench/rm_accuracy.py`` measures what that buys in held-out accuracy).

The held-out split is by prompt; pairwise accuracy (ties excluded, a tied score counts as wrong)
is measured, packed and without gradients, before training (``eval_initial``) and after every epoch;
its time is not in ``train_seconds`` (it is ``eval_seconds``), and each progress point carries
``eta_seconds``: the steps left at the loop's pace so far plus the evaluations left at their measured
pace, so the ETA is honest from step 1. Under ``torchrun`` each rank takes
every ``world_size``-th ranking of the global batch and gradients are averaged.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from training.checkpoint_io import torch_save
from training.distributed import all_reduce_sum, autocast, average_gradients, barrier, world
from training.distributed import device as device_of_rank
from training.reporting import NullReporter, Reporter, TrainingDiverged
from training.reward_config import RewardConfig
from training.reward_data import (
    SETTINGS_FILE,
    count_pairs,
    encode_rankings,
    ensure_chat_template,
    ensure_pad_token,
    epoch_batches,
    micro_batches,
    ordered_pairs,
    read_rankings,
    split_by_prompt,
)
from training.reward_head import tapped_layers, train_frozen
from training.reward_scoring import (
    load_reward_model,
    packed_scores,
    pairwise_accuracy,
    ranking_scores,
    score_sequences,
    score_texts,
    sequence_scores,
)

__all__ = [  # the config and the scoring helpers stay importable from here (PPO, the demo loop, tests)
    "RewardConfig", "grouped_ranking_loss", "load_reward_model", "lr_at", "packed_scores", "pairwise_accuracy",
    "ranking_scores", "score_sequences", "score_texts", "sequence_scores", "train_reward",
]


def grouped_ranking_loss(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """-mean over the pairs (i better than j, i.e. rank_i < rank_j) of log sigmoid(s_i - s_j).

    Every unordered pair with different ranks counts once; ties are skipped. With no such pair the
    result is a zero that still has a (zero) gradient, never NaN."""
    ranks = torch.as_tensor(ranks, device=scores.device)
    better = ranks[:, None] < ranks[None, :]
    if not bool(better.any()):
        return scores.sum() * 0.0
    margins = scores[:, None] - scores[None, :]
    return -F.logsigmoid(margins[better]).mean()


def _evaluate(model, encoded, pad_id: int, config: RewardConfig) -> float | None:
    return pairwise_accuracy(model, encoded, pad_id, config.eval_batch_size, 2 * config.micro_batch_tokens)


def lr_at(step: int, total: int, config: RewardConfig) -> float:
    warmup = int(total * config.warmup_ratio)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.learning_rate * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def _load(parent_dir: Path, resume_from: Path | None, config: RewardConfig):
    """The model to train: the parent with a fresh score head (optionally LoRA-wrapped) or a checkpoint."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resume_from or parent_dir)
    pad_id = ensure_pad_token(tokenizer)
    ensure_chat_template(tokenizer)
    torch.manual_seed(config.seed)  # the new head's initialisation
    source = parent_dir if config.lora or resume_from is None else resume_from
    layers = None  # fine-tuned: the head reads the final state; frozen: several (reward_head.tapped_layers)
    if config.backbone == "frozen":
        layers = tapped_layers(AutoConfig.from_pretrained(source).num_hidden_layers, config.head_layers)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(layers) if layers else 1,
                                                               pad_token_id=pad_id, dtype=torch.float32)
    model.config.pad_token_id = pad_id
    model.config.reward_pooling = config.pooling  # saved in config.json: scoring reads the score the same way
    model.config.reward_layers = layers
    top = _top_layers(model, config.train_layers)
    if config.lora:
        from peft import LoraConfig, PeftModel, get_peft_model

        if resume_from is not None:
            model = PeftModel.from_pretrained(model, resume_from, is_trainable=True)
        else:
            targets = config.lora_target_modules
            modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
            model = get_peft_model(model, LoraConfig(
                r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                target_modules=_in_layers(model, modules, top), task_type="SEQ_CLS", modules_to_save=["score"]))
    elif top is not None:
        _freeze_below(model, top)
    for module in model.modules():  # dropout makes the K scores of one ranking noisy relative to each other
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model, tokenizer


def _top_layers(model, count: int) -> list[int] | None:
    """Indices of the top ``count`` transformer layers (None: every layer and the embeddings learn)."""
    if not count:
        return None
    layers = getattr(getattr(model, model.base_model_prefix, None), "layers", None)
    if layers is None:
        raise ValueError(f"train_layers needs a model with a 'layers' stack; {type(model).__name__} has none")
    if count >= len(layers):  # a model no deeper than that trains whole, embeddings included
        return None
    return list(range(len(layers) - count, len(layers)))


def _in_layers(model, modules: str | list[str], top: list[int] | None) -> str | list[str]:
    """LoRA targets limited to the ``top`` layers: the full names of their linear modules (all of them for
    ``all-linear``, else those named in ``modules``), so the layers below get no adapters."""
    if top is None:
        return modules
    prefix = model.base_model_prefix
    wanted = tuple(f"{prefix}.layers.{i}." for i in top)
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.startswith(wanted)
            and (modules == "all-linear" or name.rsplit(".", 1)[-1] in modules)]


def _freeze_below(model, top: list[int]) -> None:
    """Only the ``top`` layers, the final norm and the score head keep gradients. The frozen lower layers
    (and the embeddings) then run forward only: autograd records nothing below the first trained layer,
    so a step costs about a third of the frozen part's full forward-backward, and AdamW skips them."""
    backbone = getattr(model, model.base_model_prefix)
    model.requires_grad_(False)
    for index in top:
        backbone.layers[index].requires_grad_(True)
    for module in (getattr(backbone, "norm", None), model.score):
        if module is not None:
            module.requires_grad_(True)


def _evaluations_left(done: int, total: int, steps_per_epoch: int) -> int:
    """Held-out evaluations still to run after step ``done``: one per epoch end, and one after a partial last epoch."""
    if done >= total:
        return 0
    return total // steps_per_epoch - done // steps_per_epoch + int(total % steps_per_epoch != 0)


def _save_checkpoint(path: Path, model, tokenizer, optimizer, step: int, config: RewardConfig, history: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)  # LoRA: the adapters and the head only
    tokenizer.save_pretrained(path)
    torch_save(optimizer.state_dict(), path / "optimizer.pt")
    (path / "trainer_state.json").write_text(json.dumps({"step": step, "config": asdict(config), "history": history}))


def _save_final(out_dir: Path, model, tokenizer, config: RewardConfig) -> None:
    final = model.merge_and_unload() if config.lora else model
    out_dir.mkdir(parents=True, exist_ok=True)
    final.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / SETTINGS_FILE).write_text(json.dumps({  # what scoring must repeat (reward_data.encode_for_scoring)
        "max_length": config.max_length, "encoding": "chat_template(prompt + answer), prompt cut from the left"}))


def _micro_loss(model, rankings, pad_id: int, device) -> tuple[torch.Tensor, int, int, int, int]:
    """Summed grouped loss of whole rankings in one packed forward pass:
    (loss_sum, rankings, pairs, correct, tokens), ``tokens`` the real tokens the model read."""
    scores = ranking_scores(model, rankings, pad_id, device)
    loss_sum, offset, pairs, correct = scores.sum() * 0.0, 0, 0, 0
    for ranking in rankings:
        k = len(ranking.answers)
        values = scores[offset:offset + k]
        offset += k
        loss_sum = loss_sum + grouped_ranking_loss(values, torch.tensor(ranking.ranks, device=device))
        plain = values.detach().tolist()
        for better, worse in ordered_pairs(ranking.ranks):
            pairs += 1
            correct += int(plain[better] > plain[worse])
    return loss_sum, len(rankings), pairs, correct, sum(r.length for r in rankings)


def train_reward(
    parent_dir: Path,
    data_path: Path,
    out_dir: Path,
    config: RewardConfig | dict,
    reporter: Reporter = NullReporter(),
    *,
    resume_from: Path | None = None,
    checkpoint_dir: Path | None = None,
) -> dict:
    """Train a reward model on the rankings of ``data_path`` and save it with its tokenizer to ``out_dir``."""
    if isinstance(config, dict):
        config = RewardConfig.from_dict(config)
    rank, size = world()
    torch.manual_seed(config.seed)
    out_dir, started = Path(out_dir), time.time()
    resume_from = Path(resume_from) if resume_from else None
    device = device_of_rank()

    rankings = read_rankings(Path(data_path))
    train_set, eval_set = split_by_prompt(rankings, config.eval_fraction, config.seed)
    train_set = [r for r in train_set if ordered_pairs(r.ranks)]  # an all-ties ranking teaches nothing
    eval_set = [r for r in eval_set if ordered_pairs(r.ranks)]
    if not train_set:
        raise ValueError(f"{data_path} has no training ranking with two completions of different rank")

    reporter.phase("loading model")
    # a frozen run's checkpoints hold the answers' states read so far, not weights (reward_head)
    model, tokenizer = _load(Path(parent_dir), resume_from if config.backbone == "trained" else None, config)
    model.to(device)
    pad_id = tokenizer.pad_token_id
    train_enc, train_stats = encode_rankings(tokenizer, reporter.counted("tokenizing rankings", train_set), config.max_length)
    eval_enc, eval_stats = encode_rankings(tokenizer, eval_set, config.max_length)
    data = {
        "pairs_train": count_pairs(train_set),
        "pairs_eval": count_pairs(eval_set),
        "rankings_train": len(train_set),
        "rankings_eval": len(eval_set),
        "prompts_train": len({r.group for r in train_set}),
        "prompts_eval": len({r.group for r in eval_set}),
        "truncated_sequences": train_stats.truncated + eval_stats.truncated,
        "truncated_answers": train_stats.answer_truncated + eval_stats.answer_truncated,
        "longest_sequence": max(train_stats.longest, eval_stats.longest),
        "lora": config.lora,
    }
    if config.backbone == "frozen":
        result = train_frozen(model, tokenizer, train_set, train_enc, eval_enc, config, reporter, device=device,
                              out_dir=out_dir, resume_from=resume_from, checkpoint_dir=checkpoint_dir,
                              save_final=_save_final)
        barrier()
        return {**result, **data, "seconds": time.time() - started}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=device.type in ("cpu", "cuda"))  # one kernel per step, as TRL's default
    steps_per_epoch = math.ceil(len(train_enc) / config.batch_size)
    total_steps = config.max_steps or steps_per_epoch * config.epochs

    start_step, history = 0, {"eval_accuracy_initial": None, "accuracy_by_epoch": [], "losses": []}
    if resume_from is not None:
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", weights_only=True))
        state = json.loads((resume_from / "trainer_state.json").read_text())
        start_step, history = state["step"], state["history"]
    eval_seconds: list[float] = []  # each held-out evaluation's wall time, for the ETA of the ones to come
    if resume_from is None and config.eval_initial:
        reporter.phase(f"evaluating before training on {len(eval_enc)} held-out rankings")
        tick = time.perf_counter()
        history["eval_accuracy_initial"] = _evaluate(model, eval_enc, pad_id, config)
        eval_seconds.append(time.perf_counter() - tick)

    model.train()
    lengths, batches_of = [r.length for r in train_enc], {}
    train_seconds, train_cpu_seconds, done_rankings, done_pairs, done_sequences, done_tokens = 0.0, 0.0, 0, 0, 0, 0
    for step in range(start_step, total_steps):
        tick, cpu_tick = time.perf_counter(), time.process_time()
        lr = lr_at(step, total_steps, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        epoch, offset = divmod(step, steps_per_epoch)
        if epoch not in batches_of:
            batches_of = {epoch: epoch_batches(epoch, len(train_enc), config.batch_size, config.seed, lengths)}
        batch = [train_enc[i] for i in batches_of[epoch][offset]]
        mine = batch[rank::size]
        optimizer.zero_grad(set_to_none=True)
        loss_total, pairs, correct, tokens = 0.0, 0, 0, 0
        for group in micro_batches(mine, config.micro_batch_size, config.micro_batch_tokens):
            with autocast():
                loss_sum, _, n_pairs, n_correct, n_tokens = _micro_loss(model, group, pad_id, device)
            if not torch.isfinite(loss_sum):
                raise TrainingDiverged(f"reward-model loss became {loss_sum.item()} at step {step + 1}")
            # every ranking weighs 1/len(batch) of the global batch; averaging over ranks divides by size
            (loss_sum * size / len(batch)).backward()
            loss_total += loss_sum.item()
            pairs, correct, tokens = pairs + n_pairs, correct + n_correct, tokens + n_tokens
        average_gradients(model)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
        if not math.isfinite(grad_norm):
            raise TrainingDiverged(f"reward-model gradient norm became {grad_norm} at step {step + 1}")
        optimizer.step()
        loss_total, pairs, correct, tokens = all_reduce_sum([loss_total, float(pairs), float(correct), float(tokens)])
        train_seconds += time.perf_counter() - tick
        train_cpu_seconds += time.process_time() - cpu_tick
        done_rankings += len(batch)
        done_pairs += int(pairs)
        done_sequences += sum(len(r.answers) for r in batch)
        done_tokens += int(tokens)
        done = step + 1
        mean_loss = loss_total / len(batch)
        history["losses"].append(mean_loss)
        point = {"loss": round(mean_loss, 5), "batch_accuracy": round(correct / pairs, 4) if pairs else None,
                 "lr": lr, "epoch": round(done / steps_per_epoch, 3)}
        if done % steps_per_epoch == 0 or done == total_steps:  # every epoch, and a partial last one
            tick = time.perf_counter()
            accuracy = _evaluate(model, eval_enc, pad_id, config)
            eval_seconds.append(time.perf_counter() - tick)
            history["accuracy_by_epoch"].append(accuracy)
            point["eval_accuracy"] = accuracy
        # the steps left at the loop's pace so far, plus the evaluations left at their measured pace
        # (none measured yet: not counted, so the ETA never includes a guess)
        evals_left = _evaluations_left(done, total_steps, steps_per_epoch) if eval_enc else 0
        point["eta_seconds"] = round(train_seconds / (done - start_step) * (total_steps - done)
                                     + (sum(eval_seconds) / len(eval_seconds) * evals_left if eval_seconds else 0.0), 3)
        if rank == 0:
            reporter.progress(done, total_steps, point)
            if checkpoint_dir is not None and config.checkpoint_every and done % config.checkpoint_every == 0 \
                    and done < total_steps:
                path = Path(checkpoint_dir) / f"step-{done}"
                _save_checkpoint(path, model, tokenizer, optimizer, done, config, history)
                reporter.checkpoint(path, done)
        barrier()

    if rank == 0:
        _save_final(out_dir, model, tokenizer, config)
    barrier()
    last_epoch = history["losses"][-steps_per_epoch:]
    accuracy_by_epoch = history["accuracy_by_epoch"]
    return {
        "eval_accuracy": accuracy_by_epoch[-1] if accuracy_by_epoch else history["eval_accuracy_initial"],
        "eval_accuracy_initial": history["eval_accuracy_initial"],
        "accuracy_by_epoch": accuracy_by_epoch,
        "train_loss": sum(last_epoch) / len(last_epoch) if last_epoch else None,
        "steps": total_steps,
        "resumed_from_step": start_step,
        "world_size": size,
        "device": str(device),
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,  # this process's CPU time in the loop: steady on a busy machine
        "eval_seconds": sum(eval_seconds),  # held-out evaluations (this session), not in train_seconds
        "rankings_per_second": done_rankings / train_seconds if train_seconds else 0.0,
        "pairs_per_second": done_pairs / train_seconds if train_seconds else 0.0,
        "sequences_per_second": done_sequences / train_seconds if train_seconds else 0.0,
        "tokens_per_second": done_tokens / train_seconds if train_seconds else 0.0,
        "seconds": time.time() - started,
        "backbone": "trained",
        **data,
    }

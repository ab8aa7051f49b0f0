"""Ranges for every numeric setting of a run, so a typo cannot book a machine for a year.

A run's config is JSON a manager types; without bounds ``max_steps: 1e12``, ``nproc: 100000`` or
``learning_rate: 1e308`` queue a run that never ends, forks without limit or diverges at once.
``RANGES`` holds an inclusive (low, high) for each numeric key of every stage config, the
pre-training config and the runner keys, by name (a key means the same thing in every stage).
``tests/training/test_config_bounds.py`` fails when a stage grows a numeric field with no range here.

Django-free: the web pages, the stage configs and ``PretrainConfig`` all call ``check_value``.
"""

from __future__ import annotations

import math
import os

BIG = 1_000_000
SEQ = 32_768  # tokens: no model this platform trains has a longer context
RANGES: dict[str, tuple[float, float]] = {
    # schedule
    "epochs": (0.01, 1000), "max_steps": (0, BIG), "iterations": (1, 100_000), "ppo_epochs": (1, 100),
    "total_steps": (1, 100_000), "step_seconds": (0, 60), "warmup_steps": (0, BIG),
    "eval_every": (0, BIG), "checkpoint_every": (0, BIG),
    # batches and lengths
    "batch_size": (1, 4096), "micro_batch_size": (1, 1024), "eval_batch_size": (1, 4096),
    "mini_batch_size": (1, 4096), "ptx_batch_size": (1, 4096),
    "max_length": (2, SEQ), "max_prompt_tokens": (1, SEQ), "max_prompt_length": (1, SEQ),
    "reward_max_length": (0, SEQ), "micro_batch_tokens": (16, 1 << 20), "ptx_max_length": (2, SEQ), "max_new_tokens": (1, 4096), "block_size": (2, SEQ),
    # optimisation
    "learning_rate": (1e-10, 10.0), "value_learning_rate": (1e-10, 10.0), "warmup_ratio": (0, 1),
    "min_lr_ratio": (0, 1), "weight_decay": (0, 10), "grad_clip": (0, 1e6), "max_grad_norm": (0, 1e6),
    "eval_fraction": (0, 0.9), "seed": (0, 2**32 - 1),
    # LoRA
    "lora_r": (1, 1024), "train_layers": (0, 1024), "lora_alpha": (1, 4096), "lora_dropout": (0, 0.99),
    # the frozen reward model's head
    "head_l2": (0, 1e6), "head_folds": (2, 100), "head_layers": (1, 64),
    # sampling
    "k": (1, 32), "temperature": (0, 10), "top_p": (0, 1),
    # PPO
    "init_kl_coef": (0, 100), "kl_target": (0, 1000), "kl_horizon": (1, 1e9), "gamma": (0, 1), "lam": (0, 1),
    "value_warmup_steps": (0, 100_000), "missing_eos_penalty": (0, 100), "cliprange": (0, 10), "cliprange_value": (0, 1000), "vf_coef": (0, 100), "ptx_coef": (0, 1000),
    # moderation classifier
    "n_features": (16, 2**24), "dropout_copies": (0, 64), "word_dropout": (0, 0.99),
    "min_threshold": (0, 1), "max_threshold": (0, 1), "precision_target": (0, 1),
    "corpus_negatives": (0, BIG), "fragment_negatives": (0, BIG), "opener_rows": (0, BIG), "corpus_positives": (0, BIG), "dev_rows": (-1, BIG),
    "encoder_layers": (1, 48), "encoder_max_length": (8, 512), "head_epochs": (1, 100_000),
    "head_learning_rate": (1e-10, 10.0), "finetune_layers": (0, 48), "finetune_epochs": (0, 100),
    "finetune_learning_rate": (1e-10, 1.0),
    # pre-training model shape
    "vocab_size": (16, 1_000_000), "n_layer": (1, 256), "n_embd": (8, 16_384), "n_head": (1, 256),
    # runner keys
    "max_prompts": (1, 100_000_000), "ptx_snapshot": (1, 2**63 - 1),
}
INTEGER_KEYS = {"nproc", "max_prompts", "ptx_snapshot"}  # runner keys have no dataclass to say so


def machine_nproc() -> int:
    """Processes a run may ask for: one per CPU core or GPU, whichever this machine has more of.

    The GPU count is read without importing torch (the web process must not load it):
    ``CUDA_VISIBLE_DEVICES`` when set, else the device nodes the NVIDIA driver creates.
    """
    gpus = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    elif os.path.isdir("/dev"):
        gpus = len([n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()])
    return max(os.cpu_count() or 1, gpus, 1)


def check_value(key: str, value, *, integer: bool, max_nproc: int | None = None) -> str | None:
    """``None`` when ``value`` is a number of the right kind inside the key's range, else what is wrong.

    Booleans and strings are not numbers; an integer key takes no fraction; NaN and infinities are
    refused (Python's ``json`` reads ``NaN`` and ``Infinity``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{key!r} must be {'an integer' if integer else 'a number'}, not {type(value).__name__} {value!r}"
    if integer and not isinstance(value, int):
        return f"{key!r} must be an integer, not {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key!r} must be a finite number, not {value!r}"
    if key == "nproc":
        low, high = 1, max_nproc or machine_nproc()
    elif key in RANGES:
        low, high = RANGES[key]
    else:
        return None
    if not low <= value <= high:
        return f"{key!r} must be between {_num(low)} and {_num(high)}, not {_num(value)}"
    return None


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)

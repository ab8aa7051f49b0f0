"""The reward stage's settings (``RewardConfig``): which recipe (``backbone``), how the score is read
(``pooling``), and each recipe's own keys; a key the chosen recipe would ignore is refused by name
(``check_given``, called by ``from_dict`` and by ``stage_configs.config_build`` for a run's keys)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from training.reward_scoring import POOLINGS

FINE_TUNING_ONLY = {"epochs", "max_steps", "batch_size", "micro_batch_size", "learning_rate", "warmup_ratio",
                    "min_lr_ratio", "weight_decay", "grad_clip", "lora", "lora_r", "lora_alpha", "lora_dropout",
                    "lora_target_modules", "train_layers"}
FROZEN_ONLY = {"head_l2", "head_folds", "head_layers"}


@dataclass
class RewardConfig:
    epochs: int = 1
    max_steps: int = 0  # > 0 overrides epochs (the last epoch may then be partial)
    batch_size: int = 8  # rankings per optimizer step, over all processes
    micro_batch_size: int = 8  # at most this many rankings per forward pass in one process (all K answers of each)
    micro_batch_tokens: int = 4096  # and at most this many (padded) tokens per forward pass
    eval_batch_size: int = 16  # rankings per forward pass when scoring held-out rankings (no gradients)
    eval_initial: bool = True  # measure the untrained model's held-out accuracy before step 1
    max_length: int = 512
    learning_rate: float = 5e-5  # with train_layers 8: learned faster than 1e-5 on HH pairs (operations.md, "Reward models")
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_fraction: float = 0.2
    checkpoint_every: int = 50
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"  # or comma-separated module names
    train_layers: int = 8  # > 0: only the top N transformer layers, the final norm and the head learn (LoRA: get adapters); 0: all
    pooling: str = "answer_mean"  # the head's mean over the answer's tokens, or "last": at its last token (reward_scoring)
    backbone: str = "frozen"  # frozen: read each answer once, fit the head (reward_head); trained: SGD on the top train_layers
    head_l2: float = 0.0  # frozen: the head's L2 penalty (standardised units); 0: chosen by cross-validation
    head_folds: int = 5  # frozen: folds (by prompt) of that cross-validation
    head_layers: int = 4  # frozen: hidden states the head reads, spread over the top of the depth (reward_head.tapped_layers)
    seed: int = 0

    @classmethod
    def check_given(cls, values: dict) -> None:
        """Refuse keys that the chosen backbone would ignore (set to other than their default), naming them;
        ``stage_configs.config_build`` calls this with a run's keys."""
        frozen = values.get("backbone", cls.backbone) == "frozen"
        defaults = {f.name: f.default for f in fields(cls)}  # a whole config (asdict) carries the others' defaults
        stray = sorted(k for k in set(values) & (FINE_TUNING_ONLY if frozen else FROZEN_ONLY) if values[k] != defaults[k])
        if stray and frozen:
            raise ValueError(f"{', '.join(stray)} only apply when the base is fine-tuned: add \"backbone\": \"trained\" "
                             "(the default, frozen, reads each answer once and fits only the score head)")
        if stray:
            raise ValueError(f"{', '.join(stray)} only apply to the frozen backbone, not \"backbone\": \"trained\"")

    @classmethod
    def from_dict(cls, values: dict) -> RewardConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown reward-model setting(s): {', '.join(unknown)}")
        cls.check_given(values)
        return cls(**values)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.max_steps < 0 or self.batch_size < 1 or self.micro_batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("epochs, batch_size, micro_batch_size and eval_batch_size must be >= 1")
        if self.micro_batch_tokens < 64:
            raise ValueError("micro_batch_tokens must be >= 64")
        if self.max_length < 8:
            raise ValueError("max_length must be >= 8")
        if self.train_layers < 0:
            raise ValueError("train_layers must be >= 0 (0: every layer learns)")
        if self.backbone not in ("frozen", "trained"):
            raise ValueError(f"backbone must be frozen or trained, not {self.backbone!r}")
        if self.head_l2 < 0 or self.head_folds < 2 or self.head_layers < 1:
            raise ValueError("head_l2 must be >= 0, head_folds >= 2 and head_layers >= 1")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")

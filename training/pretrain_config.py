"""Settings of a pre-training run, without torch: the web pages that validate them must not import it."""

from __future__ import annotations

from dataclasses import dataclass, fields

from training.config_bounds import check_value


@dataclass
class PretrainConfig:
    from_scratch: bool = True
    vocab_size: int = 1024
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    block_size: int = 128
    batch_size: int = 16  # sequences per optimizer step, over all processes
    max_steps: int = 300
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_fraction: float = 0.1
    eval_every: int = 50
    checkpoint_every: int = 100
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> PretrainConfig:
        """Typed and bounded (``training/config_bounds.py``); a ``ValueError`` names the bad key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown pre-training setting(s): {', '.join(unknown)}")
        kinds = {f.name: f.type for f in fields(cls)}
        for key, value in values.items():
            if kinds[key] in (bool, "bool"):
                if not isinstance(value, bool):
                    raise ValueError(f"{key!r} must be true or false, not {value!r}")
                continue
            problem = check_value(key, value, integer=kinds[key] in (int, "int"))
            if problem:
                raise ValueError(problem)
        return cls(**values)

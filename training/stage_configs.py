"""Run configs: a run's JSON ``config`` merged over its stage's config dataclass, checked key by key.

The stage modules (``training/sft.py`` ...) own their config dataclasses and defaults; this module
only finds them, shows their defaults on the start-run form, and turns a manager's JSON into an
instance, with a ``TrainingError`` that names the bad key before any worker loads a model.
Keys that belong to the runner rather than the stage (``RUNNER_KEYS``) are split off first.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing

from django.conf import settings

from training.config_bounds import INTEGER_KEYS, check_value, machine_nproc
from training.errors import TrainingError
from training.models import RunKind

STAGES: dict[str, tuple[str, str]] = {
    RunKind.SFT: ("training.sft", "SFTConfig"),
    RunKind.REWARD: ("training.reward", "RewardConfig"),
    RunKind.SAMPLING: ("training.sampling", "SamplingConfig"),
    RunKind.PPO: ("training.ppo", "PPOConfig"),
    RunKind.MODERATION: ("training.moderation", "ModerationTrainConfig"),
    RunKind.SMOKE: ("training.smoke", "SmokeConfig"),
}
NPROC_HELP = "processes to train in (1: in the worker; N > 1: torchrun --nproc-per-node N, DDP)"
RUNNER_KEYS: dict[str, dict[str, str]] = {
    RunKind.SFT: {"nproc": NPROC_HELP},
    RunKind.REWARD: {"nproc": NPROC_HELP},
    RunKind.PPO: {"ptx_snapshot": "id of an SFT snapshot for the PPO-ptx term (default: the SFT ancestor's)"},
    RunKind.SAMPLING: {"max_prompts": "sample at most this many prompts of the snapshot"},
}


def config_class(kind: str):
    """The stage's config dataclass, or None when the stage is not installed."""
    if kind not in STAGES:
        return None
    module_name, class_name = STAGES[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, class_name, None)


def config_defaults(kind: str) -> dict:
    """The stage's defaults as JSON-ready values (what the start-run form shows)."""
    cls = config_class(kind)
    if cls is None:
        return {}
    return {k: _jsonable(v) for k, v in dataclasses.asdict(cls()).items()}


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def _accepts(value, annotation, default) -> bool:
    """Whether ``value`` fits the field; judged by the annotation, or by the default's type."""
    kinds = _types_of(annotation) or ({type(default)} if default is not None else set())
    if not kinds or object in kinds or typing.Any in kinds:
        return True
    if value is None:
        return type(None) in kinds
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and (int in kinds or float in kinds):
        return True
    if isinstance(value, float):
        return float in kinds
    if isinstance(value, list):
        return list in kinds or tuple in kinds
    return any(isinstance(value, k) for k in kinds if isinstance(k, type))


def _types_of(annotation) -> set:
    if annotation is None or isinstance(annotation, str):
        return set()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_types_of(a) for a in typing.get_args(annotation)))
    if origin is typing.Literal:
        return {type(a) for a in typing.get_args(annotation)}
    if origin is not None:
        return {origin}
    return {annotation}


def split_runner_keys(kind: str, config: dict) -> tuple[dict, dict]:
    runner_keys = RUNNER_KEYS.get(kind, {})
    stage = {k: v for k, v in config.items() if k not in runner_keys}
    runner = {k: v for k, v in config.items() if k in runner_keys}
    return stage, runner


def config_build(kind: str, config: dict | None, *, base: dict | None = None):
    """The stage config: dataclass defaults, then ``base`` (e.g. the project's sampling settings),
    then ``config``. Unknown keys, wrong types and numbers out of range (stage or runner keys, see
    ``training/config_bounds.py``) raise a ``TrainingError`` naming the key."""
    if config is not None and not isinstance(config, dict):
        raise TrainingError("the run config must be a JSON object")
    cls = config_class(kind)
    if cls is None:
        raise TrainingError(f"the {kind} stage is not installed on this server")
    stage, runner = split_runner_keys(kind, config or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:
        hints = {}
    defaults = dataclasses.asdict(cls())
    merged = {**{k: v for k, v in (base or {}).items() if k in fields}, **stage}
    for key, value in stage.items():
        if key not in fields:
            known = ", ".join(sorted([*fields, *RUNNER_KEYS.get(kind, {})]))
            raise TrainingError(f"unknown {kind} config key {key!r}; known keys: {known}")
        if not _accepts(value, hints.get(key), defaults.get(key)):
            expected = type(defaults.get(key)).__name__ if defaults.get(key) is not None else str(hints.get(key))
            raise TrainingError(f"{kind} config key {key!r} must be {expected}, not {type(value).__name__} {value!r}")
        numeric = _types_of(hints.get(key)) & {int, float}
        if numeric and value is not None:
            _check_number(kind, key, value, integer=float not in numeric)
    for key, value in runner.items():
        _check_number(kind, key, value, integer=key in INTEGER_KEYS)
    try:
        if hasattr(cls, "check_given"):  # keys that only mean something together (e.g. the reward backbone's)
            cls.check_given(merged)
        return cls(**merged)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"invalid {kind} config: {exc}") from exc


def max_nproc() -> int:
    """The most processes a run may ask for: ``TUNELOOP_MAX_NPROC``, else this machine's CPUs or GPUs."""
    return settings.TRAINING_MAX_NPROC or machine_nproc()


def _check_number(kind: str, key: str, value, *, integer: bool) -> None:
    problem = check_value(key, value, integer=integer, max_nproc=max_nproc())
    if problem:
        raise TrainingError(f"{kind} config key {problem}")

"""Writes for training. The run state machine itself lives in ``training/runs.py``."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from training.base_model import provision
from training.errors import TrainingError
from training.models import DatasetSnapshot, ModelVersion, RunKind, SnapshotKind, TrainingRun, VersionKind
from training.registry import model_version_register, version_dir
from training.runs import run_cancel, run_create  # noqa: F401  (the public run API)
from training.selectors import base_version
from training.snapshots import snapshot_freeze
from training.stage_configs import config_build, split_runner_keys


def base_model_provision(*, source: str | None = None) -> tuple[ModelVersion, bool]:
    """Convert and register the base policy once; a second call returns the existing version."""
    existing = base_version()
    if existing is not None and (settings.MODEL_STORE_DIR / existing.path / "config.json").exists():
        return existing, False
    folder, _ = provision(
        version_dir(settings.BASE_MODEL_NAME),
        cache_dir=settings.DATA_DIR / "cache",
        source=source or settings.BASE_MODEL_SOURCE,
    )
    with transaction.atomic():
        if existing is not None:
            return existing, True
        version = model_version_register(
            name=settings.BASE_MODEL_NAME,
            kind=VersionKind.POLICY,
            folder=folder,
            config={"source": source or settings.BASE_MODEL_SOURCE},
        )
    return version, True


# --- Snapshots and runs started by a manager (pages, API, auto-start) ---

SNAPSHOT_KIND_FOR_RUN = {
    RunKind.SFT: SnapshotKind.SFT,
    RunKind.REWARD: SnapshotKind.PREFERENCE,
    RunKind.SAMPLING: SnapshotKind.PROMPTS,
    RunKind.PPO: SnapshotKind.PROMPTS,
    RunKind.MODERATION: SnapshotKind.MODERATION,
}
# The snapshot options used when a run asks for "freeze a new one".
FREEZE_OPTIONS_FOR_RUN = {RunKind.SAMPLING: {"needs_completions": True}}
STARTABLE_KINDS = (RunKind.SFT, RunKind.SAMPLING, RunKind.REWARD, RunKind.PPO, RunKind.MODERATION)


def _check_version(version: ModelVersion | None, *, project, role: str, kinds: tuple[str, ...]) -> None:
    if version is None:
        return
    if version.project_id not in (None, project.pk):
        raise TrainingError(f"the {role} {version.name!r} belongs to another project")
    if version.kind not in kinds:
        raise TrainingError(f"the {role} must be a {' or '.join(kinds)} version; {version.name!r} is a {version.kind}")


def run_start(
    *,
    project,
    kind: str,
    created_by,
    snapshot: DatasetSnapshot | None = None,
    parent_version: ModelVersion | None = None,
    reward_version: ModelVersion | None = None,
    config: dict | None = None,
) -> TrainingRun:
    """Check a manager's run request and queue it; ``TrainingError`` says what is missing or wrong.

    SFT needs a non-empty SFT snapshot and a policy to start from (the project's base by default);
    reward needs a preference snapshot (initialised from the base by default); sampling needs a
    policy; PPO a policy and a reward version. Without a snapshot a new one is frozen.
    """
    if kind not in STARTABLE_KINDS:
        raise TrainingError(f"a manager cannot start a {kind!r} run; choose one of {', '.join(STARTABLE_KINDS)}")
    config = dict(config or {})
    if kind in (RunKind.SFT, RunKind.REWARD) and parent_version is None:
        parent_version = project.base_model
    if kind in (RunKind.SFT, RunKind.SAMPLING, RunKind.PPO) and parent_version is None:
        raise TrainingError(f"a {kind} run needs a policy version to start from")
    if kind == RunKind.REWARD and parent_version is None:
        raise TrainingError("a reward run needs a version to initialise the reward model from")
    if kind == RunKind.PPO and reward_version is None:
        raise TrainingError("a ppo run needs a reward model version")
    if kind != RunKind.PPO and reward_version is not None:
        raise TrainingError("only a ppo run takes a reward model version")
    _check_version(parent_version, project=project, role="parent version",
                   kinds=(VersionKind.POLICY, VersionKind.REWARD) if kind == RunKind.REWARD else
                   (VersionKind.MODERATION, VersionKind.POLICY) if kind == RunKind.MODERATION else (VersionKind.POLICY,))
    _check_version(reward_version, project=project, role="reward version", kinds=(VersionKind.REWARD,))
    if kind == RunKind.SAMPLING:
        config_build(kind, config, base=sampling_defaults(project))
    else:
        config_build(kind, config)
    _, runner_keys = split_runner_keys(kind, config)
    if "ptx_snapshot" in runner_keys:
        snapshot_of_project(project, runner_keys["ptx_snapshot"], kind=SnapshotKind.SFT)
    wanted = SNAPSHOT_KIND_FOR_RUN[kind]
    if snapshot is None:
        snapshot = snapshot_freeze(project=project, kind=wanted, created_by=created_by,
                                   options=FREEZE_OPTIONS_FOR_RUN.get(kind, {}))
    if snapshot.project_id != project.pk:
        raise TrainingError(f"snapshot #{snapshot.pk} belongs to another project")
    if snapshot.kind != wanted:
        raise TrainingError(f"a {kind} run trains on a {wanted} snapshot; snapshot #{snapshot.pk} is {snapshot.kind}")
    if snapshot.row_count == 0:
        raise TrainingError(f"snapshot #{snapshot.pk} is empty")
    return run_create(
        kind=kind,
        project=project,
        config=config,
        snapshot=snapshot,
        parent_version=parent_version,
        reward_version=reward_version,
        created_by=created_by,
    )


def snapshot_of_project(project, snapshot_id, *, kind: str) -> DatasetSnapshot:
    snapshot = DatasetSnapshot.objects.filter(project=project, pk=snapshot_id).first()
    if snapshot is None or snapshot.kind != kind:
        raise TrainingError(f"snapshot #{snapshot_id} is not a {kind} snapshot of this project")
    return snapshot


def sampling_defaults(project) -> dict:
    """The project's sampling settings, which a sampling run's config may override."""
    return {
        "k": project.completions_per_prompt,
        "temperature": project.sampling_temperature,
        "top_p": project.sampling_top_p,
        "max_new_tokens": project.max_new_tokens,
    }

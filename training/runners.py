"""Runners: turn a run row into the plain arguments of its stage, and the result into an outcome.

One function per run kind; each is small because the work lives in the stage modules. A runner
reads the run row (snapshot files, parent and reward folders), merges ``run.config`` over the
stage's config dataclass (``stage_configs.config_build``: an unknown key fails the run with its
name), calls the stage with ``checkpoint_dir`` in the run's work folder and ``resume_from`` the
last checkpoint the run recorded, and returns what ``execution.run_execute`` registers: the
summary, and for SFT, reward, PPO and moderation runs a ``VersionSpec`` whose folder is
``registry.version_dir(f"{project}-{kind}-{run}")``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from django.db import transaction

from annotation.evidence import messages_with_evidence
from annotation.selectors import prompts_of
from annotation.services import completions_add
from training.errors import TrainingError
from training.execution import RunContext, RunOutcome, VersionSpec, runner
from training.launch import run_in_processes
from training.models import DatasetSnapshot, ModelVersion, RunKind, SnapshotKind, TrainingRun, VersionKind
from training.registry import version_dir, version_path
from training.services import sampling_defaults
from training.smoke import SmokeConfig, count_steps
from training.snapshots import snapshot_file
from training.stage_configs import config_build, split_runner_keys


@runner(RunKind.SMOKE)
def smoke(ctx: RunContext) -> RunOutcome:
    config = SmokeConfig(**{k: v for k, v in ctx.run.config.items() if k in SmokeConfig.__dataclass_fields__})
    summary = count_steps(ctx.work_dir, config, ctx.reporter, resume_from=ctx.resume_from)
    return RunOutcome(summary=summary)


# --- helpers shared by the stage runners ---

def version_name(run: TrainingRun) -> str:
    prefix = run.project.slug if run.project_id else "shared"
    return f"{prefix}-{run.kind}-{run.pk}"


def checkpoint_dir(ctx: RunContext) -> Path:
    folder = ctx.work_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snapshot_path(snapshot: DatasetSnapshot | None, kind: str, run_kind: str, name: str = "train.jsonl") -> Path:
    if snapshot is None:
        raise TrainingError(f"a {run_kind} run needs a {kind} snapshot")
    if snapshot.kind != kind:
        raise TrainingError(f"a {run_kind} run trains on a {kind} snapshot; snapshot #{snapshot.pk} is {snapshot.kind}")
    return snapshot_file(snapshot, name)


def model_folder(version: ModelVersion | None, role: str, run_kind: str) -> Path:
    if version is None:
        raise TrainingError(f"a {run_kind} run needs a {role}")
    folder = version_path(version)
    if not (folder / "config.json").is_file():
        raise TrainingError(f"the folder of {role} {version.name!r} is missing from the model store ({folder})")
    return folder


def clean(value):
    """JSON that every database accepts: non-finite floats become None, paths and tuples plain values."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def config_json(config) -> dict:
    return clean(dataclasses.asdict(config))


def trained(ctx: RunContext, *, kind: str, result: dict, parent, config, metrics: dict | None = None) -> RunOutcome:
    name = version_name(ctx.run)
    summary = clean(result)
    return RunOutcome(
        summary=summary,
        version=VersionSpec(
            name=name, kind=kind, folder=version_dir(name), parent=parent, snapshot=ctx.run.snapshot,
            config=config_json(config), metrics=clean(metrics if metrics is not None else result),
        ),
    )


def in_processes(ctx: RunContext, target: str, train, parent: Path, data: Path, config) -> dict:
    """Call the stage in the worker, or under ``torchrun`` when the run's config asks for ``nproc`` > 1.

    Both paths get the same arguments; under torchrun they travel as JSON and rank 0's result
    comes back, while progress lines are forwarded to the run row as they are written.
    """
    _, runner_keys = split_runner_keys(ctx.run.kind, ctx.run.config)
    nproc = int(runner_keys.get("nproc", 1))
    out_dir = version_dir(version_name(ctx.run))
    if nproc <= 1:
        return train(parent, data, out_dir, config, ctx.reporter,
                     resume_from=ctx.resume_from, checkpoint_dir=checkpoint_dir(ctx))
    kwargs = {
        "parent_dir": str(parent), "data_path": str(data), "out_dir": str(out_dir), "config": config_json(config),
        "resume_from": str(ctx.resume_from) if ctx.resume_from else None,
        "checkpoint_dir": str(checkpoint_dir(ctx)),
    }
    return run_in_processes(target, kwargs, nproc, ctx.reporter, ctx.work_dir / "launch")


# --- the stages ---

@runner(RunKind.SFT)
def sft(ctx: RunContext) -> RunOutcome:
    from training.sft import train_sft

    run = ctx.run
    config = config_build(RunKind.SFT, run.config)
    data = snapshot_path(run.snapshot, SnapshotKind.SFT, run.kind)
    parent = model_folder(run.parent_version, "policy to start from", run.kind)
    result = in_processes(ctx, "training.sft:train_sft", train_sft, parent, data, config)
    return trained(ctx, kind=VersionKind.POLICY, result=result, parent=run.parent_version, config=config)


@runner(RunKind.REWARD)
def reward(ctx: RunContext) -> RunOutcome:
    from training.reward import train_reward

    run = ctx.run
    config = config_build(RunKind.REWARD, run.config)
    data = snapshot_path(run.snapshot, SnapshotKind.PREFERENCE, run.kind)
    parent = model_folder(run.parent_version, "model to initialise the reward model from", run.kind)
    result = in_processes(ctx, "training.reward:train_reward", train_reward, parent, data, config)
    return trained(ctx, kind=VersionKind.REWARD, result=result, parent=run.parent_version, config=config)


def sft_ancestor(version: ModelVersion) -> ModelVersion:
    """The frozen reference of PPO: the nearest ancestor not made by PPO (the SFT policy)."""
    from training.registry import lineage

    for node in lineage(version):
        if node.run_id is None or node.run.kind != RunKind.PPO:
            return node
    return version


def ptx_data(run: TrainingRun, reference: ModelVersion, runner_keys: dict) -> Path | None:
    """SFT data for the PPO-ptx term: the snapshot named in the config, else the reference's own."""
    if "ptx_snapshot" in runner_keys:
        snapshot = DatasetSnapshot.objects.filter(project=run.project, pk=runner_keys["ptx_snapshot"]).first()
        return snapshot_path(snapshot, SnapshotKind.SFT, "ppo-ptx")
    if reference.snapshot is not None and reference.snapshot.kind == SnapshotKind.SFT:
        return snapshot_path(reference.snapshot, SnapshotKind.SFT, "ppo-ptx")
    return None


@runner(RunKind.PPO)
def ppo(ctx: RunContext) -> RunOutcome:
    from training.ppo import train_ppo

    run = ctx.run
    config = config_build(RunKind.PPO, run.config)
    _, runner_keys = split_runner_keys(RunKind.PPO, run.config)
    prompts = snapshot_path(run.snapshot, SnapshotKind.PROMPTS, run.kind)
    policy = model_folder(run.parent_version, "policy (the SFT model)", run.kind)
    reward_model = model_folder(run.reward_version, "reward model", run.kind)
    if not config.reward_max_length:  # read the reward model at the length it was trained with
        trained_length = (run.reward_version.config or {}).get("max_length")
        config = dataclasses.replace(config, reward_max_length=int(trained_length or 0))
    reference = sft_ancestor(run.parent_version)
    ref_dir = model_folder(reference, "reference policy", run.kind) if reference.pk != run.parent_version.pk else None
    result = train_ppo(policy, reward_model, prompts, version_dir(version_name(run)), config, ctx.reporter,
                       resume_from=ctx.resume_from, checkpoint_dir=checkpoint_dir(ctx), ref_dir=ref_dir,
                       sft_data_path=ptx_data(run, reference, runner_keys))
    iterations = result.get("iterations") or []
    metrics = {k: v for k, v in result.items() if k != "iterations"}
    metrics.update({"iterations": len(iterations), "reward_version": run.reward_version.name,
                    "reference_version": reference.name})
    if iterations:
        metrics["initial_reward"] = iterations[0].get("reward")
    return trained(ctx, kind=VersionKind.POLICY, result=result, parent=run.parent_version, config=config,
                   metrics=metrics)


@runner(RunKind.MODERATION)
def moderation(ctx: RunContext) -> RunOutcome:
    from training.moderation import train_moderation

    run = ctx.run
    config = config_build(RunKind.MODERATION, run.config)
    data = snapshot_path(run.snapshot, SnapshotKind.MODERATION, run.kind)
    base_dir = model_folder(run.parent_version, "base model", run.kind) if run.parent_version else None
    result = train_moderation(data, version_dir(version_name(run)), config, ctx.reporter, base_dir=base_dir)
    return trained(ctx, kind=VersionKind.MODERATION, result=result, parent=run.parent_version, config=config)


# --- sampling: completions instead of a model version ---

SAMPLING_CHUNK_PROMPTS = 16


def read_prompts(path: Path) -> list[tuple[int, list[dict]]]:
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                rows.append((row["prompt_id"], messages_with_evidence(row["messages"], row.get("evidence"))))
    return rows


class ChunkReporter:
    """Maps a stage's progress inside one chunk of prompts onto the whole run, in prompts."""

    def __init__(self, reporter, done: int, size: int, total: int) -> None:
        self.reporter, self.done, self.size, self.total = reporter, done, size, total

    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        share = step / total if total else 1.0
        self.reporter.progress(min(self.total, self.done + int(share * self.size)), self.total, metrics)

    def checkpoint(self, path, step: int) -> None:
        """Sampling resumes from the completions already stored, not from a checkpoint."""

    def phase(self, name: str, done: int = 0, total: int = 0) -> None:
        self.reporter.phase(name, done, total)


@runner(RunKind.SAMPLING)
def sampling(ctx: RunContext) -> RunOutcome:
    """K completions per prompt of the snapshot, stored a chunk at a time so a resumed run skips
    the prompts it already sampled; the ranking queue serves a prompt once it has K completions."""
    from training.sampling import sample_completions

    run = ctx.run
    config = config_build(RunKind.SAMPLING, run.config, base=sampling_defaults(run.project))
    _, runner_keys = split_runner_keys(RunKind.SAMPLING, run.config)
    policy = model_folder(run.parent_version, "policy to sample from", run.kind)
    prompts = read_prompts(snapshot_path(run.snapshot, SnapshotKind.PROMPTS, run.kind))
    if runner_keys.get("max_prompts"):
        prompts = prompts[: int(runner_keys["max_prompts"])]
    already = set(run.completions.values_list("prompt_id", flat=True))
    todo = [(pid, messages) for pid, messages in prompts if pid not in already]
    params = {**config_json(config), "model_version": run.parent_version.name}
    total, created = len(prompts), 0
    done = total - len(todo)
    for start in range(0, len(todo), SAMPLING_CHUNK_PROMPTS):
        chunk = todo[start:start + SAMPLING_CHUNK_PROMPTS]
        chunk_config = dataclasses.replace(config, seed=config.seed + done)
        texts = sample_completions(policy, [m for _, m in chunk], chunk_config,
                                   ChunkReporter(ctx.reporter, done, len(chunk), total))
        rows = prompts_of(run.project).in_bulk([pid for pid, _ in chunk])
        with transaction.atomic():
            for (pid, _), answers in zip(chunk, texts, strict=True):
                if pid in rows:
                    created += len(completions_add(prompt=rows[pid], texts=list(answers),
                                                   model_version=run.parent_version, sampling_run=run,
                                                   sampling_params=params))
        done += len(chunk)
        ctx.reporter.progress(done, total, {"prompts_done": done, "completions": created})
    return RunOutcome(summary={
        "prompts": total, "prompts_sampled_before_resume": len(prompts) - len(todo),
        "completions_created": created, "k": config.k, "policy": run.parent_version.name,
    })

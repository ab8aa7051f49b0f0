"""The pre-training runner: in-process by default, under ``torchrun`` when ``nproc`` > 1."""

from __future__ import annotations

from dataclasses import asdict

from training.corpus import corpus_path
from training.errors import TrainingError
from training.execution import RunContext, RunOutcome, VersionSpec, runner
from training.launch import run_in_processes
from training.models import RunKind, VersionKind
from training.pretrain import PretrainConfig, pretrain
from training.registry import version_dir, version_path


@runner(RunKind.PRETRAIN)
def pretrain_run(ctx: RunContext) -> RunOutcome:
    run = ctx.run
    if run.corpus is None:
        raise TrainingError("a pre-training run needs a corpus")
    settings = dict(run.config)
    nproc = int(settings.pop("nproc", 1))
    try:
        config = PretrainConfig.from_dict(settings)
    except (TypeError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    if not config.from_scratch and run.parent_version is None:
        raise TrainingError("continued pre-training needs a parent model version")
    name = f"{run.project.slug}-pretrain-{run.pk}" if run.project else f"pretrain-{run.pk}"
    kwargs = {
        "corpus_path": str(corpus_path(run.corpus)),
        "out_dir": str(version_dir(name)),
        "config": asdict(config),
        "checkpoint_dir": str(ctx.work_dir / "checkpoints"),
        "resume_from": str(ctx.resume_from) if ctx.resume_from else None,
        "init_dir": None if config.from_scratch else str(version_path(run.parent_version)),
    }
    if nproc > 1:
        metrics = run_in_processes("training.pretrain:pretrain", kwargs, nproc, ctx.reporter, ctx.work_dir / "launch")
    else:
        metrics = pretrain(**kwargs, reporter=ctx.reporter)
    return RunOutcome(
        summary=metrics,
        version=VersionSpec(
            name=name, kind=VersionKind.POLICY, folder=version_dir(name),
            parent=None if config.from_scratch else run.parent_version,
            config={**asdict(config), "nproc": nproc, "corpus": run.corpus.name}, metrics=metrics,
        ),
    )

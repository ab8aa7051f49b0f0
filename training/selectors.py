"""Reads for training: runs, snapshots and model versions, scoped to what the requester may see."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from training.models import DatasetSnapshot, ModelVersion, RunStatus, TrainingRun, WorkerHeartbeat
from training.registry import lineage


def live_workers(*, since) -> list[WorkerHeartbeat]:
    return list(WorkerHeartbeat.objects.filter(last_seen__gte=since))


def base_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(name=settings.BASE_MODEL_NAME, project__isnull=True).first()


def runs_for_user(user) -> QuerySet[TrainingRun]:
    """Runs of the projects where ``user`` is a manager."""
    return TrainingRun.objects.filter(project__memberships__user=user, project__memberships__role="manager")


def versions_for_user(user) -> QuerySet[ModelVersion]:
    """Model versions of the user's projects, plus the shared base versions."""
    from django.db.models import Q

    return ModelVersion.objects.filter(Q(project__memberships__user=user) | Q(project__isnull=True)).distinct()


# --- Project-scoped reads for the run, model and snapshot pages and API. The caller has already
# passed ``annotation.selectors.project_for_user``; these only ever look inside that project.

def snapshots_of(project) -> QuerySet:
    return DatasetSnapshot.objects.filter(project=project).select_related("created_by").order_by("-created_at", "-id")


def snapshot_of(project, snapshot_id) -> DatasetSnapshot:
    """One snapshot of the project; 404 when it belongs to another project or does not exist."""
    return get_object_or_404(snapshots_of(project), pk=snapshot_id)


def runs_of(project, *, kind: str | None = None) -> QuerySet[TrainingRun]:
    runs = TrainingRun.objects.filter(project=project).select_related(
        "snapshot", "parent_version", "reward_version", "created_by", "model_version"
    )
    if kind:
        runs = runs.filter(kind=kind)
    return runs.order_by("-created_at", "-id")


def run_of(project, run_id) -> TrainingRun:
    return get_object_or_404(runs_of(project), pk=run_id)


def versions_of(project, *, kind: str | None = None) -> QuerySet[ModelVersion]:
    """The project's versions plus the shared base versions a run may start from."""
    versions = ModelVersion.objects.filter(Q(project=project) | Q(project__isnull=True)).select_related(
        "parent", "run", "snapshot"
    )
    if kind:
        versions = versions.filter(kind=kind)
    return versions.order_by("-created_at", "-id")


def version_of(project, name: str) -> ModelVersion:
    return get_object_or_404(versions_of(project), name=name)


def run_eta_seconds(run: TrainingRun, *, now=None) -> float | None:
    """Seconds left, extrapolated from the pace so far; None before the first step or once finished.

    A stage that reports ``eta_seconds`` with its progress (its own extrapolation of the time in its
    training steps, so loading and evaluations do not inflate it) is taken at its word; others are
    extrapolated from the time since the start."""
    if run.status != RunStatus.RUNNING or not run.started_at or run.progress <= 0 or run.progress >= 1:
        return None
    last = (run.metrics or [{}])[-1]
    if isinstance(last, dict) and isinstance(last.get("eta_seconds"), int | float):
        return max(0.0, float(last["eta_seconds"]))
    elapsed = ((now or timezone.now()) - run.started_at).total_seconds()
    return max(0.0, elapsed * (1 - run.progress) / run.progress)


def metric_columns(run: TrainingRun) -> list[str]:
    """The metric names of the run's series, in first-seen order (``step`` and ``time`` first)."""
    columns: list[str] = []
    for point in run.metrics or []:
        for key in point:
            if key not in columns and key not in ("step", "time"):
                columns.append(key)
    return columns


@dataclass
class LineageNode:
    """One version of an ancestry with what made it: its run, that run's snapshot and reward model."""

    version: ModelVersion
    run: TrainingRun | None
    snapshot: DatasetSnapshot | None
    reward_version: ModelVersion | None


def lineage_of(version: ModelVersion) -> list[LineageNode]:
    """The version and its ancestors, newest first, each down to the snapshot it trained on."""
    nodes = []
    for node in lineage(version):
        run = TrainingRun.objects.filter(pk=node.run_id).select_related("snapshot", "reward_version").first()
        snapshot = node.snapshot or (run.snapshot if run else None)
        nodes.append(LineageNode(version=node, run=run, snapshot=snapshot, reward_version=run.reward_version if run else None))
    return nodes


def nearest_ancestor(version: ModelVersion, *, run_kind: str) -> ModelVersion | None:
    """The closest version in the ancestry (itself included) made by a run of ``run_kind``."""
    for node in lineage(version):
        if node.run_id and TrainingRun.objects.filter(pk=node.run_id, kind=run_kind).exists():
            return node
    return None

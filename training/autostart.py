"""Auto-start: a reward-model run begins by itself once enough new rankings have arrived.

The periodic sweep task calls ``autostart_sweep``. For each project that switched it on, it counts
the rankings eligible for training; once ``autostart_every`` more than at the last auto-start have
arrived, and no reward-model run of the project is queued or running, it freezes a preference
snapshot and starts a run through ``services.run_start`` (the same checks as a manager's request).
Failures are written to the settings row for the runs page, never raised into the sweep.
"""

from __future__ import annotations

import logging

from django.db import transaction

from annotation.selectors import rankings_for_training
from training.errors import TrainingError
from training.models import ProjectTrainingSettings, RunKind, RunStatus, TrainingRun

log = logging.getLogger(__name__)


def training_settings_of(project) -> ProjectTrainingSettings:
    """The project's settings row (unsaved defaults when it has none yet)."""
    found = ProjectTrainingSettings.objects.filter(project=project).select_related("reward_parent").first()
    return found or ProjectTrainingSettings(project=project)


def training_settings_update(*, project, autostart_reward: bool, autostart_every: int, reward_parent=None,
                             reward_config: dict | None = None) -> ProjectTrainingSettings:
    """Save the auto-start settings; switching it on counts only rankings that arrive from now on."""
    from training.stage_configs import config_build

    if autostart_every < 1:
        raise TrainingError("auto-start needs at least 1 new ranking per run")
    if reward_parent is not None and reward_parent.project_id not in (None, project.pk):
        raise TrainingError(f"the version {reward_parent.name!r} belongs to another project")
    if autostart_reward:
        config_build(RunKind.REWARD, reward_config or {})
    with transaction.atomic():
        current, _ = ProjectTrainingSettings.objects.select_for_update().get_or_create(project=project)
        if autostart_reward and not current.autostart_reward:
            current.rankings_seen = rankings_for_training(project).count()
        current.autostart_reward = autostart_reward
        current.autostart_every = autostart_every
        current.reward_parent = reward_parent
        current.reward_config = reward_config or {}
        current.last_error = ""
        current.save()
    return current


def autostart_check(*, project) -> TrainingRun | None:
    """Start the project's reward-model run if it is due; returns the run, or None."""
    from training.services import run_start

    with transaction.atomic():
        current = (
            ProjectTrainingSettings.objects.select_for_update(of=("self",))
            .filter(project=project, autostart_reward=True)
            .select_related("reward_parent")
            .first()
        )
        if current is None:
            return None
        eligible = rankings_for_training(project).count()
        if eligible - current.rankings_seen < current.autostart_every:
            return None
        busy = TrainingRun.objects.filter(
            project=project, kind=RunKind.REWARD, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
        ).exists()
        if busy:
            return None
        try:
            run = run_start(project=project, kind=RunKind.REWARD, created_by=None,
                            parent_version=current.reward_parent, config=current.reward_config)
        except TrainingError as exc:
            current.last_error = str(exc)
            current.save(update_fields=["last_error", "updated_at"])
            log.warning("auto-start of a reward-model run for %s failed: %s", project.slug, exc)
            return None
        current.rankings_seen = eligible
        current.last_run = run
        current.last_error = ""
        current.save(update_fields=["rankings_seen", "last_run", "last_error", "updated_at"])
    log.info("auto-started reward-model run #%s for %s after %s eligible rankings", run.pk, project.slug, eligible)
    return run


def autostart_sweep() -> list[int]:
    """Check every project with auto-start on; the ids of the runs started."""
    started = []
    for current in ProjectTrainingSettings.objects.filter(autostart_reward=True).select_related("project"):
        try:
            run = autostart_check(project=current.project)
        except Exception:
            log.exception("auto-start check of %s failed", current.project.slug)
            continue
        if run is not None:
            started.append(run.pk)
    return started

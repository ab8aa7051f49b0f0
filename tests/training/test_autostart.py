"""Auto-start: a reward-model run begins by itself once enough new rankings have arrived."""

import pytest

from annotation.models import ReviewState
from tests.training import labels
from training import autostart
from training.errors import TrainingError
from training.models import RunKind, RunStatus, TrainingRun


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, settings):
    settings.DATA_DIR = tmp_path / "data"


def rank(project, author, n, start=0, state=ReviewState.APPROVED):
    for i in range(start, start + n):
        labels.ranked(project, author, f"Prompt {i}", ["good", "bad"], [[0], [1]], state=state)


def test_a_reward_run_starts_after_n_new_rankings_and_not_before(project, alice, charlie, tiny_version):
    rank(project, charlie, 2)
    autostart.training_settings_update(project=project, autostart_reward=True, autostart_every=3,
                                       reward_parent=tiny_version)
    rank(project, charlie, 2, start=2)
    assert autostart.autostart_sweep() == []

    rank(project, charlie, 1, start=4)
    started = autostart.autostart_sweep()

    run = TrainingRun.objects.get(pk=started[0])
    assert run.kind == RunKind.REWARD and run.status == RunStatus.QUEUED and run.created_by is None
    assert run.parent_version == tiny_version and run.snapshot.row_count == 5
    assert autostart.autostart_sweep() == [], "the next run waits for 3 more rankings"


def test_no_second_run_while_one_is_queued(project, alice, charlie, tiny_version):
    autostart.training_settings_update(project=project, autostart_reward=True, autostart_every=1,
                                       reward_parent=tiny_version)
    rank(project, charlie, 1)
    assert len(autostart.autostart_sweep()) == 1
    rank(project, charlie, 1, start=1)
    assert autostart.autostart_sweep() == []
    assert TrainingRun.objects.filter(kind=RunKind.REWARD).count() == 1


def test_rejected_rankings_do_not_count_and_projects_without_the_switch_are_left_alone(
    project, other_project, alice, charlie, eve, tiny_version
):
    autostart.training_settings_update(project=project, autostart_reward=True, autostart_every=2,
                                       reward_parent=tiny_version)
    rank(project, charlie, 3, state=ReviewState.REJECTED)
    rank(other_project, eve, 5)
    assert autostart.autostart_sweep() == []


def test_a_failed_start_is_recorded_for_the_manager(project, alice, charlie):
    project.base_model = None
    project.save()
    autostart.training_settings_update(project=project, autostart_reward=True, autostart_every=1)
    rank(project, charlie, 1)
    assert autostart.autostart_sweep() == []
    assert "needs a version to initialise the reward model from" in autostart.training_settings_of(project).last_error


def test_bad_settings_are_refused(project, tiny_version):
    with pytest.raises(TrainingError, match="unknown reward config key 'lr_typo'"):
        autostart.training_settings_update(project=project, autostart_reward=True, autostart_every=2,
                                           reward_config={"lr_typo": 1})


def test_the_sweep_task_runs_the_auto_start(project, charlie, tiny_version):
    from training.tasks import runs_sweep

    autostart.training_settings_update(project=project, autostart_reward=True, autostart_every=1,
                                       reward_parent=tiny_version)
    rank(project, charlie, 1)
    assert len(runs_sweep()["autostarted"]) == 1

"""Migration 0005: reward configs stored before the frozen default keep asking for fine-tuning."""

import pytest

from tests.migration_steps import back_to_latest, migrate  # noqa: F401 (a fixture)
from training.reward import RewardConfig

BEFORE, AFTER = [("training", "0004_trainingrun_phase")], [("training", "0005_reward_configs_keep_fine_tuning")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("back_to_latest")
def test_stored_fine_tuning_reward_configs_get_the_trained_backbone_and_others_stay():
    apps = migrate(BEFORE)
    TrainingRun = apps.get_model("training", "TrainingRun")
    Settings = apps.get_model("training", "ProjectTrainingSettings")
    # only training's tables go back to 0004; annotation's stay at their newest, so the project is made as today
    from django.contrib.auth.models import User

    from annotation.models import Project

    project = Project.objects.create(name="Old", slug="old", created_by=User.objects.create(username="bob"))
    configs = {"tuned": {"epochs": 2, "learning_rate": 1e-4}, "plain": {"max_length": 256},
               "chosen": {"backbone": "trained", "epochs": 2}}
    runs = {name: TrainingRun.objects.create(project_id=project.pk, kind="reward", config=config)
            for name, config in configs.items()}
    sft = TrainingRun.objects.create(project_id=project.pk, kind="sft", config={"epochs": 2})
    Settings.objects.create(project_id=project.pk, reward_config={"train_layers": 4})

    apps = migrate(AFTER)

    stored = {name: apps.get_model("training", "TrainingRun").objects.get(pk=run.pk).config for name, run in runs.items()}
    assert stored == {"tuned": {"epochs": 2, "learning_rate": 1e-4, "backbone": "trained"}, "plain": {"max_length": 256},
                      "chosen": {"backbone": "trained", "epochs": 2}}
    assert apps.get_model("training", "TrainingRun").objects.get(pk=sft.pk).config == {"epochs": 2}
    settings = apps.get_model("training", "ProjectTrainingSettings").objects.get()
    assert settings.reward_config == {"train_layers": 4, "backbone": "trained"}
    for config in (*stored.values(), settings.reward_config):
        RewardConfig.from_dict(config)  # every stored config is accepted by the new check

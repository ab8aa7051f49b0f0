"""Reward configs written before the frozen backbone became the default keep meaning what they meant.

A stored reward config (a run's, or a project's auto-start config) that sets a fine-tuning key (epochs,
learning_rate, train_layers, ...) and no ``backbone`` asked for the old fine-tuned recipe: it gets
``"backbone": "trained"``, so a queued or resumed run trains as it was set up to, and the new check
(a fine-tuning key on the frozen backbone is an error) does not refuse it.
"""

from django.db import migrations

FINE_TUNING_KEYS = {"epochs", "max_steps", "batch_size", "micro_batch_size", "learning_rate", "warmup_ratio",
                    "min_lr_ratio", "weight_decay", "grad_clip", "lora", "lora_r", "lora_alpha", "lora_dropout",
                    "lora_target_modules", "train_layers"}  # training.reward_config.FINE_TUNING_ONLY as of this migration


def _marked(config):
    if isinstance(config, dict) and "backbone" not in config and FINE_TUNING_KEYS & set(config):
        return {**config, "backbone": "trained"}
    return None


def forwards(apps, schema_editor):
    TrainingRun = apps.get_model("training", "TrainingRun")
    Settings = apps.get_model("training", "ProjectTrainingSettings")
    for run in TrainingRun.objects.filter(kind="reward").only("pk", "config").iterator():
        marked = _marked(run.config)
        if marked is not None:
            TrainingRun.objects.filter(pk=run.pk).update(config=marked)
    for current in Settings.objects.only("pk", "reward_config").iterator():
        marked = _marked(current.reward_config)
        if marked is not None:
            Settings.objects.filter(pk=current.pk).update(reward_config=marked)


class Migration(migrations.Migration):
    dependencies = [("training", "0004_trainingrun_phase")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

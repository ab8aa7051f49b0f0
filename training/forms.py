"""Forms of the run and snapshot pages; they parse input into what the services take, nothing more."""

from __future__ import annotations

import json

from django import forms

from config.input import loads
from training.models import SnapshotKind, VersionKind
from training.selectors import snapshots_of, versions_of
from training.services import STARTABLE_KINDS


def _json_object(raw: str, what: str) -> dict:
    raw = (raw or "").strip()
    if not raw:
        return {}
    try:
        value = loads(raw)
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(value, dict):
        raise forms.ValidationError(f"{what} must be a JSON object, like {{\"max_steps\": 20}}")
    return value


class VersionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{obj.name} ({obj.kind})"


class SnapshotChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"#{obj.pk} {obj.kind}, {obj.row_count} rows, {obj.created_at:%Y-%m-%d %H:%M}"


class RunStartForm(forms.Form):
    kind = forms.ChoiceField(choices=[])
    snapshot = SnapshotChoiceField(queryset=None, required=False, empty_label="Freeze a new one from current labels")
    parent_version = VersionChoiceField(
        queryset=None, required=False, empty_label="Default (the project's base model for SFT and reward)"
    )
    reward_version = VersionChoiceField(queryset=None, required=False, empty_label="None (PPO needs one)")
    config = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 6, "class": "mono"}),
        help_text="JSON object of config keys to change; anything left out keeps the default shown.",
    )

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        from training.models import RunKind

        self.fields["kind"].choices = [(k, RunKind(k).label) for k in STARTABLE_KINDS]
        self.fields["snapshot"].queryset = snapshots_of(project)
        self.fields["parent_version"].queryset = versions_of(project).exclude(kind=VersionKind.MODERATION)
        self.fields["reward_version"].queryset = versions_of(project, kind=VersionKind.REWARD)

    def clean_config(self) -> dict:
        return _json_object(self.cleaned_data.get("config"), "Config")


class SnapshotFreezeForm(forms.Form):
    kind = forms.ChoiceField(choices=SnapshotKind.choices)
    options = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"class": "mono", "placeholder": '{"needs_completions": true}'}),
        help_text="Prompts only: needs_completions (true/false), limit (a number).",
    )

    def clean_options(self) -> dict:
        return _json_object(self.cleaned_data.get("options"), "Options")


class AutostartForm(forms.Form):
    autostart_reward = forms.BooleanField(required=False, label="Start a reward-model run as rankings arrive")
    autostart_every = forms.IntegerField(min_value=1, initial=50, label="Every N new rankings")
    reward_parent = VersionChoiceField(queryset=None, required=False,
                                       empty_label="The project's base model")
    reward_config = forms.CharField(required=False, widget=forms.TextInput(attrs={"class": "mono"}),
                                    label="Reward config (JSON)")

    def __init__(self, *args, project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reward_parent"].queryset = versions_of(project).exclude(kind=VersionKind.MODERATION)

    def clean_reward_config(self) -> dict:
        return _json_object(self.cleaned_data.get("reward_config"), "Reward config")

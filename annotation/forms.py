"""Forms of the labeling, review and manager pages: they parse input into what the services take."""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth import get_user_model

from annotation.models import Project, Role
from annotation.ranking_rules import FLAGS
from config.input import loads

SKIP_REASONS = [
    ("unclear", "The prompt is unclear"),
    ("expertise", "Needs expertise I don't have"),
    ("inappropriate", "Inappropriate or harmful prompt"),
    ("broken", "Completions are broken or missing"),
    ("other", "Other"),
]
FLAG_REASONS = ["Harmful or unsafe request", "Contains personal data", "Spam, nonsense or not a prompt", "Other"]
MAX_TIME_MS = 24 * 3600 * 1000


class TimedForm(forms.Form):
    """Every task form carries the milliseconds the labeler spent, measured in the browser."""

    time_spent_ms = forms.IntegerField(required=False, min_value=0)

    def clean_time_spent_ms(self) -> int:
        return min(self.cleaned_data.get("time_spent_ms") or 0, MAX_TIME_MS)


class DemonstrationForm(TimedForm):
    content = forms.CharField(strip=True, max_length=50_000, error_messages={"required": "Write an answer first."})


class RankingForm(TimedForm):
    """``order`` is JSON tiers of completion ids, best first; flags come as ``flag-<id>`` checkboxes."""

    order = forms.CharField(error_messages={"required": "Place every answer in a tier first."})
    comment = forms.CharField(required=False, max_length=5_000)

    def __init__(self, *args, completion_ids: list[int], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.completion_ids = completion_ids

    def clean_order(self) -> list[list[int]]:
        try:
            order = loads(self.cleaned_data["order"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError("The ranking could not be read; reload the page.") from exc
        if not isinstance(order, list) or not all(isinstance(t, list) for t in order):
            raise forms.ValidationError("The ranking could not be read; reload the page.")
        tiers = [[int(c) for c in tier] for tier in order if tier]
        placed = [c for tier in tiers for c in tier]
        if sorted(placed) != sorted(self.completion_ids):
            missing = len(set(self.completion_ids) - set(placed))
            raise forms.ValidationError(
                f"Place every answer in a tier first ({missing} left)." if missing else "Each answer goes in one tier."
            )
        return tiers

    def flags(self) -> dict[str, list[str]]:
        flags: dict[str, list[str]] = {}
        for cid in self.completion_ids:
            chosen = [f for f in self.data.getlist(f"flag-{cid}") if f in FLAGS]
            if chosen:
                flags[str(cid)] = chosen
        return flags


class SkipForm(forms.Form):
    reason = forms.ChoiceField(choices=SKIP_REASONS)
    detail = forms.CharField(required=False, max_length=150)

    def reason_text(self) -> str:
        label = dict(SKIP_REASONS)[self.cleaned_data["reason"]]
        detail = self.cleaned_data.get("detail", "").strip()
        return f"{label}: {detail}" if detail else label


class FlagForm(forms.Form):
    reason = forms.CharField(max_length=150, required=False)


class PromptWriteForm(forms.Form):
    text = forms.CharField(
        max_length=20_000, strip=True, widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": "Write the prompt first."},
    )


class ReviewEditForm(forms.Form):
    content = forms.CharField(strip=True, max_length=50_000)


class ReviewRejectForm(forms.Form):
    reason = forms.CharField(max_length=500, strip=True, error_messages={"required": "Say why it is rejected."})


class ProjectSettingsForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = [
            "name", "guidelines", "completions_per_prompt", "labels_per_item", "review_rate", "gold_rate",
            "lease_seconds", "allow_self_review",
        ]
        widgets = {"guidelines": forms.Textarea(attrs={"rows": 12, "class": "mono"})}
        labels = {"completions_per_prompt": "K (completions per prompt)"}
        help_texts = {"labels_per_item": (
            "How many labelers see each item. Raising it reopens items already labeled, so the next labelers "
            "get them too; lowering it closes items that have enough labels (labels already given are kept)."
        )}

    def clean_completions_per_prompt(self) -> int:
        k = self.cleaned_data["completions_per_prompt"]
        if not 2 <= k <= 9:
            raise forms.ValidationError("K must be between 2 and 9.")
        return k

    def _share(self, name: str) -> float:
        value = self.cleaned_data[name]
        if not 0 <= value <= 1:
            raise forms.ValidationError("A share between 0 and 1, e.g. 0.2 for 20%.")
        return value

    def clean_review_rate(self) -> float:
        return self._share("review_rate")

    def clean_gold_rate(self) -> float:
        return self._share("gold_rate")


class ProjectNewForm(ProjectSettingsForm):
    class Meta(ProjectSettingsForm.Meta):
        fields = ["name", "guidelines", "completions_per_prompt", "labels_per_item", "review_rate"]


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.LABELER)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise forms.ValidationError(f"No account named {username!r}; ask an administrator to create it.")
        return user


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[("prompts", "Prompts"), ("preferences", "Preferences (pairs, rankings, scored answers)")],
        initial="prompts", required=False)
    file = forms.FileField(help_text="JSONL (one JSON object a line), CSV with a header row, or Parquet.")
    review = forms.BooleanField(required=False, label="Send imported rankings to review",
                                help_text="Off: they count for training at once.")

    def clean_kind(self) -> str:
        return self.cleaned_data.get("kind") or "prompts"

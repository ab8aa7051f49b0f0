"""API shapes of annotation objects. Input serializers only parse; the services decide and explain.

Ranking ``order`` and ``flags`` are taken as raw JSON on purpose: ``ranking_submit`` validates them
against the prompt's completions and says exactly what is wrong (``{"detail": ...}``).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.api_shapes import completions_shown
from annotation.models import (
    Assignment,
    Demonstration,
    Invitation,
    Membership,
    Project,
    Prompt,
    Ranking,
    Role,
)
from annotation.pairs import ranking_pairs


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["slug", "name", "guidelines", "completions_per_prompt", "labels_per_item", "review_rate",
                  "lease_seconds", "gold_rate", "created_at", "role"]

    def get_role(self, project) -> str | None:
        return getattr(project, "requester_role", None) or self.context.get("roles", {}).get(project.pk)


class ProjectCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False)
    guidelines = serializers.CharField(required=False, allow_blank=True, default="")
    completions_per_prompt = serializers.IntegerField(min_value=2, max_value=9, default=4)
    labels_per_item = serializers.IntegerField(min_value=1, max_value=50, default=1)
    review_rate = serializers.FloatField(min_value=0, max_value=1, default=0.2)


class PromptSerializer(serializers.ModelSerializer):
    """``is_gold`` only when the context says ``show_gold`` (reviewers and managers): a labeler who could
    tell gold items apart could label them with extra care and game the quality check."""

    is_gold = serializers.BooleanField(read_only=True, required=False,
                                       help_text="Only for reviewers and managers; absent for labelers.")

    class Meta:
        model = Prompt
        fields = ["id", "messages", "text", "source", "metadata", "evidence", "is_gold", "flag_count", "created_at"]

    def to_representation(self, prompt):
        data = super().to_representation(prompt)
        if not self.context.get("show_gold"):
            data.pop("is_gold", None)
        return data


class PromptImportSerializer(serializers.Serializer):
    """``records``: objects like a JSONL line: prompt/text/messages, metadata, answer, completions, evidence."""

    records = serializers.ListField(child=serializers.JSONField(), allow_empty=False, max_length=10_000)


class PromptUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .jsonl or .csv file, UTF-8.")


class PreferenceImportSerializer(serializers.Serializer):
    """``records``: pairs ``{prompt|messages, chosen, rejected}``, rankings ``{prompt|messages, completions,
    ranks}`` or scored completions ``{prompt, completions: [{text, score}]}``; ``review``: send the imported
    rankings to the review queue instead of straight to training."""

    records = serializers.ListField(child=serializers.JSONField(), allow_empty=False, max_length=10_000)
    review = serializers.BooleanField(default=False)


class PreferenceUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A .jsonl, .csv or .parquet file of preferences.")
    review = serializers.BooleanField(default=False)


class DuplicateSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()


class ImportReportSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.SerializerMethodField()
    lines = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.CharField(), help_text="Fields read but not used.")

    @extend_schema_field(DuplicateSerializer(many=True))
    def get_duplicates(self, report) -> list[dict]:
        return [{"line": line, "reason": reason} for line, reason in report.duplicates]


class ImportFailedSerializer(serializers.Serializer):
    """A failed import (``detail`` and ``problems`` by line), or a malformed request (errors by field)."""

    detail = serializers.CharField(required=False)
    problems = serializers.ListField(child=serializers.CharField(), required=False)


class PromptWriteSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=20_000, trim_whitespace=True)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, trim_whitespace=True)


class CompletionShownSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()


class TaskSerializer(serializers.ModelSerializer):
    """A leased task: the prompt, and for a ranking its K completions in a per-task shuffled order.
    The API writes it with ``annotation.api_shapes.task_data``; this describes it for the schema."""

    prompt = PromptSerializer(read_only=True)
    completions = serializers.SerializerMethodField()

    class Meta:
        model = Assignment
        fields = ["id", "kind", "status", "leased_at", "expires_at", "prompt", "completions"]

    @extend_schema_field(CompletionShownSerializer(many=True))
    def get_completions(self, assignment) -> list[dict]:
        return completions_shown(assignment)


class DemonstrationSubmitSerializer(serializers.Serializer):
    content = serializers.CharField(max_length=50_000, allow_blank=True, trim_whitespace=False)
    time_spent_ms = serializers.IntegerField(min_value=0, required=False, default=0)


class RankingSubmitSerializer(serializers.Serializer):
    order = serializers.JSONField(help_text="Tiers of completion ids, best first: [[3], [1, 4], [2]] (1 and 4 tie).")
    flags = serializers.JSONField(required=False, default=dict,
                                  help_text='{"<completion id>": ["unsafe", "factually_wrong", ...]}; "not_supported" '
                                            '(by the evidence) only where the prompt has evidence.')
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    time_spent_ms = serializers.IntegerField(min_value=0, required=False, default=0)


class LabelSerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True)
    prompt_text = serializers.CharField(source="prompt.text", read_only=True)
    review_fields = ["review_state", "needs_review", "reviewer", "reviewed_at", "review_comment", "time_spent_ms",
                     "created_at"]


class DemonstrationSerializer(LabelSerializer):
    class Meta:
        model = Demonstration
        fields = ["id", "prompt", "prompt_text", "assignment", "author", "content", "original_content",
                  *LabelSerializer.review_fields]


class RankingSerializer(LabelSerializer):
    pairs = serializers.SerializerMethodField()

    class Meta:
        model = Ranking
        fields = ["id", "prompt", "prompt_text", "assignment", "author", "order", "flags", "comment", "pairs",
                  *LabelSerializer.review_fields]

    def get_pairs(self, ranking) -> list[list[int]]:
        return [list(pair) for pair in ranking_pairs(ranking.order)]


class LabelCountsSerializer(serializers.Serializer):
    today = serializers.IntegerField()
    total = serializers.IntegerField()
    median_seconds_today = serializers.FloatField(allow_null=True)
    approved = serializers.IntegerField()
    pending_review = serializers.IntegerField()
    rejected = serializers.IntegerField()


class LabelerSummarySerializer(serializers.Serializer):
    date = serializers.DateField()
    demonstrations = LabelCountsSerializer()
    rankings = LabelCountsSerializer()
    skipped = serializers.IntegerField()


class ApproveSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class EditSerializer(serializers.Serializer):
    content = serializers.CharField(max_length=50_000, allow_blank=True)


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "created_at"]


class MemberSetSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug", read_only=True)
    project_name = serializers.CharField(source="project.name", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    invited_by = serializers.CharField(source="invited_by.username", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Invitation
        fields = ["id", "project", "project_name", "username", "role", "invited_by", "created_at"]

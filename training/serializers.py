"""API shapes of snapshots, runs and model versions; input serializers only parse, services decide."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from training import selectors
from training.models import DatasetSnapshot, ModelVersion, SnapshotKind, TrainingRun
from training.snapshots import snapshot_files


class SnapshotSerializer(serializers.ModelSerializer):
    files = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = DatasetSnapshot
        fields = ["id", "kind", "row_count", "content_hash", "options", "files", "created_by", "created_at"]

    def get_files(self, snapshot) -> dict[str, str]:
        slug = self.context.get("slug") or snapshot.project.slug
        url = reverse("training:api-snapshot-download", args=[slug, snapshot.pk])
        return {name: f"{url}?file={name}" for name in snapshot_files(snapshot)}


class SnapshotDetailSerializer(SnapshotSerializer):
    class Meta(SnapshotSerializer.Meta):
        fields = [*SnapshotSerializer.Meta.fields, "item_ids"]


class SnapshotCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SnapshotKind.choices)
    options = serializers.DictField(required=False, default=dict)


class RunSerializer(serializers.ModelSerializer):
    snapshot = serializers.PrimaryKeyRelatedField(read_only=True)
    parent_version = serializers.SlugRelatedField(slug_field="name", read_only=True)
    reward_version = serializers.SlugRelatedField(slug_field="name", read_only=True)
    model_version = serializers.SerializerMethodField()
    eta_seconds = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "kind", "status", "progress", "step", "total_steps", "eta_seconds", "config", "snapshot",
            "parent_version", "reward_version", "model_version", "summary", "error", "attempt",
            "cancel_requested", "created_by", "created_at", "started_at", "finished_at",
        ]

    def get_model_version(self, run) -> str | None:
        version = getattr(run, "model_version", None)
        return version.name if version else None

    def get_eta_seconds(self, run) -> float | None:
        return selectors.run_eta_seconds(run)


class RunDetailSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "metrics", "checkpoint_path"]


class RunCreateSerializer(serializers.Serializer):
    """Versions by name, the snapshot by id (omit it to freeze a new one), config keys to override."""

    kind = serializers.CharField()
    snapshot = serializers.IntegerField(required=False, allow_null=True)
    parent_version = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    reward_version = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    config = serializers.DictField(required=False, default=dict)


class ModelVersionSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    run = serializers.PrimaryKeyRelatedField(read_only=True)
    snapshot = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["name", "kind", "parent", "run", "snapshot", "path", "config", "metrics", "created_at"]


class LineageNodeSerializer(serializers.Serializer):
    """One ancestor: the version, the run that made it, its snapshot and (PPO) its reward model."""

    version = serializers.CharField(source="version.name")
    kind = serializers.CharField(source="version.kind")
    run = serializers.IntegerField(source="run.pk", default=None)
    run_kind = serializers.CharField(source="run.kind", default=None)
    snapshot = serializers.IntegerField(source="snapshot.pk", default=None)
    snapshot_kind = serializers.CharField(source="snapshot.kind", default=None)
    snapshot_hash = serializers.CharField(source="snapshot.content_hash", default=None)
    reward_version = serializers.CharField(source="reward_version.name", default=None)
    metrics = serializers.JSONField(source="version.metrics")


class ModelVersionDetailSerializer(ModelVersionSerializer):
    lineage = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "lineage"]

    def get_lineage(self, version) -> list[dict]:
        return LineageNodeSerializer(selectors.lineage_of(version), many=True).data

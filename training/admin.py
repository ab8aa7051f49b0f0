from django.contrib import admin

from training.models import DatasetSnapshot, ModelVersion, TrainingRun, WorkerHeartbeat


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "status", "progress", "attempt", "heartbeat_at", "created_at")
    list_filter = ("kind", "status")
    readonly_fields = ("metrics", "summary", "heartbeat_at", "worker_id", "error")


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "project", "parent", "run", "created_at")
    list_filter = ("kind",)


@admin.register(DatasetSnapshot)
class DatasetSnapshotAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "row_count", "content_hash", "created_at")


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("hostname", "queues", "pid", "last_seen")

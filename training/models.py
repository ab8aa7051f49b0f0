"""Dataset snapshots, training runs and the model registry.

A ``TrainingRun`` row is the source of truth for a job: the Celery message only says "run N is
ready". Its state machine (queued -> running -> succeeded | failed | cancelled, and running ->
queued when a lost worker's run is re-queued for resume) lives in ``training/runs.py``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class SnapshotKind(models.TextChoices):
    SFT = "sft", "Demonstrations (SFT messages)"
    PREFERENCE = "preference", "Rankings (preferences)"
    MODERATION = "moderation", "Moderation labels"
    PROMPTS = "prompts", "Prompts (for sampling and PPO)"


class DatasetSnapshot(models.Model):
    """The frozen ids and content hash of the labels a run trained on, written as files."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="snapshots")
    kind = models.CharField(max_length=16, choices=SnapshotKind.choices)
    item_ids = models.JSONField(default=list, help_text="Primary keys of the frozen rows.")
    content_hash = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField(default=0)
    path = models.CharField(max_length=500, blank=True, help_text="Folder under the data dir.")
    options = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "kind", "content_hash"], name="snapshot_unique_content"),
            models.CheckConstraint(condition=Q(kind__in=SnapshotKind.values), name="snapshot_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} snapshot {self.content_hash[:10]} ({self.row_count} rows)"


class Corpus(models.Model):
    """Plain text a pre-training run reads: an upload (streamed to the data dir) or rendered demonstrations."""

    class Source(models.TextChoices):
        UPLOAD = "upload", "Uploaded file"
        DEMONSTRATIONS = "demonstrations", "Approved demonstrations"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="corpora")
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    path = models.CharField(max_length=500, help_text="Text file under the data dir, one document per line.")
    size_bytes = models.PositiveBigIntegerField(default=0)
    line_count = models.PositiveIntegerField(default=0)
    content_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "corpora"

    def __str__(self) -> str:
        return f"{self.name} ({self.line_count} lines)"


class RunKind(models.TextChoices):
    SFT = "sft", "Supervised fine-tuning"
    SAMPLING = "sampling", "Sampling completions"
    REWARD = "reward", "Reward model"
    PPO = "ppo", "PPO"
    MODERATION = "moderation", "Moderation classifier"
    PRETRAIN = "pretrain", "Pre-training"
    SMOKE = "smoke", "Smoke test (counts steps)"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class TrainingRun(models.Model):
    project = models.ForeignKey(
        "annotation.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    config = models.JSONField(default=dict, blank=True)
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    parent_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="child_runs"
    )
    corpus = models.ForeignKey(Corpus, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    reward_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The reward model a PPO run optimises against.",
    )
    progress = models.FloatField(default=0.0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    phase = models.JSONField(
        default=dict, blank=True,
        help_text='What the run does before its steps: {"name", "done", "total", "since"}; empty once steps run.',
    )
    metrics = models.JSONField(default=list, blank=True, help_text="Time series: one dict per logged step.")
    summary = models.JSONField(default=dict, blank=True, help_text="Final metrics of the run.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=200, blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    checkpoint_path = models.CharField(max_length=500, blank=True)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=RunKind.values), name="run_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="run_status_valid"),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="run_progress_is_share"),
            models.CheckConstraint(
                condition=~Q(status=RunStatus.FAILED) | ~Q(error=""), name="run_failed_has_reason"
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.kind} run #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class VersionKind(models.TextChoices):
    POLICY = "policy", "Policy (causal LM)"
    REWARD = "reward", "Reward model"
    MODERATION = "moderation", "Moderation classifier"


class ModelVersion(models.Model):
    """A folder in the model store that ``AutoModelFor*.from_pretrained`` opens, with its lineage."""

    name = models.SlugField(max_length=120, unique=True)
    kind = models.CharField(max_length=16, choices=VersionKind.choices)
    project = models.ForeignKey(
        "annotation.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="model_versions"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    snapshot = models.ForeignKey(DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    path = models.CharField(max_length=500, help_text="Folder, relative to the model store.")
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=VersionKind.values), name="version_kind_valid"),
        ]

    def __str__(self) -> str:
        return self.name


class WorkerHeartbeat(models.Model):
    """A live Celery worker and the queues it consumes; written by the worker every few seconds."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    pid = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return self.hostname


class ProjectTrainingSettings(models.Model):
    """Per-project training switches that are not annotation settings: auto-starting reward-model runs.

    When ``autostart_reward`` is on, the periodic sweep starts a reward-model run once
    ``autostart_every`` rankings eligible for training have arrived since the last one.
    """

    project = models.OneToOneField("annotation.Project", on_delete=models.CASCADE, related_name="training_settings")
    autostart_reward = models.BooleanField(default=False, help_text="Start a reward-model run as rankings arrive.")
    autostart_every = models.PositiveIntegerField(default=50, help_text="New rankings that trigger a run.")
    reward_parent = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The model a started reward model is initialised from (default: the project's base model).",
    )
    reward_config = models.JSONField(default=dict, blank=True, help_text="Config keys of the started runs.")
    rankings_seen = models.PositiveIntegerField(default=0, help_text="Eligible rankings at the last auto-start.")
    last_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "project training settings"
        constraints = [
            models.CheckConstraint(condition=Q(autostart_every__gte=1), name="autostart_every_positive"),
        ]

    def __str__(self) -> str:
        return f"training settings of {self.project}"

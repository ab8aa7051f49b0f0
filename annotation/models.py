"""Projects, their members, and the labels people make: prompts, demonstrations, rankings.

A ranking of K completions is stored once, as an ordered list of tiers (ties share a tier); it is
expanded to its C(K,2) comparisons only by selectors and exports.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Role(models.TextChoices):
    MANAGER = "manager", "Manager"
    REVIEWER = "reviewer", "Reviewer"
    LABELER = "labeler", "Labeler"


class ReviewState(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class TaskKind(models.TextChoices):
    DEMONSTRATION = "demonstration", "Write a demonstration"
    RANKING = "ranking", "Rank completions"
    MODERATION = "moderation", "Label for moderation"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown beside every task.")
    base_model = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    completions_per_prompt = models.PositiveSmallIntegerField(default=4, help_text="K completions to rank.")
    labels_per_item = models.PositiveSmallIntegerField(default=1, help_text="How many labelers see each item.")
    review_rate = models.FloatField(default=0.2, help_text="Share of submissions sampled for review.")
    sampling_temperature = models.FloatField(default=0.9)
    sampling_top_p = models.FloatField(default=0.95)
    max_new_tokens = models.PositiveIntegerField(default=128)
    lease_seconds = models.PositiveIntegerField(default=1800)
    gold_rate = models.FloatField(default=0.0, help_text="Share of served tasks that are gold items.")
    gold_threshold = models.FloatField(default=0.7, help_text="Gold accuracy under which a labeler is flagged.")
    allow_self_review = models.BooleanField(
        default=False, help_text="A reviewer may approve or edit their own labels (off: someone else must review them)."
    )
    rm_use_consensus = models.BooleanField(
        default=False, help_text="Reward-model snapshots use one consensus ranking per prompt instead of every ranking."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(completions_per_prompt__gte=2) & Q(completions_per_prompt__lte=9),
                name="project_k_between_2_and_9",
            ),
            models.CheckConstraint(condition=Q(labels_per_item__gte=1), name="project_labels_per_item_positive"),
            models.CheckConstraint(
                condition=Q(review_rate__gte=0) & Q(review_rate__lte=1), name="project_review_rate_is_share"
            ),
            models.CheckConstraint(
                condition=Q(sampling_top_p__gt=0) & Q(sampling_top_p__lte=1), name="project_top_p_in_range"
            ),
            models.CheckConstraint(condition=Q(sampling_temperature__gte=0), name="project_temperature_nonneg"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_once_per_project"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.project}"


class Invitation(models.Model):
    """A pending offer of a role in a project: a membership only once the invited user accepts it.

    Nobody becomes a member of a project without saying yes (a site admin excepted), so a project
    cannot pull a user's chat or API traffic in behind their back.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="invitation_once_per_project"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="invitation_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} invited as {self.role} of {self.project}"


class PromptSource(models.TextChoices):
    IMPORT = "import", "Imported"
    LABELER = "labeler", "Written by a labeler"
    CHAT = "chat", "From chat feedback"


class Prompt(models.Model):
    """A conversation so far (OpenAI-style ``messages``) that wants an assistant answer."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    messages = models.JSONField(help_text='OpenAI-style [{"role": "user", "content": "..."}].')
    normalized_hash = models.CharField(max_length=64, help_text="sha256 of the normalised text, for duplicates.")
    source = models.CharField(max_length=16, choices=PromptSource.choices, default=PromptSource.IMPORT)
    metadata = models.JSONField(default=dict, blank=True)
    is_gold = models.BooleanField(default=False)
    gold_answer = models.JSONField(
        null=True, blank=True,
        help_text="Known answer of a gold item: {'ranking': [[id], ...]} over its completions, or {'text': ...}.",
    )
    evidence = models.JSONField(
        default=list, blank=True,
        help_text="Passages the answer was given, numbered from 1: [{n, title, section, source, url, text}]. "
                  "Samples, rankings, exports and the reward model see them with the prompt.")
    flag_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    # Queue bookkeeping, kept by annotation.queue under this row's lock: slots of each kind taken now (live
    # leases, submitted labels, imported answers) and whether one is still open to a new labeler (for
    # rankings: also that the prompt has its K completions). The claim reads these columns of the row it
    # locks, so it needs no recount and finds the first open item through a partial index.
    demonstrations_taken = models.PositiveIntegerField(default=0, editable=False)
    rankings_taken = models.PositiveIntegerField(default=0, editable=False)
    demonstration_open = models.BooleanField(default=True, editable=False)
    ranking_open = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "normalized_hash"], name="prompt_unique_in_project"),
            models.CheckConstraint(condition=Q(source__in=PromptSource.values), name="prompt_source_valid"),
        ]
        indexes = [
            models.Index(fields=["project", "id"], condition=Q(demonstration_open=True, is_gold=False),
                         name="prompt_demonstration_open"),
            models.Index(fields=["project", "id"], condition=Q(ranking_open=True, is_gold=False),
                         name="prompt_ranking_open"),
            models.Index(fields=["project", "id"], condition=Q(is_gold=True), name="prompt_gold"),
        ]

    def __str__(self) -> str:
        return self.text[:60]

    @property
    def text(self) -> str:
        """The last user turn: what a labeler reads first."""
        for message in reversed(self.messages or []):
            if message.get("role") == "user":
                return str(message.get("content", ""))
        return ""


class AssignmentStatus(models.TextChoices):
    LEASED = "leased", "Leased"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Expired"
    RETURNED = "returned", "Returned after rejection"


class Assignment(models.Model):
    """One labeler's lease on one slot of one item; the unit the task queue hands out."""

    Status = AssignmentStatus

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="assignments")
    kind = models.CharField(max_length=16, choices=TaskKind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.LEASED)
    leased_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["prompt", "kind", "user"], name="assignment_once_per_labeler"),
            models.CheckConstraint(condition=Q(status__in=AssignmentStatus.values), name="assignment_status_valid"),
            models.CheckConstraint(condition=Q(kind__in=TaskKind.values), name="assignment_kind_valid"),
        ]
        indexes = [
            models.Index(fields=["project", "kind", "status"]),
            models.Index(fields=["project", "user", "kind"], name="assignment_by_labeler"),
        ]


class Reviewable(models.Model):
    """Review fields shared by demonstrations and rankings (approve, edit, reject with a reason)."""

    review_state = models.CharField(max_length=16, choices=ReviewState.choices, default=ReviewState.PENDING)
    needs_review = models.BooleanField(default=False, help_text="Sampled for review at the project's rate.")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class Demonstration(Reviewable):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="demonstrations")
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="demonstration"
    )
    content = models.TextField()
    original_content = models.TextField(blank=True, help_text="The labeler's text when a reviewer edited it.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(review_state__in=ReviewState.values), name="demo_review_state_valid"),
            models.CheckConstraint(condition=~Q(content=""), name="demo_content_not_empty"),
        ]


class Completion(models.Model):
    """One sampled (or imported) answer to a prompt, to be ranked against its K-1 siblings."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="completions")
    text = models.TextField()
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="completions"
    )
    sampling_run = models.ForeignKey(
        "training.TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="completions"
    )
    sampling_params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class RankingSource(models.TextChoices):
    LABELER = "labeler", "Ranked by a labeler"
    IMPORT = "import", "Imported"


class Ranking(Reviewable):
    """K completions of one prompt ordered best first; ``order`` is a list of tiers of completion ids.

    ``[[3], [1, 4], [2]]`` reads: 3 is best, 1 and 4 tie, 2 is worst. ``flags`` maps a completion
    id (as a string) to a list of flag names such as ``unsafe`` or ``factually_wrong``. An imported
    ranking (``source`` import, its ``author`` the manager who imported it) keeps the file name and
    line it came from, so any label a reward model trained on can be traced to its origin.
    """

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="rankings")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rankings")
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="ranking"
    )
    order = models.JSONField()
    flags = models.JSONField(default=dict, blank=True)
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=RankingSource.choices, default=RankingSource.LABELER)
    import_file = models.CharField(max_length=255, blank=True, help_text="The file an imported ranking came from.")
    import_line = models.PositiveIntegerField(null=True, blank=True, help_text="Its line (or row) in that file.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(review_state__in=ReviewState.values), name="ranking_review_state_valid"
            ),
            models.CheckConstraint(condition=Q(source__in=RankingSource.values), name="ranking_source_valid"),
        ]

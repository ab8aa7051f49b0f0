"""Deployments, conversations, moderation events, feedback and API keys."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

MAX_TOKENS_CEILING = 8192  # no deployment answers longer than this, whatever its manager sets


class Deployment(models.Model):
    """A policy version (and optionally a moderation version) promoted to a project's chat.

    At most one deployment per project is active; earlier ones stay for rollback.
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="deployments")
    policy = models.ForeignKey("training.ModelVersion", on_delete=models.PROTECT, related_name="deployments")
    moderation = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    is_active = models.BooleanField(default=True)
    max_tokens = models.PositiveIntegerField(
        default=512, validators=[MinValueValidator(1), MaxValueValidator(MAX_TOKENS_CEILING)],
        help_text="The most tokens one /v1 answer may ask for (max_tokens); the chat page uses its own 256.")
    knowledge_bases = models.ManyToManyField(
        "serving.KnowledgeBase", blank=True, related_name="deployments",
        help_text="Each user turn retrieves passages from these; the answer cites them.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="deployment_one_active_per_project"
            ),
            models.CheckConstraint(condition=Q(max_tokens__gte=1, max_tokens__lte=MAX_TOKENS_CEILING),
                                   name="deployment_max_tokens_range"),
        ]


class ConversationSource(models.TextChoices):
    CHAT = "chat", "Chat page"
    API = "api", "OpenAI-compatible API"


class Conversation(models.Model):
    Source = ConversationSource

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CHAT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class MessageRole(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class Message(models.Model):
    Role = MessageRole

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField()
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL)
    model_version = models.ForeignKey(
        "training.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    is_template = models.BooleanField(default=False, help_text="A template answer replaced the model's.")
    model_text = models.TextField(blank=True, help_text="The model's own answer when a template replaced it.")
    superseded = models.BooleanField(default=False, help_text="Regenerated: a newer answer took its place.")
    citations = models.JSONField(
        default=list, blank=True,
        help_text="Passages retrieved for this answer, numbered as the prompt gave them: "
                  "[{n, chunk_id, document_id, title, section, source, url, text, cited}].")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(role__in=MessageRole.values), name="message_role_valid")]

    @property
    def feedback_kinds(self) -> set[str]:
        return {f.kind for f in self.feedback.all()}


class ModerationEvent(models.Model):
    class Direction(models.TextChoices):
        INPUT = "input", "User input"
        OUTPUT = "output", "Model output"

    class Review(models.TextChoices):
        OPEN = "open", "Open"
        CONFIRMED = "confirmed", "Confirmed"
        DISMISSED = "dismissed", "False positive"

    project = models.ForeignKey("annotation.Project", null=True, blank=True, on_delete=models.CASCADE)
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    text = models.TextField()
    categories = models.JSONField(default=list, help_text="Names of the flagged categories.")
    scores = models.JSONField(default=dict)
    failed_closed = models.BooleanField(default=False, help_text="The classifier errored or timed out.")
    error = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    review = models.CharField(max_length=16, choices=Review.choices, default=Review.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class FeedbackKind(models.TextChoices):
    THUMBS_UP = "up", "Thumbs up"
    THUMBS_DOWN = "down", "Thumbs down"
    REPORT = "report", "Report"


class Feedback(models.Model):
    Kind = FeedbackKind

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    comment = models.TextField(blank=True)
    handled = models.BooleanField(default=False, help_text="Turned into a prompt or dismissed by a manager.")
    prompt = models.ForeignKey("annotation.Prompt", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+", help_text="The prompt this feedback's conversation became.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user", "kind"], name="feedback_once_per_kind"),
            models.CheckConstraint(condition=Q(kind__in=FeedbackKind.values), name="feedback_kind_valid"),
        ]


class TemplateResponse(models.Model):
    """The answer shown instead of a flagged one; ``project`` null is the site-wide default."""

    project = models.ForeignKey("annotation.Project", null=True, blank=True, on_delete=models.CASCADE)
    category = models.CharField(max_length=64, help_text="A moderation category, or `default`.")
    text = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "category"], name="template_once_per_category"),
        ]


class ApiKey(models.Model):
    """A user's key for the OpenAI-compatible API; only its sha256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)


class ServingSettings(models.Model):
    """Per project: how chat traffic flows back, and the project's own moderation categories."""

    project = models.OneToOneField("annotation.Project", on_delete=models.CASCADE, related_name="serving_settings")
    feedback_to_prompts = models.BooleanField(
        default=True, help_text="A thumbs-down or report turns its conversation into a new prompt at once."
    )
    custom_categories = models.JSONField(
        default=dict, blank=True,
        help_text='Extra moderation categories: {"name": ["keyword", "re:regex", ...]}.',
    )


class KnowledgeBase(models.Model):
    """A project's collection of documents that answers can cite (see serving/knowledge/)."""

    class IndexState(models.TextChoices):
        EMPTY = "empty", "No documents"
        INDEXING = "indexing", "Indexing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="knowledge_bases")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    index_state = models.CharField(max_length=16, choices=IndexState.choices, default=IndexState.EMPTY)
    index_progress = models.FloatField(default=0.0, help_text="0..1 while indexing.")
    index_error = models.TextField(blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="knowledge_base_name_unique")]

    def __str__(self) -> str:
        return self.name


class KnowledgeDocument(models.Model):
    """One uploaded file (or JSONL record); re-uploading the same ``source`` replaces its chunks."""

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="documents")
    source = models.CharField(max_length=255, help_text="File name (or the record's url/title for JSONL).")
    title = models.CharField(max_length=300)
    url = models.CharField(max_length=2000, blank=True)
    content_type = models.CharField(max_length=16, help_text="markdown, text, html, pdf or jsonl.")
    text = models.TextField(help_text="The document's text as parsed, which the chunks cut.")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]
        constraints = [
            models.UniqueConstraint(fields=["knowledge_base", "source"], name="knowledge_document_source_unique"),
        ]

    def __str__(self) -> str:
        return self.title


class KnowledgeChunk(models.Model):
    """A passage of a document: what retrieval returns and an answer cites."""

    document = models.ForeignKey(KnowledgeDocument, on_delete=models.CASCADE, related_name="chunks")
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField(help_text="Order within the document, from 0.")
    section = models.CharField(max_length=500, blank=True, help_text="Heading path, e.g. 'Install > Linux'.")
    text = models.TextField()
    token_count = models.PositiveIntegerField(default=0)
    char_start = models.PositiveIntegerField(default=0, help_text="Offset of the chunk in the document's text.")
    embedding = models.BinaryField(null=True, blank=True, help_text="float32 vector, set by indexing.")

    class Meta:
        ordering = ["document_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="knowledge_chunk_position_unique"),
        ]
        indexes = [models.Index(fields=["knowledge_base", "id"], name="knowledge_chunk_kb")]

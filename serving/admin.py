from django.contrib import admin

from serving.models import (
    ApiKey,
    Conversation,
    Deployment,
    Feedback,
    Message,
    ModerationEvent,
    ServingSettings,
    TemplateResponse,
)


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "policy", "moderation", "is_active", "created_at")


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "project", "title", "created_at")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "is_template", "created_at")


@admin.register(ModerationEvent)
class ModerationEventAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "direction", "categories", "failed_closed", "review", "created_at")
    list_filter = ("direction", "review", "failed_closed")


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("id", "message", "user", "kind", "handled", "created_at")


@admin.register(TemplateResponse)
class TemplateResponseAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "category")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "name", "prefix", "created_at", "revoked_at")
    exclude = ("key_hash",)


@admin.register(ServingSettings)
class ServingSettingsAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "feedback_to_prompts")

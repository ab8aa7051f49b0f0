from django.contrib import admin

from annotation.models import Assignment, Completion, Demonstration, Membership, Project, Prompt, Ranking


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "completions_per_prompt", "labels_per_item", "review_rate", "created_at")
    search_fields = ("name", "slug")
    inlines = [MembershipInline]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "source", "is_gold", "created_at")
    list_filter = ("project", "source", "is_gold")


@admin.register(Demonstration)
class DemonstrationAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt", "author", "review_state", "created_at")
    list_filter = ("review_state",)


@admin.register(Completion)
class CompletionAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt", "model_version", "created_at")


@admin.register(Ranking)
class RankingAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt", "author", "review_state", "created_at")
    list_filter = ("review_state",)


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "prompt", "kind", "user", "status", "expires_at")
    list_filter = ("kind", "status")

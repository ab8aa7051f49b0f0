"""URLs of the annotation REST API (views in annotation/api_*.py); included from config/urls.py."""

from django.urls import path

from annotation import api_labels, api_preferences, api_projects, api_prompts, api_tasks

app_name = "annotation-api"

P = "api/projects/<slug:slug>/"

urlpatterns = [
    path("api/projects/", api_projects.ProjectList.as_view(), name="projects"),
    path("api/invitations/", api_projects.InvitationList.as_view(), name="invitations"),
    path("api/invitations/<int:invitation_id>/accept/", api_projects.InvitationAnswer.as_view(answer="accept"),
         name="invitation-accept"),
    path("api/invitations/<int:invitation_id>/decline/", api_projects.InvitationAnswer.as_view(answer="decline"),
         name="invitation-decline"),
    path(P, api_projects.ProjectDetail.as_view(), name="project"),
    path(P + "prompts/", api_prompts.PromptList.as_view(), name="prompts"),
    path(P + "prompts/upload/", api_prompts.PromptUpload.as_view(), name="prompts-upload"),
    path(P + "preferences/", api_preferences.PreferenceImport.as_view(), name="preferences"),
    path(P + "preferences/upload/", api_preferences.PreferenceUpload.as_view(), name="preferences-upload"),
    path(P + "prompts/write/", api_prompts.PromptWrite.as_view(), name="prompts-write"),
    path(P + "prompts/<int:prompt_id>/flag/", api_prompts.PromptFlag.as_view(), name="prompt-flag"),
    path(P + "tasks/next/", api_tasks.TaskNext.as_view(), name="task-next"),
    path(P + "tasks/<int:task_id>/", api_tasks.TaskDetail.as_view(), name="task"),
    path(P + "tasks/<int:task_id>/demonstration/", api_tasks.TaskDemonstration.as_view(), name="task-demonstration"),
    path(P + "tasks/<int:task_id>/ranking/", api_tasks.TaskRanking.as_view(), name="task-ranking"),
    path(P + "tasks/<int:task_id>/skip/", api_tasks.TaskSkip.as_view(), name="task-skip"),
    path(P + "demonstrations/", api_labels.DemonstrationList.as_view(), name="demonstrations"),
    path(P + "rankings/", api_labels.RankingList.as_view(), name="rankings"),
    path(P + "me/", api_labels.MySummary.as_view(), name="me"),
    path(P + "reviews/", api_labels.ReviewList.as_view(), name="reviews"),
    path(P + "reviews/<str:kind>/<int:item_id>/approve/", api_labels.ReviewApprove.as_view(), name="review-approve"),
    path(P + "reviews/<str:kind>/<int:item_id>/edit/", api_labels.ReviewEdit.as_view(), name="review-edit"),
    path(P + "reviews/<str:kind>/<int:item_id>/reject/", api_labels.ReviewReject.as_view(), name="review-reject"),
    path(P + "members/", api_projects.MemberList.as_view(), name="members"),
]

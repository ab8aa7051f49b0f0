"""URLs of the annotation REST API (see annotation/api.py); included from config/urls.py."""

from django.urls import path

from annotation import api, api_preferences

app_name = "annotation-api"

P = "api/projects/<slug:slug>/"

urlpatterns = [
    path("api/projects/", api.ProjectList.as_view(), name="projects"),
    path("api/invitations/", api.InvitationList.as_view(), name="invitations"),
    path("api/invitations/<int:invitation_id>/accept/", api.InvitationAnswer.as_view(answer="accept"),
         name="invitation-accept"),
    path("api/invitations/<int:invitation_id>/decline/", api.InvitationAnswer.as_view(answer="decline"),
         name="invitation-decline"),
    path(P, api.ProjectDetail.as_view(), name="project"),
    path(P + "prompts/", api.PromptList.as_view(), name="prompts"),
    path(P + "prompts/upload/", api.PromptUpload.as_view(), name="prompts-upload"),
    path(P + "preferences/", api_preferences.PreferenceImport.as_view(), name="preferences"),
    path(P + "preferences/upload/", api_preferences.PreferenceUpload.as_view(), name="preferences-upload"),
    path(P + "prompts/write/", api.PromptWrite.as_view(), name="prompts-write"),
    path(P + "prompts/<int:prompt_id>/flag/", api.PromptFlag.as_view(), name="prompt-flag"),
    path(P + "tasks/next/", api.TaskNext.as_view(), name="task-next"),
    path(P + "tasks/<int:task_id>/", api.TaskDetail.as_view(), name="task"),
    path(P + "tasks/<int:task_id>/demonstration/", api.TaskDemonstration.as_view(), name="task-demonstration"),
    path(P + "tasks/<int:task_id>/ranking/", api.TaskRanking.as_view(), name="task-ranking"),
    path(P + "tasks/<int:task_id>/skip/", api.TaskSkip.as_view(), name="task-skip"),
    path(P + "demonstrations/", api.DemonstrationList.as_view(), name="demonstrations"),
    path(P + "rankings/", api.RankingList.as_view(), name="rankings"),
    path(P + "me/", api.MySummary.as_view(), name="me"),
    path(P + "reviews/", api.ReviewList.as_view(), name="reviews"),
    path(P + "reviews/<str:kind>/<int:item_id>/approve/", api.ReviewApprove.as_view(), name="review-approve"),
    path(P + "reviews/<str:kind>/<int:item_id>/edit/", api.ReviewEdit.as_view(), name="review-edit"),
    path(P + "reviews/<str:kind>/<int:item_id>/reject/", api.ReviewReject.as_view(), name="review-reject"),
    path(P + "members/", api.MemberList.as_view(), name="members"),
]

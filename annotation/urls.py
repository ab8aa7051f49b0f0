"""Pages of the annotation app: overview, labeling, review, manager settings, import."""

from django.urls import path

from annotation import views, views_import, views_manage, views_review

app_name = "annotation"

P = "projects/<slug:slug>/"

urlpatterns: list = [
    path("projects/new/", views_manage.project_new, name="project-new"),
    path("invitations/<int:invitation_id>/accept/", views_manage.invitation_answer, {"answer": "accept"},
         name="invitation-accept"),
    path("invitations/<int:invitation_id>/decline/", views_manage.invitation_answer, {"answer": "decline"},
         name="invitation-decline"),
    path(P, views.overview, name="project"),
    path(P + "write/", views.write_page, name="write"),
    path(P + "label/demonstration/", views.write_page, name="write-alias"),
    path(P + "rank/", views.rank_page, name="rank"),
    path(P + "label/ranking/", views.rank_page, name="rank-alias"),
    path(P + "tasks/<int:assignment_id>/demonstration/", views.demonstration_post, name="demonstration-submit"),
    path(P + "tasks/<int:assignment_id>/ranking/", views.ranking_post, name="ranking-submit"),
    path(P + "tasks/<int:assignment_id>/skip/", views.skip_post, name="skip"),
    path(P + "tasks/<int:assignment_id>/flag/", views.flag_post, name="flag"),
    path(P + "prompts/new/", views.prompt_new, name="prompt-new"),
    path(P + "preview/", views.markdown_preview, name="preview"),
    path(P + "review/", views_review.review_page, name="review"),
    path(P + "review/<str:kind>/<int:item_id>/approve/", views_review.approve, name="review-approve"),
    path(P + "review/<str:kind>/<int:item_id>/edit/", views_review.edit, name="review-edit"),
    path(P + "review/<str:kind>/<int:item_id>/reject/", views_review.reject, name="review-reject"),
    path(P + "settings/", views_manage.settings_page, name="settings"),
    path(P + "members/", views_manage.members_page, name="members"),
    path(P + "import/", views_import.import_page, name="import"),
    path(P + "import/upload/", views_import.import_post, name="import-upload"),
    path(P + "import/<str:token>/", views_import.import_status, name="import-status"),
]

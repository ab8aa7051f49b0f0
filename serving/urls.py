"""Pages and APIs of serving: the chat, deployments, moderation review, API keys and ``/v1``."""

from django.urls import path

from serving import api, openai_api, views_chat, views_manage
from serving.knowledge import api as knowledge_api
from serving.knowledge import views as knowledge_views

app_name = "serving"

P = "projects/<slug:slug>/"
A = "api/projects/<slug:slug>/"

urlpatterns = [
    path("chat/", views_chat.chat_home, name="chat-home"),
    path(P + "chat/", views_chat.chat, name="chat"),
    path(P + "chat/send", views_chat.chat_send, name="chat-send"),
    path(P + "chat/<int:conversation_id>/regenerate", views_chat.chat_regenerate, name="chat-regenerate"),
    path(P + "chat/messages/<int:message_id>/feedback", views_chat.message_feedback, name="feedback"),
    path(P + "deployments/", views_manage.deployments, name="deployments"),
    path(P + "deployments/<int:deployment_id>/activate", views_manage.deployment_activate, name="deployment-activate"),
    path(P + "deployments/<int:deployment_id>/knowledge", views_manage.deployment_knowledge,
         name="deployment-knowledge"),
    path(P + "moderation/", views_manage.moderation, name="moderation"),
    path(P + "moderation/events/<int:event_id>/review", views_manage.event_review, name="event-review"),
    path(P + "moderation/feedback/<int:feedback_id>", views_manage.feedback_handle, name="feedback-handle"),
    path(P + "moderation/settings", views_manage.moderation_settings, name="moderation-settings"),
    path(P + "moderation/templates", views_manage.template_save, name="template-save"),
    path("account/keys/", views_manage.api_keys, name="keys"),
    # Knowledge bases (serving/knowledge/): pages, then REST
    path(P + "knowledge/", knowledge_views.knowledge_bases, name="knowledge_bases"),
    path(P + "knowledge/<int:knowledge_base_id>/", knowledge_views.knowledge_base, name="knowledge_base"),
    path(P + "knowledge/<int:knowledge_base_id>/progress", knowledge_views.knowledge_base_progress,
         name="knowledge_base_progress"),
    path(P + "knowledge/<int:knowledge_base_id>/reindex", knowledge_views.knowledge_base_reindex,
         name="knowledge_base_reindex"),
    path(P + "knowledge/<int:knowledge_base_id>/delete", knowledge_views.knowledge_base_delete,
         name="knowledge_base_delete"),
    path(P + "knowledge/<int:knowledge_base_id>/documents/<int:document_id>/", knowledge_views.knowledge_document,
         name="knowledge_document"),
    path(P + "knowledge/<int:knowledge_base_id>/documents/<int:document_id>/delete",
         knowledge_views.knowledge_document_delete, name="knowledge_document_delete"),
    path(A + "knowledge-bases/", knowledge_api.KnowledgeBaseList.as_view(), name="api-knowledge-bases"),
    path(A + "knowledge-bases/<int:knowledge_base_id>/", knowledge_api.KnowledgeBaseDetail.as_view(),
         name="api-knowledge-base"),
    path(A + "knowledge-bases/<int:knowledge_base_id>/documents/", knowledge_api.DocumentList.as_view(),
         name="api-knowledge-documents"),
    path(A + "knowledge-bases/<int:knowledge_base_id>/documents/<int:document_id>/",
         knowledge_api.DocumentDetail.as_view(), name="api-knowledge-document"),
    path(A + "knowledge-bases/<int:knowledge_base_id>/search/", knowledge_api.Search.as_view(),
         name="api-knowledge-search"),
    # REST
    path(A + "deployments/", api.DeploymentList.as_view(), name="api-deployments"),
    path(A + "deployments/<int:deployment_id>/activate/", api.DeploymentActivate.as_view(),
         name="api-deployment-activate"),
    path(A + "messages/<int:message_id>/feedback/", api.MessageFeedback.as_view(), name="api-feedback"),
    path(A + "feedback/", api.FeedbackList.as_view(), name="api-feedback-list"),
    path(A + "moderation-events/", api.EventList.as_view(), name="api-events"),
    path(A + "moderation-events/<int:event_id>/review/", api.EventReview.as_view(), name="api-event-review"),
    path("api/keys/", api.KeyList.as_view(), name="api-keys"),
    path("api/keys/<int:key_id>/", api.KeyDetail.as_view(), name="api-key"),
    # OpenAI-compatible
    path("v1/models", openai_api.Models.as_view(), name="v1-models"),
    path("v1/chat/completions", openai_api.ChatCompletions.as_view(), name="v1-chat"),
    path("v1/moderations", openai_api.Moderations.as_view(), name="v1-moderations"),
]

"""Serving REST API: deployments, API keys, feedback on answers, moderation review.

Project-scoped views resolve the project through ``project_for_user`` (another project is a
404); managing deployments and reviewing events takes the manager role (403 naming it).
``ServingError`` from a service is ``400 {"detail": ...}``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin  # the schema then documents the paginated list
from rest_framework.response import Response

from annotation.selectors import EVERYONE, MANAGERS, project_for_user
from serving import selectors, services
from serving.errors import ServingError
from serving.keys import api_key_create, api_key_revoke
from serving.models import MAX_TOKENS_CEILING, ApiKey, Deployment, Feedback, ModerationEvent


class DeploymentSerializer(serializers.ModelSerializer):
    policy = serializers.CharField(source="policy.name")
    moderation = serializers.CharField(source="moderation.name", allow_null=True, default=None)
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = Deployment
        fields = ["id", "model", "policy", "moderation", "max_tokens", "is_active", "created_by", "created_at"]

    model = serializers.SerializerMethodField(help_text="The id to use as `model` in /v1/chat/completions.")

    def get_model(self, deployment) -> str:
        return selectors.model_id(deployment)


class DeploymentCreateSerializer(serializers.Serializer):
    policy = serializers.CharField(help_text="Name of a policy version of the project (or a shared base).")
    moderation = serializers.CharField(required=False, allow_blank=True, allow_null=True,
                                       help_text="Name of a moderation version; empty: the shipped moderator.")
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=MAX_TOKENS_CEILING,
                                          help_text="The most tokens one /v1 answer may ask for (default 512).")


class ApiKeySerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class FeedbackSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")

    class Meta:
        model = Feedback
        fields = ["id", "message", "user", "kind", "comment", "handled", "created_at"]


class FeedbackCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["up", "down", "report"])
    comment = serializers.CharField(required=False, allow_blank=True, max_length=4000)


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModerationEvent
        fields = ["id", "direction", "text", "categories", "scores", "failed_closed", "error", "review", "created_at"]


class EventReviewSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["confirmed", "dismissed"])
    categories = serializers.ListField(child=serializers.CharField(), required=False)


class ServingView(GenericAPIView):
    roles = MANAGERS

    def project(self):
        project = project_for_user(self.request.user, self.kwargs["slug"], EVERYONE)
        if project.requester_role not in self.roles:
            raise PermissionDenied("only managers of this project can do this")
        return project

    def handle_exception(self, exc):
        if isinstance(exc, ServingError):
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return super().handle_exception(exc)

    def parsed(self, serializer_class) -> dict:
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data


class DeploymentList(ListModelMixin, ServingView):
    serializer_class = DeploymentSerializer

    def get(self, request, slug: str):
        page = self.paginate_queryset(selectors.deployments_of(self.project()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=DeploymentCreateSerializer, responses={201: DeploymentSerializer})
    def post(self, request, slug: str):
        """Deploy a policy version to the project's chat and API; the previous deployment stays for rollback."""
        from training.models import VersionKind
        from training.selectors import versions_of

        project = self.project()
        data = self.parsed(DeploymentCreateSerializer)
        versions = versions_of(project)
        policy = versions.filter(name=data["policy"], kind=VersionKind.POLICY).first()
        if policy is None:
            raise ServingError(f"this project has no policy version named {data['policy']!r}")
        moderation = None
        if data.get("moderation"):
            moderation = versions.filter(name=data["moderation"], kind=VersionKind.MODERATION).first()
            if moderation is None:
                raise ServingError(f"this project has no moderation version named {data['moderation']!r}")
        deployment = services.deployment_create(project=project, policy=policy, moderation=moderation,
                                                created_by=request.user, max_tokens=data.get("max_tokens"))
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentActivate(ServingView):
    serializer_class = DeploymentSerializer

    @extend_schema(request=None)
    def post(self, request, slug: str, deployment_id: int):
        """Make an earlier deployment the active one again (rollback)."""
        deployment = services.deployment_activate(deployment=selectors.deployment_of(self.project(), deployment_id))
        return Response(DeploymentSerializer(deployment).data)


class MessageFeedback(ServingView):
    roles = EVERYONE
    serializer_class = FeedbackSerializer

    @extend_schema(request=FeedbackCreateSerializer, responses={201: FeedbackSerializer})
    def post(self, request, slug: str, message_id: int):
        """Thumbs up/down or report one of your own chat answers."""
        message = selectors.message_of(self.project(), request.user, message_id)
        data = self.parsed(FeedbackCreateSerializer)
        feedback = services.feedback_give(message=message, user=request.user, kind=data["kind"],
                                          comment=data.get("comment", ""))
        return Response(FeedbackSerializer(feedback).data, status=status.HTTP_201_CREATED)


class FeedbackList(ListModelMixin, ServingView):
    serializer_class = FeedbackSerializer

    def get(self, request, slug: str):
        """Thumbs-down and reports not yet turned into prompts or dismissed."""
        page = self.paginate_queryset(selectors.feedback_for_review(self.project()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class EventList(ListModelMixin, ServingView):
    serializer_class = EventSerializer

    def get(self, request, slug: str):
        """Moderation events waiting for review."""
        page = self.paginate_queryset(selectors.events_for_review(self.project()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class EventReview(ServingView):
    serializer_class = EventSerializer

    @extend_schema(request=EventReviewSerializer)
    def post(self, request, slug: str, event_id: int):
        event = selectors.event_of(self.project(), event_id)
        data = self.parsed(EventReviewSerializer)
        event = services.moderation_event_review(event=event, decision=data["decision"], by=request.user,
                                                 categories=data.get("categories"))
        return Response(EventSerializer(event).data)


class KeyList(ListModelMixin, ServingView):
    """Your keys; managed from a signed-in session only: a key cannot create or revoke keys."""

    serializer_class = ApiKeySerializer
    authentication_classes = [SessionAuthentication]

    def get(self, request):
        page = self.paginate_queryset(ApiKey.objects.filter(user=request.user).order_by("-created_at"))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=ApiKeyCreateSerializer)
    def post(self, request):
        """A new API key for ``/v1`` and ``/api/`` (Bearer); ``key`` is shown in this answer only."""
        key, raw = api_key_create(user=request.user, name=self.parsed(ApiKeyCreateSerializer)["name"])
        return Response({**ApiKeySerializer(key).data, "key": raw}, status=status.HTTP_201_CREATED)


class KeyDetail(ServingView):
    serializer_class = ApiKeySerializer
    authentication_classes = [SessionAuthentication]

    def delete(self, request, key_id: int):
        """Revoke one of your keys; requests with it get 401 from now on."""
        return Response(ApiKeySerializer(api_key_revoke(user=request.user, key_id=key_id)).data)

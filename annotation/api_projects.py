"""Projects, members and invitations over the REST API (``annotation.api_base`` has the shared rules)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response

from annotation import api_serializers as s
from annotation.api_base import AnnotationView
from annotation.errors import AnnotationError
from annotation.models import Invitation
from annotation.selectors import (
    CREATORS_ONLY,
    MANAGERS,
    invitation_for,
    invitations_for,
    may_create_projects,
    projects_for_user,
)
from annotation.services import invitation_accept, invitation_decline, membership_invite, project_create


class ProjectList(ListModelMixin, AnnotationView):
    serializer_class = s.ProjectSerializer

    def get(self, request):
        """The projects you are a member of, with your role in each."""
        memberships = projects_for_user(request.user)
        page = self.paginate_queryset(memberships)
        for membership in page:
            membership.project.requester_role = membership.role
        return self.get_paginated_response(self.get_serializer([m.project for m in page], many=True).data)

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        """Start a project (who may: the site setting ``TUNELOOP_PROJECT_CREATORS``); you become its manager."""
        if not may_create_projects(request.user):
            raise PermissionDenied(CREATORS_ONLY)
        project = project_create(created_by=request.user, **self.parsed(s.ProjectCreateSerializer))
        project.requester_role = "manager"
        return Response(self.get_serializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetail(AnnotationView):
    serializer_class = s.ProjectSerializer

    def get(self, request, slug: str):
        return Response(self.get_serializer(self.project()).data)


class MemberList(ListModelMixin, AnnotationView):
    roles = MANAGERS
    serializer_class = s.MemberSerializer

    def get(self, request, slug: str):
        """Members and their roles (managers)."""
        members = self.project().memberships.select_related("user").order_by("role", "user__username")
        return self.page(members, s.MemberSerializer)

    @extend_schema(request=s.MemberSetSerializer,
                   responses={200: s.MemberSerializer, 201: OpenApiResponse(s.InvitationSerializer,
                                                                            "an invitation the user must accept")})
    def post(self, request, slug: str):
        """Invite a user by username with a role (201, an invitation), or change a member's role (200) (managers).

        The user joins when they accept (``POST /api/invitations/<id>/accept/``); a site admin's
        additions take effect at once.
        """
        project = self.project()
        data = self.parsed(s.MemberSetSerializer)
        user = get_user_model().objects.filter(username=data["username"]).first()
        if user is None:
            raise AnnotationError(f"there is no user named {data['username']!r}")
        added = membership_invite(project=project, user=user, role=data["role"], invited_by=request.user)
        if isinstance(added, Invitation):
            return Response(s.InvitationSerializer(added).data, status=status.HTTP_201_CREATED)
        return Response(self.get_serializer(added).data)


class InvitationList(ListModelMixin, GenericAPIView):
    serializer_class = s.InvitationSerializer

    def get(self, request):
        """Invitations waiting for your answer."""
        page = self.paginate_queryset(invitations_for(request.user))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class InvitationAnswer(GenericAPIView):
    serializer_class = s.MemberSerializer
    answer = "accept"

    @extend_schema(request=None, responses={200: s.MemberSerializer, 204: None})
    def post(self, request, invitation_id: int):
        """Accept (200, your membership) or decline (204) one of your invitations; anyone else's is a 404."""
        invitation = invitation_for(request.user, invitation_id)
        if self.answer == "accept":
            return Response(self.get_serializer(invitation_accept(invitation=invitation, user=request.user)).data)
        invitation_decline(invitation=invitation, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

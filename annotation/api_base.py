"""The annotation REST API under ``/api/projects/``: what every view shares.

Every view resolves its project through ``project_for_user``: a project the requester is not a member
of is a 404, whatever its slug or the object's id. A member whose role is too low gets a 403 saying
which role it takes. An ``AnnotationError`` from a service is ``400 {"detail": ...}``; a failed import
adds ``"problems"``, one per line. Query-string filters come from an explicit allow-list per endpoint.
The views, by resource: ``api_projects`` (projects, members, invitations), ``api_prompts``,
``api_tasks`` (the labeling queue), ``api_labels`` (labels and review), ``api_preferences``.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from annotation.errors import AnnotationError
from annotation.imports import ImportFailed
from annotation.models import TaskKind
from annotation.selectors import EVERYONE, MANAGERS, REVIEWERS, project_for_user
from config.input import parse_id

ROLE_NEEDED = {MANAGERS: "only managers of this project can do this",
               REVIEWERS: "only reviewers and managers of this project can do this"}

KIND_PARAM = OpenApiParameter("kind", str, enum=["demonstration", "ranking"], description="Default: demonstration.")

BOOL = {"true": True, "1": True, "false": False, "0": False}


def bool_param(name: str, value: str) -> bool:
    if value.lower() not in BOOL:
        raise ValidationError({name: "use true or false"})
    return BOOL[value.lower()]


def id_param(name: str, value: str) -> int:
    parsed = parse_id(value)
    if parsed is None:
        raise ValidationError({name: "must be an id"})
    return parsed


def filtered(queryset, params, allowed: dict):
    """Apply ``?name=value`` for the names in ``allowed`` only (name -> function of queryset and value)."""
    for name, apply in allowed.items():
        value = params.get(name, "").strip()
        if value:
            queryset = apply(queryset, value)
    return queryset


def task_kind(request) -> str:
    body = request.data if isinstance(request.data, dict) else {}
    kind = request.query_params.get("kind") or body.get("kind") or TaskKind.DEMONSTRATION
    if kind not in (TaskKind.DEMONSTRATION, TaskKind.RANKING):
        raise AnnotationError(f"unknown task kind {kind!r}; choose demonstration or ranking")
    return kind


class AnnotationView(GenericAPIView):
    """Scopes to the project in the URL and maps domain errors to 400 with their message."""

    roles = EVERYONE

    def project(self, roles=None):
        project = project_for_user(self.request.user, self.kwargs["slug"], EVERYONE)
        roles = roles or self.roles
        if project.requester_role not in roles:
            raise PermissionDenied(ROLE_NEEDED.get(tuple(roles), "your role in this project cannot do this"))
        self._project = project
        return project

    def handle_exception(self, exc):
        if isinstance(exc, ImportFailed):
            return Response({"detail": str(exc), "problems": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, AnnotationError):
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return super().handle_exception(exc)

    def parsed(self, serializer_class):
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def get_serializer_context(self):
        """``show_gold`` for reviewers and managers only (see ``PromptSerializer``)."""
        project = getattr(self, "_project", None)
        return {**super().get_serializer_context(),
                "show_gold": project is not None and project.requester_role in REVIEWERS}

    def page(self, queryset, serializer_class):
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(serializer_class(page, many=True, context=self.get_serializer_context()).data)

"""Annotation REST API under ``/api/projects/``: projects, prompts and import, the task queue, review, members.

Every view resolves its project through ``project_for_user``: a project the requester is not a member
of is a 404, whatever its slug or the object's id. A member whose role is too low gets a 403 saying
which role it takes. An ``AnnotationError`` from a service is ``400 {"detail": ...}``; a failed import
adds ``"problems"``, one per line. Query-string filters come from an explicit allow-list per endpoint.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from annotation import api_serializers as s
from annotation.errors import AnnotationError
from annotation.imports import ImportFailed, prompts_import, prompts_import_records
from annotation.models import Demonstration, Invitation, Ranking, ReviewState, TaskKind
from annotation.queue import (
    LABELLED,
    demonstration_submit,
    prompt_flag,
    prompt_write,
    ranking_submit,
    task_next,
    task_skip,
)
from annotation.review import review_approve, review_edit, review_queue, review_reject
from annotation.selectors import (
    CREATORS_ONLY,
    EVERYONE,
    MANAGERS,
    REVIEWERS,
    assignment_of,
    invitation_for,
    invitations_for,
    labeler_summary,
    labels_visible_to,
    may_create_projects,
    project_for_user,
    projects_for_user,
    prompt_of,
    prompts_of,
)
from annotation.services import invitation_accept, invitation_decline, membership_invite, project_create
from config.input import parse_id
from config.parsers import PayloadTooLarge
from config.uploads import too_large

ROLE_NEEDED = {MANAGERS: "only managers of this project can do this",
               REVIEWERS: "only reviewers and managers of this project can do this"}
REVIEW_KINDS = {"demonstration": (TaskKind.DEMONSTRATION, Demonstration, s.DemonstrationSerializer),
                "ranking": (TaskKind.RANKING, Ranking, s.RankingSerializer)}
KIND_PARAM = OpenApiParameter("kind", str, enum=["demonstration", "ranking"], description="Default: demonstration.")
BOOL = {"true": True, "1": True, "false": False, "0": False}


def _bool(name: str, value: str) -> bool:
    if value.lower() not in BOOL:
        raise ValidationError({name: "use true or false"})
    return BOOL[value.lower()]


def _int(name: str, value: str) -> int:
    parsed = parse_id(value)
    if parsed is None:
        raise ValidationError({name: "must be an id"})
    return parsed


def _filtered(queryset, params, allowed: dict):
    """Apply ``?name=value`` for the names in ``allowed`` only (name -> function of queryset and value)."""
    for name, apply in allowed.items():
        value = params.get(name, "").strip()
        if value:
            queryset = apply(queryset, value)
    return queryset


PROMPT_FILTERS = {
    "source": lambda qs, v: qs.filter(source=v),
    "is_gold": lambda qs, v: qs.filter(is_gold=_bool("is_gold", v)),
    "flagged": lambda qs, v: qs.filter(flag_count__gt=0) if _bool("flagged", v) else qs.filter(flag_count=0),
}
LABEL_FILTERS = {
    "review_state": lambda qs, v: qs.filter(review_state=v),
    "needs_review": lambda qs, v: qs.filter(needs_review=_bool("needs_review", v)),
    "author": lambda qs, v: qs.filter(author__username=v),
    "prompt": lambda qs, v: qs.filter(prompt_id=_int("prompt", v)),
}


def _kind(request) -> str:
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


class PromptList(ListModelMixin, AnnotationView):
    serializer_class = s.PromptSerializer

    @extend_schema(parameters=[OpenApiParameter("source", str, enum=["import", "labeler", "chat"]),
                               OpenApiParameter("is_gold", bool), OpenApiParameter("flagged", bool)])
    def get(self, request, slug: str):
        """The project's prompts, oldest first. ``is_gold`` (filter and field) is for reviewers and managers."""
        project = self.project()
        if "is_gold" in request.query_params and project.requester_role not in REVIEWERS:
            raise PermissionDenied("only reviewers and managers of this project can filter by is_gold")
        return self.page(_filtered(prompts_of(project), request.query_params, PROMPT_FILTERS), s.PromptSerializer)

    @extend_schema(request=s.PromptImportSerializer,
                   responses={201: s.ImportReportSerializer, 400: s.ImportFailedSerializer})
    def post(self, request, slug: str):
        """Import records (managers): all or nothing; duplicates are reported, not added."""
        project = self.project(MANAGERS)
        records = self.parsed(s.PromptImportSerializer)["records"]
        report = prompts_import_records(project=project, records=records, user=request.user)
        return Response(s.ImportReportSerializer(report).data, status=status.HTTP_201_CREATED)


class PromptUpload(AnnotationView):
    parser_classes = [MultiPartParser, FormParser]
    roles = MANAGERS
    serializer_class = s.PromptUploadSerializer

    @extend_schema(request={"multipart/form-data": s.PromptUploadSerializer},
                   responses={201: s.ImportReportSerializer, 400: s.ImportFailedSerializer,
                              413: OpenApiResponse(description="The file is over TUNELOOP_MAX_IMPORT_BYTES")})
    def post(self, request, slug: str):
        """Import a JSONL or CSV file (managers), streamed line by line, in one transaction."""
        project = self.project()
        if refused := too_large("import", request=request):
            raise PayloadTooLarge(refused)
        upload = self.parsed(s.PromptUploadSerializer)["file"]
        if refused := too_large("import", upload=upload):
            raise PayloadTooLarge(refused)
        report = prompts_import(project=project, stream=upload, filename=upload.name, user=request.user)
        return Response(s.ImportReportSerializer(report).data, status=status.HTTP_201_CREATED)


class PromptWrite(AnnotationView):
    serializer_class = s.PromptSerializer

    @extend_schema(request=s.PromptWriteSerializer, responses={201: s.PromptSerializer})
    def post(self, request, slug: str):
        """Write a new prompt (any member); it joins the queue."""
        project = self.project()
        prompt = prompt_write(project=project, user=request.user, text=self.parsed(s.PromptWriteSerializer)["text"])
        return Response(self.get_serializer(prompt).data, status=status.HTTP_201_CREATED)


class PromptFlag(AnnotationView):
    serializer_class = s.PromptSerializer

    @extend_schema(request=s.ReasonSerializer, responses={200: s.PromptSerializer})
    def post(self, request, slug: str, prompt_id: int):
        """Report a prompt as bad (harmful, personal data, spam); managers see the count and reasons."""
        prompt = prompt_of(self.project(), prompt_id)
        prompt = prompt_flag(prompt=prompt, user=request.user, reason=self.parsed(s.ReasonSerializer)["reason"])
        return Response(self.get_serializer(prompt).data)


class TaskNext(AnnotationView):
    serializer_class = s.TaskSerializer

    @extend_schema(parameters=[KIND_PARAM], responses={200: s.TaskSerializer, 204: OpenApiResponse(description="Nothing left")})
    def get(self, request, slug: str):
        """Your live task of this kind, else a newly leased one; 204 when the queue has nothing for you."""
        assignment = task_next(project=self.project(), user=request.user, kind=_kind(request))
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.get_serializer(assignment).data)

    @extend_schema(parameters=[KIND_PARAM], request=None,
                   responses={200: s.TaskSerializer, 204: OpenApiResponse(description="Nothing left")})
    def post(self, request, slug: str):
        """Same as GET, for clients that prefer POST for a call that leases."""
        return self.get(request, slug)


class TaskDetail(AnnotationView):
    serializer_class = s.TaskSerializer

    def get(self, request, slug: str, task_id: int):
        """One of your own tasks."""
        return Response(self.get_serializer(assignment_of(self.project(), request.user, task_id)).data)


class TaskDemonstration(AnnotationView):
    serializer_class = s.DemonstrationSerializer

    @extend_schema(request=s.DemonstrationSubmitSerializer, responses={201: s.DemonstrationSerializer,
                                                                      200: s.DemonstrationSerializer})
    def post(self, request, slug: str, task_id: int):
        """Submit your answer; a retried request returns the first answer (200) and records nothing new."""
        assignment = assignment_of(self.project(), request.user, task_id)
        repeated = assignment.status in LABELLED
        data = self.parsed(s.DemonstrationSubmitSerializer)
        demo = demonstration_submit(assignment=assignment, user=request.user, **data)
        return Response(self.get_serializer(demo).data, status=status.HTTP_200_OK if repeated else 201)


class TaskRanking(AnnotationView):
    serializer_class = s.RankingSerializer

    @extend_schema(request=s.RankingSubmitSerializer, responses={201: s.RankingSerializer, 200: s.RankingSerializer})
    def post(self, request, slug: str, task_id: int):
        """Submit tiers of the shown completion ids, best first (ties share a tier); retries are idempotent."""
        assignment = assignment_of(self.project(), request.user, task_id)
        repeated = assignment.status in LABELLED
        data = self.parsed(s.RankingSubmitSerializer)
        ranking = ranking_submit(assignment=assignment, user=request.user, **data)
        return Response(self.get_serializer(ranking).data, status=status.HTTP_200_OK if repeated else 201)


class TaskSkip(AnnotationView):
    serializer_class = s.TaskSerializer

    @extend_schema(request=s.ReasonSerializer, responses={200: s.TaskSerializer})
    def post(self, request, slug: str, task_id: int):
        """Give the task back with a reason; you will not be offered it again."""
        assignment = assignment_of(self.project(), request.user, task_id)
        reason = self.parsed(s.ReasonSerializer)["reason"]
        return Response(self.get_serializer(task_skip(assignment=assignment, user=request.user, reason=reason)).data)


class LabelList(ListModelMixin, AnnotationView):
    """Demonstrations or rankings: all of them for reviewers and managers, your own for a labeler."""

    model = Demonstration
    serializer_class = s.DemonstrationSerializer

    @extend_schema(parameters=[OpenApiParameter("review_state", str, enum=ReviewState.values),
                               OpenApiParameter("needs_review", bool), OpenApiParameter("author", str),
                               OpenApiParameter("prompt", int)])
    def get(self, request, slug: str):
        items = labels_visible_to(self.model, self.project(), request.user)
        return self.page(_filtered(items, request.query_params, LABEL_FILTERS), self.serializer_class)


class DemonstrationList(LabelList):
    model = Demonstration
    serializer_class = s.DemonstrationSerializer


class RankingList(LabelList):
    model = Ranking
    serializer_class = s.RankingSerializer


class MySummary(AnnotationView):
    @extend_schema(responses={200: s.LabelerSummarySerializer})
    def get(self, request, slug: str):
        """Your own work in this project: done today and in all, median seconds per item, review outcomes."""
        return Response(labeler_summary(self.project(), request.user))


class ReviewList(ListModelMixin, AnnotationView):
    roles = REVIEWERS
    serializer_class = s.DemonstrationSerializer

    @extend_schema(parameters=[KIND_PARAM])
    def get(self, request, slug: str):
        """Items sampled for review and still pending, oldest first (demonstrations or rankings)."""
        kind = _kind(request)
        queue = review_queue(project=self.project(), kind=kind).select_related("prompt", "author", "reviewer")
        return self.page(queue, REVIEW_KINDS[kind][2])


class ReviewAction(AnnotationView):
    roles = REVIEWERS
    serializer_class = s.DemonstrationSerializer

    def item(self, project, kind: str, item_id: int):
        if kind not in REVIEW_KINDS:
            raise AnnotationError(f"unknown review kind {kind!r}; choose demonstration or ranking")
        return get_object_or_404(REVIEW_KINDS[kind][1], pk=item_id, prompt__project=project)

    def done(self, kind: str, item) -> Response:
        return Response(REVIEW_KINDS[kind][2](item).data)


class ReviewApprove(ReviewAction):
    @extend_schema(request=s.ApproveSerializer, responses={200: s.DemonstrationSerializer})
    def post(self, request, slug: str, kind: str, item_id: int):
        """Approve a label (it becomes eligible for training)."""
        item = self.item(self.project(), kind, item_id)
        comment = self.parsed(s.ApproveSerializer)["comment"]
        return self.done(kind, review_approve(item=item, reviewer=request.user, comment=comment))


class ReviewEdit(ReviewAction):
    @extend_schema(request=s.EditSerializer, responses={200: s.DemonstrationSerializer})
    def post(self, request, slug: str, kind: str, item_id: int):
        """Correct a demonstration and approve it; the labeler's text is kept as ``original_content``."""
        item = self.item(self.project(), kind, item_id)
        content = self.parsed(s.EditSerializer)["content"]
        return self.done(kind, review_edit(item=item, reviewer=request.user, content=content))


class ReviewReject(ReviewAction):
    @extend_schema(request=s.ReasonSerializer, responses={200: s.DemonstrationSerializer})
    def post(self, request, slug: str, kind: str, item_id: int):
        """Reject with a reason; the item's slot goes back to the queue."""
        item = self.item(self.project(), kind, item_id)
        reason = self.parsed(s.ReasonSerializer)["reason"]
        return self.done(kind, review_reject(item=item, reviewer=request.user, reason=reason))


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

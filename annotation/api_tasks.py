"""The labeling queue over the REST API: the next task, one's own task, submit, skip."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response

from annotation import api_serializers as s
from annotation.api_base import KIND_PARAM, AnnotationView, task_kind
from annotation.api_shapes import demonstration_data, task_data
from annotation.queue import LABELLED, demonstration_submit, ranking_submit, task_next, task_skip
from annotation.selectors import REVIEWERS, assignment_of


class TaskView(AnnotationView):
    """Tasks are written by ``api_shapes`` (plain dicts: the hot path); the serializers describe them."""

    serializer_class = s.TaskSerializer

    def task(self, assignment) -> dict:
        return task_data(assignment, show_gold=self._project.requester_role in REVIEWERS)


class TaskNext(TaskView):
    @extend_schema(parameters=[KIND_PARAM], responses={200: s.TaskSerializer, 204: OpenApiResponse(description="Nothing left")})
    def get(self, request, slug: str):
        """Your live task of this kind, else a newly leased one; 204 when the queue has nothing for you."""
        assignment = task_next(project=self.project(), user=request.user, kind=task_kind(request))
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.task(assignment))

    @extend_schema(parameters=[KIND_PARAM], request=None,
                   responses={200: s.TaskSerializer, 204: OpenApiResponse(description="Nothing left")})
    def post(self, request, slug: str):
        """Same as GET, for clients that prefer POST for a call that leases."""
        return self.get(request, slug)


class TaskDetail(TaskView):
    def get(self, request, slug: str, task_id: int):
        """One of your own tasks."""
        return Response(self.task(assignment_of(self.project(), request.user, task_id)))


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
        return Response(demonstration_data(demo), status=status.HTTP_200_OK if repeated else 201)


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


class TaskSkip(TaskView):
    @extend_schema(request=s.ReasonSerializer, responses={200: s.TaskSerializer})
    def post(self, request, slug: str, task_id: int):
        """Give the task back with a reason; you will not be offered it again."""
        assignment = assignment_of(self.project(), request.user, task_id)
        reason = self.parsed(s.ReasonSerializer)["reason"]
        return Response(self.task(task_skip(assignment=assignment, user=request.user, reason=reason)))

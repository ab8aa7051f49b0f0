"""Labels and their review over the REST API: demonstrations, rankings, one's own summary, the review queue."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.mixins import ListModelMixin
from rest_framework.response import Response

from annotation import api_serializers as s
from annotation.api_base import KIND_PARAM, AnnotationView, bool_param, filtered, id_param, task_kind
from annotation.errors import AnnotationError
from annotation.models import Demonstration, Ranking, ReviewState, TaskKind
from annotation.review import review_approve, review_edit, review_queue, review_reject
from annotation.selectors import REVIEWERS, labeler_summary, labels_visible_to

REVIEW_KINDS = {"demonstration": (TaskKind.DEMONSTRATION, Demonstration, s.DemonstrationSerializer),
                "ranking": (TaskKind.RANKING, Ranking, s.RankingSerializer)}

LABEL_FILTERS = {
    "review_state": lambda qs, v: qs.filter(review_state=v),
    "needs_review": lambda qs, v: qs.filter(needs_review=bool_param("needs_review", v)),
    "author": lambda qs, v: qs.filter(author__username=v),
    "prompt": lambda qs, v: qs.filter(prompt_id=id_param("prompt", v)),
}


class LabelList(ListModelMixin, AnnotationView):
    """Demonstrations or rankings: all of them for reviewers and managers, your own for a labeler."""

    model = Demonstration
    serializer_class = s.DemonstrationSerializer

    @extend_schema(parameters=[OpenApiParameter("review_state", str, enum=ReviewState.values),
                               OpenApiParameter("needs_review", bool), OpenApiParameter("author", str),
                               OpenApiParameter("prompt", int)])
    def get(self, request, slug: str):
        items = labels_visible_to(self.model, self.project(), request.user)
        return self.page(filtered(items, request.query_params, LABEL_FILTERS), self.serializer_class)


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
        kind = task_kind(request)
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

"""REST API under ``/api/projects/<slug>/``: snapshots, exports, runs and model versions.

Managers only: ``project_for_user(user, slug, MANAGERS)`` turns anyone else into a 404. A
``TrainingError`` from a service becomes ``400 {"detail": ...}``, or ``409`` when the request
conflicts with the run's state (cancelling a finished run).
"""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin  # the schema then documents the paginated list
from rest_framework.response import Response

from annotation.selectors import MANAGERS, project_for_user
from training import exports, selectors
from training.errors import TrainingError
from training.runs import run_cancel
from training.serializers import (
    ModelVersionDetailSerializer,
    ModelVersionSerializer,
    RunCreateSerializer,
    RunDetailSerializer,
    RunSerializer,
    SnapshotCreateSerializer,
    SnapshotDetailSerializer,
    SnapshotSerializer,
)
from training.services import run_start, snapshot_freeze
from training.snapshots import PRIMARY_FILE, snapshot_file


def error(exc: TrainingError, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": str(exc)}, status=code)


class ProjectView(GenericAPIView):
    """Resolves the project from the URL for managers; everything else is a 404."""

    def project(self):
        return project_for_user(self.request.user, self.kwargs["slug"], MANAGERS)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "slug": self.kwargs.get("slug")}


class SnapshotList(ListModelMixin, ProjectView):
    serializer_class = SnapshotSerializer

    def get(self, request, slug: str):
        page = self.paginate_queryset(selectors.snapshots_of(self.project()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=SnapshotCreateSerializer, responses={201: SnapshotDetailSerializer, 200: SnapshotDetailSerializer})
    def post(self, request, slug: str):
        """Freeze the project's eligible labels; the same content returns the existing snapshot (200)."""
        project = self.project()
        data = SnapshotCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        known = set(selectors.snapshots_of(project).values_list("pk", flat=True))
        try:
            snapshot = snapshot_freeze(project=project, kind=data.validated_data["kind"], created_by=request.user,
                                       options=data.validated_data["options"])
        except TrainingError as exc:
            return error(exc)
        code = status.HTTP_200_OK if snapshot.pk in known else status.HTTP_201_CREATED
        return Response(SnapshotDetailSerializer(snapshot, context=self.get_serializer_context()).data, status=code)


class SnapshotDetail(ProjectView):
    serializer_class = SnapshotDetailSerializer

    def get(self, request, slug: str, snapshot_id: int):
        snapshot = selectors.snapshot_of(self.project(), snapshot_id)
        return Response(self.get_serializer(snapshot).data)


class SnapshotDownload(ProjectView):
    @extend_schema(
        parameters=[OpenApiParameter("file", str, description="train.jsonl (default) or pairs.jsonl")],
        responses={(200, "application/x-ndjson"): bytes},
    )
    def get(self, request, slug: str, snapshot_id: int):
        """The snapshot's frozen JSONL file."""
        snapshot = selectors.snapshot_of(self.project(), snapshot_id)
        name = request.query_params.get("file", PRIMARY_FILE)
        try:
            path = snapshot_file(snapshot, name)
        except TrainingError as exc:
            raise NotFound(str(exc)) from exc
        return FileResponse(open(path, "rb"), as_attachment=True,
                            filename=f"{slug}-snapshot-{snapshot.pk}-{name}", content_type="application/x-ndjson")


class ExportDownload(ProjectView):
    @extend_schema(responses={(200, "application/x-ndjson"): bytes, (200, "application/vnd.apache.parquet"): bytes})
    def get(self, request, slug: str, fmt: str, file_format: str):
        """The project's current labels in one format (sft, rankings, pairs, prompts, moderation), streamed."""
        try:
            return exports.export_response(self.project(), fmt, file_format=file_format)
        except TrainingError as exc:
            raise NotFound(str(exc)) from exc


class RunList(ListModelMixin, ProjectView):
    serializer_class = RunSerializer

    def get(self, request, slug: str):
        runs = selectors.runs_of(self.project(), kind=request.query_params.get("kind"))
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=RunCreateSerializer, responses={201: RunDetailSerializer})
    def post(self, request, slug: str):
        """Start a run: versions by name, the snapshot by id (omit it to freeze a new one)."""
        project = self.project()
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        args = data.validated_data
        try:
            snapshot = (
                selectors.snapshots_of(project).filter(pk=args["snapshot"]).first() if args.get("snapshot") else None
            )
            if args.get("snapshot") and snapshot is None:
                raise TrainingError(f"snapshot #{args['snapshot']} is not a snapshot of this project")
            versions = {}
            for field in ("parent_version", "reward_version"):
                name = args.get(field)
                versions[field] = selectors.versions_of(project).filter(name=name).first() if name else None
                if name and versions[field] is None:
                    raise TrainingError(f"{field.replace('_', ' ')} {name!r} is not a model version of this project")
            run = run_start(project=project, kind=args["kind"], created_by=request.user, snapshot=snapshot,
                            config=args["config"], **versions)
        except TrainingError as exc:
            return error(exc)
        return Response(RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)


class RunDetail(ProjectView):
    serializer_class = RunDetailSerializer

    def get(self, request, slug: str, run_id: int):
        return Response(self.get_serializer(selectors.run_of(self.project(), run_id)).data)


class RunCancel(ProjectView):
    serializer_class = RunDetailSerializer

    @extend_schema(request=None, responses={200: RunDetailSerializer, 409: None})
    def post(self, request, slug: str, run_id: int):
        """Cancel: a queued run stops at once, a running one at its next progress report."""
        run = selectors.run_of(self.project(), run_id)
        try:
            run = run_cancel(run=run)
        except TrainingError as exc:
            return error(exc, status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(run).data)


class ModelList(ListModelMixin, ProjectView):
    serializer_class = ModelVersionSerializer

    def get(self, request, slug: str):
        versions = selectors.versions_of(self.project(), kind=request.query_params.get("kind"))
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class ModelDetail(ProjectView):
    serializer_class = ModelVersionDetailSerializer

    def get(self, request, slug: str, name: str):
        """A version with its lineage: each ancestor with the run and snapshot that made it."""
        return Response(self.get_serializer(selectors.version_of(self.project(), name)).data)

"""Prompts over the REST API: list, import (records or a file), write one, flag one."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.mixins import ListModelMixin
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from annotation import api_serializers as s
from annotation.api_base import AnnotationView, bool_param, filtered
from annotation.imports import prompts_import, prompts_import_records
from annotation.queue import prompt_flag, prompt_write
from annotation.selectors import MANAGERS, REVIEWERS, prompt_of, prompts_of
from config.parsers import PayloadTooLarge
from config.uploads import too_large

PROMPT_FILTERS = {
    "source": lambda qs, v: qs.filter(source=v),
    "is_gold": lambda qs, v: qs.filter(is_gold=bool_param("is_gold", v)),
    "flagged": lambda qs, v: qs.filter(flag_count__gt=0) if bool_param("flagged", v) else qs.filter(flag_count=0),
}


class PromptList(ListModelMixin, AnnotationView):
    serializer_class = s.PromptSerializer

    @extend_schema(parameters=[OpenApiParameter("source", str, enum=["import", "labeler", "chat"]),
                               OpenApiParameter("is_gold", bool), OpenApiParameter("flagged", bool)])
    def get(self, request, slug: str):
        """The project's prompts, oldest first. ``is_gold`` (filter and field) is for reviewers and managers."""
        project = self.project()
        if "is_gold" in request.query_params and project.requester_role not in REVIEWERS:
            raise PermissionDenied("only reviewers and managers of this project can filter by is_gold")
        return self.page(filtered(prompts_of(project), request.query_params, PROMPT_FILTERS), s.PromptSerializer)

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

"""Preference import over the REST API: JSON records or a file, stored as rankings (managers only)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from annotation import api_serializers as s
from annotation.api_base import AnnotationView
from annotation.preference_import import preferences_import, preferences_import_records
from annotation.selectors import MANAGERS
from config.parsers import PayloadTooLarge
from config.uploads import too_large


class PreferenceImport(AnnotationView):
    roles = MANAGERS
    serializer_class = s.PreferenceImportSerializer

    @extend_schema(request=s.PreferenceImportSerializer,
                   responses={201: s.ImportReportSerializer, 400: s.ImportFailedSerializer})
    def post(self, request, slug: str):
        """Import preference records (pairs, rankings, scored completions) as rankings: all or nothing.
        ``created`` counts the rankings written; ``warnings`` name fields that were not read."""
        project = self.project(MANAGERS)
        data = self.parsed(s.PreferenceImportSerializer)
        report = preferences_import_records(project=project, records=data["records"], user=request.user,
                                            review=data["review"])
        return Response(s.ImportReportSerializer(report).data, status=status.HTTP_201_CREATED)


class PreferenceUpload(AnnotationView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    roles = MANAGERS
    serializer_class = s.PreferenceUploadSerializer

    @extend_schema(request={"multipart/form-data": s.PreferenceUploadSerializer},
                   responses={201: s.ImportReportSerializer, 400: s.ImportFailedSerializer,
                              413: OpenApiResponse(description="The file is over TUNELOOP_MAX_IMPORT_BYTES")})
    def post(self, request, slug: str):
        """Import a JSONL, CSV or Parquet file of preferences, streamed, in one transaction (managers).
        For files of hundreds of thousands of pairs, ``manage.py import_preferences`` avoids the upload."""
        project = self.project(MANAGERS)
        if refused := too_large("import", request=request):
            raise PayloadTooLarge(refused)
        data = self.parsed(s.PreferenceUploadSerializer)
        upload = data["file"]
        if refused := too_large("import", upload=upload):
            raise PayloadTooLarge(refused)
        report = preferences_import(project=project, stream=upload, filename=upload.name, user=request.user,
                                    review=data["review"])
        return Response(s.ImportReportSerializer(report).data, status=status.HTTP_201_CREATED)

"""Knowledge-base REST API: members of the project read (bases, documents, search), managers write
(create, upload, delete). An upload with problems is ``400 {"detail", "problems": [...]}`` and
stores nothing; an upload over ``TUNELOOP_MAX_KNOWLEDGE_BYTES`` is a 413."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.mixins import ListModelMixin
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from annotation.selectors import EVERYONE
from config.uploads import too_large
from serving.api import ServingView
from serving.knowledge import selectors, services
from serving.knowledge.retrieval import MAX_K, MAX_QUERY_CHARS, passages_search
from serving.models import KnowledgeBase, KnowledgeChunk, KnowledgeDocument


class KnowledgeBaseSerializer(serializers.ModelSerializer):
    document_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = KnowledgeBase
        fields = ["id", "name", "description", "index_state", "index_progress", "index_error", "indexed_at",
                  "document_count", "created_at"]


class KnowledgeBaseCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class DocumentSerializer(serializers.ModelSerializer):
    chunk_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = KnowledgeDocument
        fields = ["id", "source", "title", "url", "content_type", "sha256", "size_bytes", "chunk_count",
                  "created_at", "updated_at"]


class ChunkSerializer(serializers.ModelSerializer):
    class Meta:
        model = KnowledgeChunk
        fields = ["id", "position", "section", "text", "token_count", "char_start"]


class DocumentDetailSerializer(DocumentSerializer):
    chunks = ChunkSerializer(many=True, read_only=True)

    class Meta(DocumentSerializer.Meta):
        fields = [*DocumentSerializer.Meta.fields, "chunks"]


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(), help_text=".md, .txt, .html, .pdf or .jsonl files")


class PassageSerializer(serializers.Serializer):
    chunk_id = serializers.IntegerField()
    document_id = serializers.IntegerField()
    knowledge_base_id = serializers.IntegerField()
    title = serializers.CharField()
    section = serializers.CharField()
    source = serializers.CharField()
    url = serializers.CharField()
    text = serializers.CharField()
    score = serializers.FloatField()


class KnowledgeView(ServingView):
    def base(self, roles=None):
        self.roles = roles or self.roles
        return selectors.knowledge_base_of(self.project(), self.kwargs["knowledge_base_id"])


class KnowledgeBaseList(ListModelMixin, KnowledgeView):
    serializer_class = KnowledgeBaseSerializer

    def get(self, request, slug: str):
        """The project's knowledge bases (any member)."""
        self.roles = EVERYONE
        page = self.paginate_queryset(selectors.knowledge_bases_of(self.project()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request=KnowledgeBaseCreateSerializer, responses={201: KnowledgeBaseSerializer})
    def post(self, request, slug: str):
        """Create a knowledge base (managers)."""
        project = self.project()
        data = self.parsed(KnowledgeBaseCreateSerializer)
        base = services.knowledge_base_create(project=project, name=data["name"],
                                              description=data.get("description", ""), created_by=request.user)
        return Response(KnowledgeBaseSerializer(base).data, status=status.HTTP_201_CREATED)


class KnowledgeBaseDetail(KnowledgeView):
    serializer_class = KnowledgeBaseSerializer

    def get(self, request, slug: str, knowledge_base_id: int):
        """One knowledge base with its indexing state and progress (any member)."""
        return Response(KnowledgeBaseSerializer(self.base(EVERYONE)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, slug: str, knowledge_base_id: int):
        """Delete the knowledge base and everything in it (managers)."""
        services.knowledge_base_delete(knowledge_base=self.base())
        return Response(status=status.HTTP_204_NO_CONTENT)


class DocumentList(ListModelMixin, KnowledgeView):
    serializer_class = DocumentSerializer
    parser_classes = [MultiPartParser]

    def get(self, request, slug: str, knowledge_base_id: int):
        """The base's documents (any member)."""
        page = self.paginate_queryset(selectors.documents_of(self.base(EVERYONE)))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses={201: DocumentSerializer(many=True)})
    def post(self, request, slug: str, knowledge_base_id: int):
        """Upload files (managers); a file named like a stored document replaces it. All or nothing."""
        base = self.base()
        problem = too_large("knowledge", request=request)
        if problem:
            return Response({"detail": problem}, status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        uploads = request.FILES.getlist("files")
        try:
            files = [(f.name, f.read()) for f in uploads]
            stored = services.knowledge_documents_upload(knowledge_base=base, files=files, created_by=request.user)
        except services.KnowledgeImportFailed as exc:
            return Response({"detail": str(exc), "problems": exc.problems}, status=status.HTTP_400_BAD_REQUEST)
        finally:
            for f in uploads:
                f.close()
        return Response(DocumentSerializer(stored, many=True).data, status=status.HTTP_201_CREATED)


class DocumentDetail(KnowledgeView):
    serializer_class = DocumentDetailSerializer

    def get(self, request, slug: str, knowledge_base_id: int, document_id: int):
        """One document with its passages (any member)."""
        document = selectors.document_of(self.base(EVERYONE), document_id)
        data = DocumentSerializer(document).data
        data["chunks"] = ChunkSerializer(selectors.chunks_of(document)[:5000], many=True).data
        return Response(data)

    @extend_schema(responses={204: None})
    def delete(self, request, slug: str, knowledge_base_id: int, document_id: int):
        """Delete a document; searches stop returning its passages at once (managers)."""
        services.knowledge_document_delete(document=selectors.document_of(self.base(), document_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class Search(KnowledgeView):
    serializer_class = PassageSerializer

    @extend_schema(parameters=[
        OpenApiParameter("q", str, required=True, description=f"The question (at most {MAX_QUERY_CHARS} characters)."),
        OpenApiParameter("k", int, description=f"How many passages (1 to {MAX_K}, default 5)."),
    ], responses={200: PassageSerializer(many=True)})
    def get(self, request, slug: str, knowledge_base_id: int):
        """The passages of this base that best answer ``q`` (hybrid search; any member)."""
        base = self.base(EVERYONE)
        k = request.query_params.get("k", "5")
        k = int(k) if k.isdigit() else 5
        passages = passages_search(knowledge_base_ids=[base.pk], query=request.query_params.get("q", ""), k=k)
        return Response([PassageSerializer(p).data for p in passages])

"""Writes for knowledge bases: create, upload (parse, chunk, store), delete, and the indexing job.

An upload is all or nothing: the file is parsed and chunked before anything is written, then every
document and chunk is written in one transaction. Re-uploading a ``source`` the base already holds
replaces that document's text and chunks (an identical file changes nothing). The vectors are made
afterwards by ``knowledge_base_index``, which a Celery task (``serving/tasks.py``) runs on a worker;
the base shows its progress meanwhile, and its earlier passages stay searchable until the new index
is ready. Every change moves ``indexed_at``, which is what the per-process search caches key on.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from serving.errors import ServingError
from serving.knowledge import embedding
from serving.knowledge.chunking import ChunkConfig, chunk_text
from serving.knowledge.parsing import KnowledgeInputError, Limits, ParsedDocument, parse_file
from serving.models import KnowledgeBase, KnowledgeChunk, KnowledgeDocument

log = logging.getLogger(__name__)

MAX_CHUNKS_PER_BASE = 200_000
MAX_BASES_PER_PROJECT = 50
MAX_FILES_PER_UPLOAD = 100
INDEX_BATCH = 256
State = KnowledgeBase.IndexState


class KnowledgeImportFailed(ServingError):
    """The upload had problems (``problems``, each naming its file, line or field); nothing was stored."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"nothing was stored: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
                         f"to fix first: {problems[0] if problems else ''}")


def knowledge_base_create(*, project, name: str, description: str = "", created_by=None) -> KnowledgeBase:
    name = " ".join((name or "").split())
    if not name:
        raise ServingError("give the knowledge base a name")
    if len(name) > 100 or len(description or "") > 2000:
        raise ServingError("the name takes at most 100 characters and the description 2000")
    if KnowledgeBase.objects.filter(project=project).count() >= MAX_BASES_PER_PROJECT:
        raise ServingError(f"a project holds at most {MAX_BASES_PER_PROJECT} knowledge bases")
    try:
        with transaction.atomic():
            return KnowledgeBase.objects.create(project=project, name=name, description=description or "",
                                                created_by=created_by)
    except IntegrityError:
        raise ServingError(f"this project already has a knowledge base named {name!r}") from None


def knowledge_base_delete(*, knowledge_base: KnowledgeBase) -> None:
    """Delete the base, its documents and chunks; deployments that used it stop retrieving from it."""
    knowledge_base.delete()


def knowledge_documents_upload(*, knowledge_base: KnowledgeBase, files: list[tuple[str, bytes]], created_by=None,
                               enqueue: bool = True, limits: Limits | None = None,
                               chunking: ChunkConfig | None = None) -> list[KnowledgeDocument]:
    """Store the documents of the uploaded ``(file name, bytes)`` pairs (a JSONL file holds many), then
    start indexing them.

    Raises ``KnowledgeImportFailed`` listing every problem of every file; then nothing is stored.
    ``enqueue=False`` leaves indexing to the caller (tests and the demo loader call
    ``knowledge_base_index`` directly).
    """
    if not files:
        raise KnowledgeImportFailed(["choose at least one file"])
    if len(files) > MAX_FILES_PER_UPLOAD:
        raise KnowledgeImportFailed([f"{len(files)} files in one upload; at most {MAX_FILES_PER_UPLOAD}"])
    chunking = chunking or ChunkConfig()
    cut: list[tuple[ParsedDocument, list]] = []
    problems: list[str] = []
    sources: dict[str, str] = {}
    for name, data in files:
        try:
            parsed = parse_file(name, data, limits=limits)
        except KnowledgeInputError as exc:
            problems.extend(exc.problems)
            continue
        for doc in parsed:
            if doc.source in sources:
                problems.append(f"{name}: {doc.source!r} is also in {sources[doc.source]}")
                continue
            sources[doc.source] = name
            chunks = chunk_text(doc.text, chunking)
            if not chunks:
                problems.append(f"{doc.source}: no text to index")
            elif len(chunks) > chunking.max_chunks:
                problems.append(f"{doc.source}: {len(chunks):,} passages is over the limit of {chunking.max_chunks:,}")
            cut.append((doc, chunks))
    if problems:
        raise KnowledgeImportFailed(problems)
    with transaction.atomic():
        base = KnowledgeBase.objects.select_for_update().get(pk=knowledge_base.pk)
        stored = _store(base, cut, created_by)
        KnowledgeBase.objects.filter(pk=base.pk).update(
            index_state=State.INDEXING, index_progress=0.0, index_error="")
        if enqueue:
            transaction.on_commit(lambda: _enqueue(base.pk))
    knowledge_base.refresh_from_db()
    return stored


def _store(base: KnowledgeBase, cut, created_by) -> list[KnowledgeDocument]:
    existing = {d.source: d for d in KnowledgeDocument.objects.filter(
        knowledge_base=base, source__in=[doc.source for doc, _ in cut])}
    replaced = sum(1 for doc, _ in cut if doc.source in existing)
    total = KnowledgeChunk.objects.filter(knowledge_base=base).exclude(
        document__in=[existing[doc.source] for doc, _ in cut if doc.source in existing]).count()
    added = sum(len(chunks) for _, chunks in cut)
    if total + added > MAX_CHUNKS_PER_BASE:
        raise KnowledgeImportFailed([f"the knowledge base would hold {total + added:,} passages, over the limit "
                                     f"of {MAX_CHUNKS_PER_BASE:,}; split it into several bases"])
    stored = []
    for doc, chunks in cut:
        document = existing.get(doc.source)
        if document is not None and document.sha256 == doc.sha256 and document.chunks.exists():
            stored.append(document)  # the same file again: nothing changes
            continue
        if document is None:
            document = KnowledgeDocument(knowledge_base=base, source=doc.source, created_by=created_by)
        else:
            document.chunks.all().delete()
        document.title, document.url, document.content_type = doc.title, doc.url, doc.content_type
        document.text, document.sha256, document.size_bytes = doc.text, doc.sha256, doc.size_bytes
        document.save()
        KnowledgeChunk.objects.bulk_create([
            KnowledgeChunk(document=document, knowledge_base=base, position=c.position, section=c.section,
                           text=c.text, token_count=c.token_count, char_start=c.char_start)
            for c in chunks], batch_size=1000)
        stored.append(document)
    log.info("knowledge base %s: %d documents stored (%d replaced)", base.pk, len(stored), replaced)
    return stored


def _enqueue(knowledge_base_id: int) -> None:
    from serving.tasks import knowledge_base_index_task

    knowledge_base_index_task.delay(knowledge_base_id)


def knowledge_base_reindex(*, knowledge_base: KnowledgeBase, enqueue: bool = True) -> None:
    """Start indexing again (after a failure, or a lost worker): chunks without a vector get one."""
    if not KnowledgeChunk.objects.filter(knowledge_base=knowledge_base).exists():
        raise ServingError("the knowledge base holds no documents to index")
    with transaction.atomic():
        KnowledgeBase.objects.filter(pk=knowledge_base.pk).update(
            index_state=State.INDEXING, index_progress=0.0, index_error="")
        if enqueue:
            transaction.on_commit(lambda: _enqueue(knowledge_base.pk))


def knowledge_document_delete(*, document: KnowledgeDocument) -> None:
    """Delete a document and its chunks; searches stop returning them at once (the caches re-key)."""
    with transaction.atomic():
        base_id = document.knowledge_base_id
        document.delete()
        left = KnowledgeDocument.objects.filter(knowledge_base_id=base_id).exists()
        changes = {"indexed_at": timezone.now()}
        if not left:
            changes.update(index_state=State.EMPTY, index_progress=0.0, index_error="")
        KnowledgeBase.objects.filter(pk=base_id).update(**changes)


def knowledge_base_index(*, knowledge_base_id: int) -> str:
    """Give every chunk of the base without a vector one, batch by batch, with progress; then ready.

    The Celery task's body. Safe to run twice at once (both write the same vectors) and to resume:
    it only embeds what has no vector yet. Loops until none is left, so chunks an upload adds while it
    runs are indexed too. Returns what happened, for the worker's log.
    """
    base = KnowledgeBase.objects.filter(pk=knowledge_base_id).first()
    if base is None:
        return "gone"
    pending = KnowledgeChunk.objects.filter(knowledge_base_id=knowledge_base_id, embedding__isnull=True)
    total = pending.count()
    done = 0
    try:
        while True:
            batch = list(pending.select_related("document").order_by("id")[:INDEX_BATCH])
            if not batch:
                break
            texts = [embedding.passage_text(c.document.title, c.section, c.text) for c in batch]
            vectors = embedding.embed_passages(texts)
            for chunk, vector in zip(batch, vectors, strict=True):
                chunk.embedding = embedding.to_bytes(vector)
            KnowledgeChunk.objects.bulk_update(batch, ["embedding"], batch_size=INDEX_BATCH)
            done += len(batch)
            KnowledgeBase.objects.filter(pk=knowledge_base_id).update(
                index_progress=min(0.99, done / max(total, done, 1)))
    except Exception as exc:
        log.exception("indexing knowledge base %s failed", knowledge_base_id)
        KnowledgeBase.objects.filter(pk=knowledge_base_id).update(
            index_state=State.FAILED, index_error=f"{type(exc).__name__}: {str(exc)[:500]}")
        return "failed"
    has_chunks = KnowledgeChunk.objects.filter(knowledge_base_id=knowledge_base_id).exists()
    KnowledgeBase.objects.filter(pk=knowledge_base_id).update(
        index_state=State.READY if has_chunks else State.EMPTY, index_progress=1.0 if has_chunks else 0.0,
        index_error="", indexed_at=timezone.now())
    return f"indexed {done} chunks"


def knowledge_bases_attach(*, deployment, knowledge_bases) -> None:
    """Make ``deployment`` retrieve from ``knowledge_bases`` (all of its own project)."""
    bases = list(knowledge_bases)
    if any(b.project_id != deployment.project_id for b in bases):
        raise ServingError("a deployment can only use its own project's knowledge bases")
    deployment.knowledge_bases.set(bases)


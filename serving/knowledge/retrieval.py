"""Search knowledge bases for the passages that answer a question: what chat and ``/v1`` call.

``passages_search`` is the contract the answering side builds on; keep its signature stable.
Each knowledge base's ``HybridIndex`` is built from its chunk rows on first search and cached in the
process, keyed by the base's ``indexed_at`` (every upload's indexing and every delete moves it), so a
change is seen by the next search in every process without any message between them. The hits are
read back from the database, so a chunk deleted since the index was built never comes back.

With ``TUNELOOP_KNOWLEDGE_LEXICAL=postgres`` on PostgreSQL the lexical half is the database's
full-text search (``lexical_pg.py``) and the cached indexes hold vectors only.

A base is searched when it is ready, or while it is being re-indexed after having been ready (its
earlier passages stay searchable meanwhile); a base that is empty, failed or never indexed is not.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.urls import reverse

from serving.knowledge import embedding, lexical_pg
from serving.knowledge.index import DEPTH, HybridIndex, fuse
from serving.models import KnowledgeBase, KnowledgeChunk

MAX_QUERY_CHARS = 2000
MAX_K = 50
CACHED_BASES = 32  # per process; the least recently searched is dropped first

_lock = threading.Lock()
_cache: OrderedDict[int, tuple[object, HybridIndex]] = OrderedDict()


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    document_id: int
    knowledge_base_id: int
    title: str
    section: str
    source: str
    url: str
    text: str
    score: float

    def as_citation(self, n: int) -> dict:
        """The passage as ``Message.citations`` and the API carry it, numbered ``n`` as the prompt was."""
        return {"n": n, "chunk_id": self.chunk_id, "document_id": self.document_id, "title": self.title,
                "section": self.section, "source": self.source, "url": self.url, "text": self.text}


def document_page_url(project_slug: str, knowledge_base_id: int, document_id: int, chunk_id: int | None = None) -> str:
    url = reverse("serving:knowledge_document", args=[project_slug, knowledge_base_id, document_id])
    return f"{url}#chunk-{chunk_id}" if chunk_id is not None else url


def searchable_bases(knowledge_base_ids: list[int]):
    return KnowledgeBase.objects.filter(
        pk__in=list(knowledge_base_ids), indexed_at__isnull=False,
        index_state__in=[KnowledgeBase.IndexState.READY, KnowledgeBase.IndexState.INDEXING])


def passages_search(*, knowledge_base_ids: list[int], query: str, k: int = 5) -> list[Passage]:
    """The ``k`` passages of these knowledge bases that best answer ``query``, best first (hybrid search).

    Only ready bases are searched, and only chunks that still exist are returned. The caller decides
    which bases a requester may search (a deployment's own, a project member's).
    """
    query = (query or "").strip()[:MAX_QUERY_CHARS]
    k = max(1, min(int(k), MAX_K))
    if not query or not knowledge_base_ids:
        return []
    in_database = database_lexical()
    bases = list(searchable_bases(knowledge_base_ids))
    indexes = [index for base in bases if len(index := index_of(base, lexical=not in_database))]
    if not indexes:
        return []
    vector = embedding.embed_query(query)
    depth = min(DEPTH, 2 * k)
    if in_database:
        ranked = _fused_with_database(bases, indexes, query, vector, depth)
    else:
        scored: dict[int, float] = {}
        for index in indexes:
            for hit in index.search(query, vector, k=depth):
                scored[hit.chunk_id] = max(scored.get(hit.chunk_id, 0.0), hit.score)
        ranked = sorted(scored.items(), key=lambda item: -item[1])
    return _passages(ranked, k)


def database_lexical() -> bool:
    return settings.KNOWLEDGE_LEXICAL == "postgres" and lexical_pg.available()


def _fused_with_database(bases, indexes, query: str, vector, depth: int) -> list[tuple[int, float]]:
    """RRF of PostgreSQL's full-text ranking and the bases' dense hits merged by cosine."""
    dense = sorted(((int(index.ids[row]), sim) for index in indexes for row, sim in index.dense_scored(vector, depth)),
                   key=lambda item: -item[1])[:depth]
    lexical = lexical_pg.lexical_ids([b.pk for b in bases], query, depth)
    return fuse([lexical, [chunk_id for chunk_id, _ in dense]])


def _passages(ranked: list[tuple[int, float]], k: int) -> list[Passage]:
    rows = {c.pk: c for c in KnowledgeChunk.objects.filter(pk__in=[cid for cid, _ in ranked])
            .select_related("document", "knowledge_base__project").defer("embedding", "document__text")}
    out = []
    for chunk_id, score in ranked:
        chunk = rows.get(chunk_id)
        if chunk is None:
            continue  # deleted since the cached index was built
        doc = chunk.document
        url = doc.url or document_page_url(chunk.knowledge_base.project.slug, chunk.knowledge_base_id, doc.pk, chunk.pk)
        out.append(Passage(chunk_id=chunk.pk, document_id=doc.pk, knowledge_base_id=chunk.knowledge_base_id,
                           title=doc.title, section=chunk.section, source=doc.source, url=url, text=chunk.text,
                           score=float(score)))
        if len(out) == k:
            break
    return out


def index_of(base: KnowledgeBase, *, lexical: bool = True) -> HybridIndex:
    """The base's cached index, rebuilt when its ``indexed_at`` moved since it was built
    (``lexical=False``: vectors only, the database doing the lexical half)."""
    stamp = (base.indexed_at, lexical)
    with _lock:
        cached = _cache.get(base.pk)
        if cached is not None and cached[0] == stamp:
            _cache.move_to_end(base.pk)
            return cached[1]
    index = build_index(base.pk, lexical=lexical)
    with _lock:
        _cache[base.pk] = (stamp, index)
        _cache.move_to_end(base.pk)
        while len(_cache) > CACHED_BASES:
            _cache.popitem(last=False)
    return index


def build_index(knowledge_base_id: int, *, lexical: bool = True) -> HybridIndex:
    """An index of the base's chunks that have a vector (read in batches, not held twice)."""
    rows = (KnowledgeChunk.objects.filter(knowledge_base_id=knowledge_base_id, embedding__isnull=False)
            .order_by("id").values_list("id", "section", "text", "document__title", "embedding"))
    ids, texts, vectors = [], [], []
    for chunk_id, section, text, title, vector in rows.iterator(chunk_size=2000):
        ids.append(chunk_id)
        texts.append(embedding.passage_text(title, section, text))
        vectors.append(embedding.from_bytes(vector))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    return HybridIndex(ids, texts if lexical else None, matrix)


def forget(knowledge_base_id: int | None = None) -> None:
    """Drop a base's cached index (None: all); tests and the bench use it, the stamps do the rest."""
    with _lock:
        if knowledge_base_id is None:
            _cache.clear()
        else:
            _cache.pop(knowledge_base_id, None)

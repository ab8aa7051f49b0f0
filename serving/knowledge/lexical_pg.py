"""The lexical half of knowledge search done by PostgreSQL full-text search (the at-scale setting,
``TUNELOOP_KNOWLEDGE_LEXICAL=postgres``), over the GIN index of migration 0006_kbcore_chunk_fulltext.

Nothing is built or held per process: the database ranks the chunks (``ts_rank_cd``) of the searched
bases that share a word stem with the question. The question's words are OR-ed (``plainto_tsquery``
would AND them, and a chatty question would then match nothing); English stop words are dropped.
"""

from __future__ import annotations

from django.db import connection

SQL = """
WITH q AS (SELECT NULLIF(replace(plainto_tsquery('english', %(query)s)::text, ' & ', ' | '), '') AS text)
SELECT c.id
FROM serving_knowledgechunk c, q
WHERE q.text IS NOT NULL
  AND c.knowledge_base_id = ANY(%(bases)s)
  AND c.embedding IS NOT NULL
  AND to_tsvector('english'::regconfig, c.text) @@ q.text::tsquery
ORDER BY ts_rank_cd(to_tsvector('english'::regconfig, c.text), q.text::tsquery) DESC, c.id
LIMIT %(depth)s
"""


def available() -> bool:
    return connection.vendor == "postgresql"


def lexical_ids(knowledge_base_ids: list[int], query: str, depth: int) -> list[int]:
    """Chunk ids of these bases, best full-text match first (only chunks that have a vector)."""
    with connection.cursor() as cursor:
        cursor.execute(SQL, {"query": query, "bases": list(knowledge_base_ids), "depth": depth})
        return [row[0] for row in cursor.fetchall()]

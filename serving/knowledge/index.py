"""The embedded retrieval index: BM25 (``bm25s``) and exact dense search, fused by reciprocal rank.

Django-free: it takes chunk ids, the texts to match and their unit-length float32 vectors, and the
query's text and vector. The embedding model lives in ``embedding.py``. Reciprocal-rank fusion
(Cormack et al., 2009) adds ``1 / (RRF_K + rank)`` over the two lists, so neither score scale has to
be calibrated against the other; a chunk that both find ranks above one that only one finds.

Dense search is exact (one matrix-vector product) up to ``APPROX_MIN`` passages. Past that the
product reads the whole matrix per query (150 MB at 100k passages of 384 floats: tens of ms on a
busy CPU), so a FAISS inverted-file index (IVF-Flat, inner product) takes over: k-means cells of
the vectors, and a query scans only the ``nprobe`` nearest cells (about a twelfth of the passages),
with exact scores inside them. Without ``faiss-cpu`` installed it stays exact.
docs/operations.md says how to go further (PostgreSQL full-text, a vector index).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

RRF_K = 60
DEPTH = 50  # how deep each list is read before fusing
APPROX_MIN = 20_000  # passages from which dense search goes through FAISS IVF (when installed)
_WORD = re.compile(r"(?u)\b\w\w+\b")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "es", "ed", "s")


def stem(word: str) -> str:
    """A light English suffix stripper (no package): 'statements' and 'statement' meet."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix in ("ies", "ied") else "")
    return word


@dataclass
class Hit:
    chunk_id: int
    score: float


class HybridIndex:
    """Search one set of chunks lexically, densely, or both fused (``mode``)."""

    def __init__(self, chunk_ids, texts: list[str] | None, vectors: np.ndarray):
        """``texts=None`` builds the dense half only (the lexical half is then done elsewhere)."""
        import bm25s
        from bm25s.tokenization import Tokenizer

        self.ids = np.asarray(chunk_ids, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if (texts is not None and len(self.ids) != len(texts)) or len(self.ids) != len(self.vectors):
            raise ValueError("chunk ids, texts and vectors must have the same length")
        self.ivf = _ivf(self.vectors) if len(self.ids) >= APPROX_MIN else None
        if self.ivf is not None:
            self.vectors = np.zeros((0, self.vectors.shape[1]), dtype=np.float32)  # FAISS holds them now
        self.tokenizer = Tokenizer(stopwords="en", stemmer=stem)
        self.bm25 = None
        if texts:
            tokens = self.tokenizer.tokenize(list(texts), update_vocab=True, return_as="ids", show_progress=False)
            self.bm25 = bm25s.BM25()
            self.bm25.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        bm25 = 0
        if self.bm25 is not None:
            bm25 = sum(getattr(a, "nbytes", 0) for a in self.bm25.scores.values())
        dense = self.vectors.nbytes
        if self.ivf is not None:
            dense = self.ivf.ntotal * self.ivf.d * 4 + self.ivf.nlist * self.ivf.d * 4
        return int(dense + self.ids.nbytes + bm25)

    def lexical(self, query: str, depth: int = DEPTH) -> list[int]:
        """Row numbers of the best BM25 matches (only rows sharing a word with the query)."""
        if self.bm25 is None:
            return []
        tokens = self.tokenizer.tokenize([query], update_vocab=False, return_as="ids", show_progress=False)
        if not any(t for t in tokens[0] if t != self.tokenizer.word_to_id.get("", -1)):
            return []
        depth = min(depth, len(self.ids))
        rows, scores = self.bm25.retrieve(tokens, k=depth, show_progress=False, n_threads=0)
        return [int(r) for r, s in zip(rows[0], scores[0], strict=True) if s > 0]

    def dense(self, query_vector: np.ndarray, depth: int = DEPTH) -> list[int]:
        """Row numbers of the nearest vectors by cosine (vectors are unit length)."""
        return [row for row, _ in self.dense_scored(query_vector, depth)]

    def dense_scored(self, query_vector: np.ndarray, depth: int = DEPTH) -> list[tuple[int, float]]:
        """(row, cosine) of the nearest vectors, nearest first."""
        if not len(self.ids):
            return []
        query = np.asarray(query_vector, dtype=np.float32)
        if self.ivf is not None:
            sims, rows = self.ivf.search(query.reshape(1, -1), min(depth, len(self.ids)))
            return [(int(r), float(s)) for r, s in zip(rows[0], sims[0], strict=True) if r >= 0]
        sims = self.vectors @ query
        depth = min(depth, len(sims))
        top = np.argpartition(-sims, depth - 1)[:depth]
        return [(int(r), float(sims[r])) for r in top[np.argsort(-sims[top])]]

    def search(self, query: str, query_vector: np.ndarray | None, *, k: int = 5,
               mode: str = "hybrid", depth: int = DEPTH) -> list[Hit]:
        """The ``k`` best chunks: ``lexical``, ``dense`` or ``hybrid`` (reciprocal-rank fusion)."""
        lists = []
        if mode in ("lexical", "hybrid"):
            lists.append(self.lexical(query, depth))
        if mode in ("dense", "hybrid") and query_vector is not None:
            lists.append(self.dense(query_vector, depth))
        if mode not in ("lexical", "dense", "hybrid"):
            raise ValueError(f"unknown retrieval mode {mode!r}")
        return [Hit(int(self.ids[row]), score) for row, score in fuse(lists)[:k]]


def _ivf(vectors: np.ndarray):
    """A FAISS IVF-Flat inner-product index of ``vectors`` (about sqrt(n) cells), or None without faiss."""
    try:
        import faiss
    except ImportError:
        return None
    n, dim = vectors.shape
    nlist = max(16, round(math.sqrt(n)))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = vectors[np.random.default_rng(0).choice(n, size=min(n, 64 * nlist), replace=False)]
    index.train(sample)
    index.add(vectors)
    index.nprobe = max(8, nlist // 12)
    return index


def fuse(ranked_lists: list[list[int]], rrf_k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion of ranked row lists: (row, score), best first, ties by first seen."""
    scores: dict[int, float] = {}
    for ranked in ranked_lists:
        for rank, row in enumerate(ranked):
            scores[row] = scores.get(row, 0.0) + 1.0 / (rrf_k + rank + 1)
    return sorted(scores.items(), key=lambda item: -item[1])

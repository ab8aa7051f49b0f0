"""Retrieval quality and speed of the knowledge-base index (``serving/knowledge/``), peers side by side.

Quality, on the demo knowledge base (Python's ``pydoc_data.topics``, chunked as an upload is) and its
question set (``serving/knowledge/demo/pydoc_questions.jsonl``, each question with the topics that
answer it): recall@5 (a passage of an answering topic among the first five) and MRR@10 (one over
the rank of the first such passage, 0 past ten) for ``lexical`` (BM25, bm25s), ``dense``
(all-MiniLM-L6-v2, exact cosine) and ``hybrid`` (reciprocal-rank fusion of the two). The peers are
the two single retrievers: hybrid's ratio against each is printed.

Speed: indexing throughput (passages embedded per second, the indexing job's cost), and query latency
p50/p99 at 10k and 100k passages, embedding the query included (what ``passages_search`` does before
reading the hits' rows). The large indexes are the demo's real passages repeated: texts with a
random tenth of their words dropped, vectors with Gaussian noise (sigma 0.02 per dimension) then
re-normalised, rather than embedding 100k texts; the BM25 and matrix sizes are what 100k real
passages would give. Memory: the index's arrays, and the process's peak resident size.

Run: .venv/bin/python bench/retrieval.py [--sizes 10000,100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from serving.knowledge import embedding
from serving.knowledge.chunking import chunk_text
from serving.knowledge.demo import pydoc_files, questions, topic_of
from serving.knowledge.index import HybridIndex
from serving.knowledge.parsing import parse_file

MODES = ("lexical", "dense", "hybrid")


def demo_passages() -> tuple[list[str], list[str]]:
    """(texts as indexed, topic of each) for the demo knowledge base."""
    texts, topics = [], []
    for name, data in pydoc_files():
        [doc] = parse_file(name, data)
        for chunk in chunk_text(doc.text):
            texts.append(embedding.passage_text(doc.title, chunk.section, chunk.text))
            topics.append(topic_of(doc.source))
    return texts, topics


def quality(index: HybridIndex, topics: list[str], qs: list[dict], vectors: list[np.ndarray]) -> dict:
    row_of = {int(cid): row for row, cid in enumerate(index.ids)}
    out = {}
    for mode in MODES:
        recall, rr = [], []
        for q, vec in zip(qs, vectors, strict=True):
            hits = index.search(q["question"], vec, k=10, mode=mode)
            ranks = [r for r, h in enumerate(hits, 1) if topics[row_of[h.chunk_id]] in q["topics"]]
            recall.append(1.0 if ranks and ranks[0] <= 5 else 0.0)
            rr.append(1.0 / ranks[0] if ranks else 0.0)
        out[mode] = (statistics.mean(recall), statistics.mean(rr))
    return out


def scaled(texts: list[str], vectors: np.ndarray, size: int, seed: int = 0) -> HybridIndex:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    rows = np.arange(size) % len(texts)
    noisy = vectors[rows] + rng.normal(0, 0.02, (size, vectors.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    words = [t.split() for t in texts]
    big_texts = [" ".join(w for w in words[r] if pick.random() > 0.1) for r in rows]
    return HybridIndex(np.arange(size), big_texts, noisy)


def latency(index: HybridIndex, qs: list[dict], n: int) -> dict[str, tuple[float, float]]:
    """(p50, p99) in ms of embed + hybrid search (``wall``; ``cpu``: this process's CPU time, which a
    busy shared machine inflates far less than wall time) and of the search alone (``search``)."""
    wall, cpu, search = [], [], []
    for i in range(n):
        q = qs[i % len(qs)]["question"]
        start, start_cpu = time.perf_counter(), time.process_time()
        vec = embedding.embed_query(q)
        mid = time.perf_counter()
        index.search(q, vec, k=5)
        end, end_cpu = time.perf_counter(), time.process_time()
        wall.append((end - start) * 1000)
        cpu.append((end_cpu - start_cpu) * 1000)
        search.append((end - mid) * 1000)
    return {"wall": _pct(wall), "cpu": _pct(cpu), "search": _pct(search)}


def _pct(ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per size")
    args = parser.parse_args()

    texts, topics = demo_passages()
    qs = questions()
    embedding.encoder()  # loading the model is not indexing
    start = time.perf_counter()
    vectors = embedding.embed_passages(texts)
    took = time.perf_counter() - start
    print(f"demo knowledge base: {len(set(topics))} documents, {len(texts)} passages; "
          f"indexing {len(texts) / took:.1f} passages/s (embedding, batch 32)")

    index = HybridIndex(np.arange(len(texts)), texts, vectors)
    qvecs = [embedding.embed_query(q["question"]) for q in qs]
    scores = quality(index, topics, qs, qvecs)
    print(f"\nquality on {len(qs)} questions      recall@5   MRR@10")
    for mode in MODES:
        print(f"  {mode:<8}                        {scores[mode][0]:.3f}    {scores[mode][1]:.3f}")
    hybrid = scores["hybrid"][0]
    print(f"  hybrid recall@5 / lexical: {hybrid / max(scores['lexical'][0], 1e-9):.2f}x, "
          f"/ dense: {hybrid / max(scores['dense'][0], 1e-9):.2f}x "
          f"({'beats both' if hybrid > max(scores['lexical'][0], scores['dense'][0]) else 'does NOT beat both'})")

    for _ in range(20):  # warm the encoder's kernels
        embedding.embed_query(qs[0]["question"])
    print(f"\nquery latency, embed query + hybrid search k=5, {args.queries} queries (ms, p50 / p99)")
    print("  passages   index built  index size    wall            CPU time        search-only wall")
    for size in [int(s) for s in args.sizes.split(",") if s]:
        start = time.perf_counter()
        big = scaled(texts, vectors, size)
        built = time.perf_counter() - start
        t = latency(big, qs, args.queries)
        print(f"  {size:>8,}   {built:7.1f} s   {big.nbytes / 2**20:6.0f} MiB   "
              + "   ".join(f"{t[key][0]:6.1f} / {t[key][1]:6.1f}" for key in ("wall", "cpu", "search")))
        del big
    print(f"\npeak resident memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

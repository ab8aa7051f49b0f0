"""Passage and query vectors from the shared sentence encoder (all-MiniLM-L6-v2, ``training/sentence_encoder.py``).

Django-free. One encoder per process, loaded on first use from the installed package (nothing is
fetched). Vectors are unit length float32, so a dot product is the cosine; they are stored as raw
bytes on the chunk row (``to_bytes``/``from_bytes``). ``embed_passages`` is the indexing job's plain
function: it reports progress through a callback, so a worker, a test or a bench can run it alike.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

MAX_LENGTH = 256  # all-MiniLM-L6-v2 was trained on 128 and accepts 256 word pieces; a chunk fits mostly
BATCH = 32

_lock = threading.Lock()
_encoder = None


def encoder():
    """The process's encoder (all layers), loaded once; tests may swap it with ``use_encoder``."""
    global _encoder
    with _lock:
        if _encoder is None:
            from training.sentence_encoder import load_encoder

            _encoder = load_encoder(max_length=MAX_LENGTH)
        return _encoder


def use_encoder(enc) -> None:
    """Replace the process's encoder (None: load the packaged one again on next use)."""
    global _encoder
    with _lock:
        _encoder = enc


def dimension() -> int:
    return encoder().hidden_size


def passage_text(title: str, section: str, text: str) -> str:
    """What is embedded and matched for a chunk: its document title and heading path lead its text."""
    head = " — ".join(p for p in dict.fromkeys((title.strip(), section.strip())) if p)
    return f"{head}\n{text}" if head else text


def _normalize(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def embed_passages(texts: list[str], *, progress: Callable[[int], None] | None = None,
                   batch_size: int = BATCH) -> np.ndarray:
    """(len(texts), dim) unit vectors; ``progress(done)`` after each batch."""
    enc = encoder()
    out = []
    for start in range(0, len(texts), batch_size):
        out.append(enc.embed(texts[start:start + batch_size], batch_size=batch_size).numpy())
        if progress is not None:
            progress(min(start + batch_size, len(texts)))
    if not out:
        return np.zeros((0, enc.hidden_size), dtype=np.float32)
    return _normalize(np.concatenate(out))


def embed_query(text: str) -> np.ndarray:
    """One unit vector for a question (truncated to the encoder's length like any passage)."""
    return _normalize(encoder().embed([text]).numpy())[0]


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<f4")

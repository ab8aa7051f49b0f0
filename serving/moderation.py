"""Moderation as the server runs it: a model folder's ``ModerationModel`` under a deadline, failing closed.

The model itself (normalisation, the n-gram classifier, the encoder classifier, their per-category
ensemble and thresholds, the lexicon) is plain ML and lives in training/ (training/moderation_model.py);
this module adds only what serving needs:

- ``Moderator.check(text)`` normalises and scores under a deadline on a small thread pool: ``timeout_ms``
  plus ``TIMEOUT_MS_PER_1K_CHARS`` per thousand characters, since the encoder reads a long text in
  windows and its time grows with the text (about 80 ms per thousand characters on one core here: a
  pasted page of 5,000 characters took 0.4 s and failed a flat 250 ms deadline). If anything raises
  or the deadline passes, the result is flagged with ``failed_closed=True`` and the error: a broken
  or stuck moderator blocks the message instead of waving it through.
- ``extra_categories``: a project's own categories, each a list of keywords (matched as words on the
  normalised text) or ``re:``-prefixed regular expressions (matched on the normalised and on the raw
  text, case-insensitively).
- ``ModerationResult``: flagged, per-category booleans (score >= 0.5) and scores.
- ``load_moderator(folder)``: the shipped folder (serving/moderation_model/) by default; a folder that
  cannot be loaded in full raises, so a deployment never silently runs without moderation.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from serving.custom_categories import CustomCategories
from training.moderation_model import CATEGORIES, PARENTS, load_model
from training.normalize import normalize

__all__ = ["CATEGORIES", "ModerationResult", "Moderator", "load_moderator", "normalize"]

log = logging.getLogger(__name__)

DEFAULT_FOLDER = Path(__file__).resolve().parent / "moderation_model"
CACHE_SIZE, CACHE_TEXT_CHARS = 4096, 2000  # remembered results (oldest dropped first), longest text remembered
TIMEOUT_MS_PER_1K_CHARS = 150  # added to a check's deadline per thousand characters of its text


@dataclass
class ModerationResult:
    flagged: bool
    categories: dict[str, bool]
    scores: dict[str, float]
    failed_closed: bool = False
    error: str = ""


# --- the pipeline ---

def _one_torch_thread() -> None:
    """Run this pool thread's torch ops on one core. A check is a few dozen tokens: a second OpenMP
    thread barely speeds it up, but a team of two per check, next to the chat engine's own team on a
    small machine, oversubscribes the cores; every parallel region then waits for a descheduled
    partner (measured on 2 loaded cores: 105 ms of CPU per check with two threads, 8.5 ms with one;
    and the engine's decoding steps stall the same way). OpenMP's thread count is per thread, so
    this leaves the engine's and the caller's threads as they are."""
    import torch

    torch.get_num_threads()  # torch's own per-thread setup first, or its first op resets the count
    gomp = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if gomp.exists():  # the wheel's OpenMP runtime, the one torch calls (elsewhere: left as it is)
        ctypes.CDLL(str(gomp)).omp_set_num_threads(1)


_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="moderation",
                                              initializer=_one_torch_thread)


@dataclass
class Moderator:
    """The moderation pipeline. ``classifier`` is anything with ``categories`` and ``scores(norm)``
    (a ``ModerationModel``: its scores already include the lexicon and parent categories)."""

    classifier: object
    extra_categories: dict[str, list[str]] = field(default_factory=dict)
    timeout_ms: float | None = 50

    def __post_init__(self) -> None:
        self._extra = CustomCategories(self.extra_categories)
        self._cache: dict[tuple[int, str], ModerationResult] = {}
        self._cache_lock = threading.Lock()

    @property
    def categories(self) -> tuple[str, ...]:
        own = getattr(self.classifier, "categories", None) or ()
        names = list(CATEGORIES) + [c for c in own if c not in CATEGORIES]
        return tuple(names + [c for c in self._extra if c not in names])

    def check(self, text: str) -> ModerationResult:
        """Moderate one message; never raises: errors and timeouts come back flagged (fail closed).

        Results of short texts are remembered (``CACHE_SIZE``): a chat sends its whole history with
        every turn, and each earlier message would otherwise go through the encoder again.
        """
        key = (id(self.classifier), text) if text and len(text) <= CACHE_TEXT_CHARS else None
        cached = self._cache.get(key) if key else None
        if cached is not None:
            return replace(cached, categories=dict(cached.categories), scores=dict(cached.scores))
        try:
            if not self.timeout_ms or self.timeout_ms <= 0:
                result = self._run(text)
            else:
                deadline_ms = self.timeout_ms + TIMEOUT_MS_PER_1K_CHARS * len(text or "") / 1000
                future = _POOL.submit(self._run, text)
                try:
                    result = future.result(timeout=deadline_ms / 1000)
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    return self._closed(f"moderation timed out after {deadline_ms:.0f} ms")
        except Exception as exc:  # any failure blocks the message
            return self._closed(f"moderation failed: {type(exc).__name__}: {exc}")
        if key:
            with self._cache_lock:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = replace(result, categories=dict(result.categories), scores=dict(result.scores))
        return result

    def _run(self, text: str) -> ModerationResult:
        norm = normalize(text or "")
        custom = self._extra.matches(norm, text or "")  # first: cheap, and it refuses texts over its cap
        scores = {c: 0.0 for c in self.categories}
        if norm:
            scores.update({c: float(v) for c, v in self.classifier.scores(norm).items()})
        for name in custom:
            scores[name] = 1.0
        categories = {c: s >= 0.5 for c, s in scores.items()}
        for child, parent in PARENTS.items():  # "sexual/minors" flags "sexual" too; scores stay as scored
            if categories.get(child) and parent in categories:
                categories[parent] = True
        return ModerationResult(flagged=any(categories.values()), categories=categories,
                                scores={c: round(s, 6) for c, s in scores.items()})

    def _closed(self, error: str) -> ModerationResult:
        log.warning("moderation failed closed: %s", error)
        return ModerationResult(flagged=True, categories={c: False for c in self.categories},
                                scores={c: 0.0 for c in self.categories}, failed_closed=True, error=error)


def load_moderator(folder: str | Path | None = None, *, extra_categories: dict[str, list[str]] | None = None,
                   timeout_ms: float = 50) -> Moderator:
    """The moderator of a model folder (None: the one shipped in serving/moderation_model/).

    Raises ``FileNotFoundError``/``ValueError`` for a missing or foreign folder: a deployment must
    not silently run without moderation.
    """
    model, _config = load_model(folder or DEFAULT_FOLDER)
    moderator = Moderator(model, extra_categories=dict(extra_categories or {}), timeout_ms=timeout_ms)
    # on the deadline's pool: its thread set-up (the first one imports torch, ~2 s) must not be paid
    # inside a user's first check, where it would time out and block a harmless message
    _POOL.submit(moderator._run, "warm up the regexes, numpy and the encoder").result()
    return moderator


class Unloadable:
    """Stands in for a model folder that could not be loaded: every check fails closed with the reason."""

    categories = CATEGORIES

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def scores(self, norm: str) -> dict[str, float]:
        raise RuntimeError(self.reason)


def load_moderator_or_closed(folder: str | Path | None = None, **kwargs) -> tuple[Moderator, bool]:
    """``load_moderator``, or a moderator that blocks everything when the folder is broken; and whether it loaded.

    What a server wants: a broken or half-copied model folder (or a missing encoder package) must
    not crash the chat nor let messages through unchecked.
    """
    try:
        return load_moderator(folder, **kwargs), True
    except Exception as exc:  # whatever a broken folder raises (safetensors has its own errors)
        reason = f"moderation model {folder or DEFAULT_FOLDER} could not be loaded: {type(exc).__name__}: {exc}"
        log.error(reason)
        return Moderator(Unloadable(reason), extra_categories=dict(kwargs.get("extra_categories") or {}),
                         timeout_ms=kwargs.get("timeout_ms", 50)), False


def timed_check(moderator: Moderator, text: str) -> tuple[ModerationResult, float]:
    """``check`` plus its wall time in milliseconds (for benchmarks and event logs)."""
    start = time.perf_counter()
    result = moderator.check(text)
    return result, (time.perf_counter() - start) * 1000

"""How a plain training function reports back, without knowing about Django or Celery.

Every stage (``sft.train``, ``reward.train``, ``ppo.train``, ...) takes a ``Reporter``. In a worker
it writes progress, metrics and checkpoints onto the run row and raises ``RunCancelled`` when a
manager cancelled the run; in a test or a benchmark the ``NullReporter`` or a ``ListReporter`` is used.

Before its first step a stage can spend minutes loading a model, tokenizing its data and evaluating
the untrained model. ``phase`` says which, so the run page shows "loading model" or "tokenizing
rankings · 300 of 1,307" instead of a bar stuck at 0 %; the first ``progress`` call ends the phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class RunCancelled(Exception):
    """Raised from ``Reporter.progress`` when the run should stop (cancelled or taken away)."""


class TrainingDiverged(Exception):
    """A loss, reward or gradient became NaN or infinite; the run fails with this message."""


class Reporter:
    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        """Record that ``step`` of ``total`` is done, with optional metrics for this step."""

    def checkpoint(self, path: Path, step: int) -> None:
        """Record that a resumable checkpoint of ``step`` was written to ``path``."""

    def phase(self, name: str, done: int = 0, total: int = 0) -> None:
        """Record what the stage is doing before (or between) its steps, e.g. ``"loading model"``, with
        ``done`` of ``total`` items when it can count them. Lasts until the next phase or progress."""

    def counted(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """Yield ``items`` unchanged while reporting them as phase ``name``: ``done`` of ``len(items)``,
        about a hundred times over the whole, so wrapping a loop's input costs nothing noticeable."""
        total = len(items) if isinstance(items, Sized) else 0
        every = max(1, total // 100)
        self.phase(name, 0, total)
        done = 0
        for done, item in enumerate(items, start=1):
            yield item
            if done % every == 0 and done != total:
                self.phase(name, done, total)
        self.phase(name, done, total or done)


class NullReporter(Reporter):
    pass


@dataclass
class ListReporter(Reporter):
    """Keeps everything in memory; for tests and benchmarks."""

    steps: list[tuple[int, int]] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    checkpoints: list[tuple[Path, int]] = field(default_factory=list)
    phases: list[tuple[str, int, int]] = field(default_factory=list)

    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        self.steps.append((step, total))
        if metrics:
            self.metrics.append({"step": step, **metrics})

    def checkpoint(self, path: Path, step: int) -> None:
        self.checkpoints.append((Path(path), step))

    def phase(self, name: str, done: int = 0, total: int = 0) -> None:
        self.phases.append((name, done, total))

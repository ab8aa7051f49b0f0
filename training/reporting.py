"""How a plain training function reports back, without knowing about Django or Celery.

Every stage (``sft.train``, ``reward.train``, ``ppo.train``, ...) takes a ``Reporter``. In a worker
it writes progress, metrics and checkpoints onto the run row and raises ``RunCancelled`` when a
manager cancelled the run; in a test or a benchmark the ``NullReporter`` or a ``ListReporter`` is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class RunCancelled(Exception):
    """Raised from ``Reporter.progress`` when the run should stop (cancelled or taken away)."""


class TrainingDiverged(Exception):
    """A loss, reward or gradient became NaN or infinite; the run fails with this message."""


class Reporter:
    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        """Record that ``step`` of ``total`` is done, with optional metrics for this step."""

    def checkpoint(self, path: Path, step: int) -> None:
        """Record that a resumable checkpoint of ``step`` was written to ``path``."""


class NullReporter(Reporter):
    pass


@dataclass
class ListReporter(Reporter):
    """Keeps everything in memory; for tests and benchmarks."""

    steps: list[tuple[int, int]] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    checkpoints: list[tuple[Path, int]] = field(default_factory=list)

    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        self.steps.append((step, total))
        if metrics:
            self.metrics.append({"step": step, **metrics})

    def checkpoint(self, path: Path, step: int) -> None:
        self.checkpoints.append((Path(path), step))

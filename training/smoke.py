"""A trivial run kind that counts steps, with checkpoints: it proves the worker, the heartbeat,
the sweep and resume work without loading a model."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from training.reporting import NullReporter, Reporter


@dataclass
class SmokeConfig:
    total_steps: int = 5
    step_seconds: float = 0.2
    checkpoint_every: int = 1


def count_steps(
    out_dir: Path, config: SmokeConfig, reporter: Reporter = NullReporter(), resume_from: Path | None = None
) -> dict:
    """Count from the checkpointed step (or 0) to ``config.total_steps``; returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    if resume_from is not None and (Path(resume_from) / "state.json").exists():
        start = json.loads((Path(resume_from) / "state.json").read_text())["step"]
    for step in range(start + 1, config.total_steps + 1):
        time.sleep(config.step_seconds)
        if step % config.checkpoint_every == 0 or step == config.total_steps:
            ckpt = out_dir / "checkpoint"
            ckpt.mkdir(exist_ok=True)
            (ckpt / "state.json").write_text(json.dumps({"step": step}))
            reporter.checkpoint(ckpt, step)
        reporter.progress(step, config.total_steps, {"count": step})
    return {"steps": config.total_steps, "resumed_from_step": start}

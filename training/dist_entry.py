"""The program each ``torchrun`` rank runs: set up the process group, call the stage, report.

``python -m torch.distributed.run ... -m training.dist_entry launch.json``; see training/launch.py.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from pathlib import Path

from training.launch import die_with_parent
from training.reporting import NullReporter, Reporter


class FileReporter(Reporter):
    """Appends progress and checkpoint events as JSON lines for the launching process to read."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _write(self, event: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(event) + "\n")

    def progress(self, step: int, total: int, metrics: dict | None = None) -> None:
        self._write({"event": "progress", "step": step, "total": total, "metrics": metrics or {}})

    def checkpoint(self, path: Path, step: int) -> None:
        self._write({"event": "checkpoint", "path": str(path), "step": step})

    def phase(self, name: str, done: int = 0, total: int = 0) -> None:
        self._write({"event": "phase", "name": name, "done": done, "total": total})


def main(spec_path: str) -> None:
    die_with_parent(signal.SIGKILL)
    import torch
    import torch.distributed as dist

    from training.distributed import backend, device

    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ.get("RANK", "0"))
    if device().type == "cuda":
        torch.cuda.set_device(device())  # before the group: NCCL binds each rank to its current device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group(backend=backend())
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    module_name, fn_name = spec["target"].split(":")
    fn = getattr(importlib.import_module(module_name), fn_name)
    reporter = FileReporter(spec["progress"]) if rank == 0 else NullReporter()
    try:
        result = fn(**spec["kwargs"], reporter=reporter)
        if rank == 0:
            Path(spec["result"]).write_text(json.dumps(result))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

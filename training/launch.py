"""Run a training stage in N processes under ``torchrun``, as a child process group of the worker.

The stage runs in every rank; rank 0 reports progress and checkpoints as JSON lines into a file
that the parent tails and forwards to its ``Reporter``. So progress and cancel work as in
process: a ``RunCancelled`` from the reporter stops the whole group. Every process of the group
gets ``PR_SET_PDEATHSIG``: if the worker dies the launcher dies, if the launcher dies its ranks
die, so no rank outlives a killed launcher. A non-zero exit raises ``LaunchFailed`` with the
tail of the group's log, which the run records as its error.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from training.reporting import Reporter

PR_SET_PDEATHSIG = 1


class LaunchFailed(RuntimeError):
    """The torchrun process group exited non-zero or was killed."""


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no-op elsewhere)."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def torchrun_command(spec_path: Path, nproc: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "--max-restarts=0", "-m", "training.dist_entry", str(spec_path),
    ]


def _forward(lines: list[str], reporter: Reporter) -> None:
    for line in lines:
        event = json.loads(line)
        if event["event"] == "progress":
            reporter.progress(event["step"], event["total"], event.get("metrics"))
        elif event["event"] == "checkpoint":
            reporter.checkpoint(Path(event["path"]), event["step"])
        elif event["event"] == "phase":
            reporter.phase(event["name"], event["done"], event["total"])


def _stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def run_in_processes(
    target: str, kwargs: dict, nproc: int, reporter: Reporter, work_dir: Path, poll_seconds: float = 0.5
) -> dict:
    """Call ``target`` ("module:function") in ``nproc`` torchrun processes; returns rank 0's result.

    ``kwargs`` must be JSON-serialisable (paths as strings, configs as dicts).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    progress_path, result_path = work_dir / "progress.jsonl", work_dir / "result.json"
    for path in (progress_path, result_path):
        path.unlink(missing_ok=True)
    spec_path = work_dir / "launch.json"
    spec_path.write_text(json.dumps(
        {"target": target, "kwargs": kwargs, "progress": str(progress_path), "result": str(result_path)}
    ))
    log_path = work_dir / "torchrun.log"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            torchrun_command(spec_path, nproc), stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )
    (work_dir / "launcher.pid").write_text(str(proc.pid))
    offset = 0
    try:
        while True:
            finished = proc.poll() is not None
            if progress_path.exists():
                with open(progress_path) as f:
                    f.seek(offset)
                    chunk = f.read()
                complete = chunk[: chunk.rfind("\n") + 1]
                offset += len(complete.encode())
                _forward([line for line in complete.splitlines() if line.strip()], reporter)
            if finished:
                break
            time.sleep(poll_seconds)
    except BaseException:
        _stop_group(proc)
        raise
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace")[-1500:]
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with code {proc.returncode}"
        raise LaunchFailed(f"torchrun ({nproc} processes) {how}; last output:\n{tail}")
    return json.loads(result_path.read_text())

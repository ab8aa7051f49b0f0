"""The same job in one process and in two torchrun processes (gloo on CPU), and a killed launcher."""

import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from training.launch import LaunchFailed, run_in_processes
from training.pretrain import PretrainConfig, pretrain
from training.reporting import ListReporter

CORPUS = Path(__file__).resolve().parents[2] / "training" / "corpus_data" / "tiny_stories.txt"
CONFIG = PretrainConfig(vocab_size=384, n_layer=2, n_embd=64, n_head=4, block_size=64, batch_size=8,
                        max_steps=12, eval_every=6, warmup_steps=4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "stories.txt"
    path.write_text("\n".join(CORPUS.read_text().splitlines()[:300]) + "\n")
    return path


def processes_mentioning(marker: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and int(pid) != os.getpid():
            pids.append(int(pid))
    return pids


def test_two_torchrun_processes_follow_the_one_process_trajectory(corpus, tmp_path):
    single = ListReporter()
    one = pretrain(corpus, tmp_path / "one", CONFIG, single)
    double = ListReporter()
    two = run_in_processes(
        "training.pretrain:pretrain",
        {"corpus_path": str(corpus), "out_dir": str(tmp_path / "two"), "config": asdict(CONFIG)},
        2, double, tmp_path / "launch",
    )
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert [s for s, _ in double.steps] == list(range(1, 13))
    for a, b in zip(single.metrics, double.metrics, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)  # float reduction order differs
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-3)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "two") is not None


def test_killing_the_torchrun_launcher_fails_the_job_and_leaves_no_orphans(corpus, tmp_path):
    import signal

    long = asdict(CONFIG) | {"max_steps": 100000}
    work = tmp_path / "launch"
    outcome = {}

    def launch():
        try:
            run_in_processes("training.pretrain:pretrain",
                             {"corpus_path": str(corpus), "out_dir": str(tmp_path / "out"), "config": long},
                             2, ListReporter(), work)
        except LaunchFailed as exc:
            outcome["error"] = str(exc)

    thread = threading.Thread(target=launch)
    thread.start()
    deadline = time.time() + 120
    while not (work / "progress.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (work / "progress.jsonl").exists(), "the ranks never reported progress"
    marker = str(work / "launch.json")
    assert len(processes_mentioning(marker)) >= 3  # the launcher and two ranks
    os.kill(int((work / "launcher.pid").read_text()), signal.SIGKILL)
    thread.join(timeout=60)
    assert "was killed by signal 9" in outcome["error"]
    deadline = time.time() + 15
    while processes_mentioning(marker) and time.time() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(marker) == []

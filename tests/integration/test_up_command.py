"""`manage.py up` (what `make run` calls): web + a real worker on embedded defaults; Ctrl-C stops both."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def platform(tmp_path):
    """The platform on its own data dir, SQLite and filesystem broker, whatever the test run uses."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env |= {"TUNELOOP_DATA_DIR": str(tmp_path), "TUNELOOP_EMBEDDED": "1", "DJANGO_SETTINGS_MODULE": "config.settings",
            "TUNELOOP_MODEL_STORE_DIR": str(tmp_path / "models"), "TUNELOOP_RUNS_DIR": str(tmp_path / "runs"),
            "TUNELOOP_WORKER_HEARTBEAT_SECONDS": "1", "TUNELOOP_BASE_MODEL_SOURCE": str(_tiny_base(tmp_path))}
    port = free_port()
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "manage.py", "up", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield proc, f"http://127.0.0.1:{port}", tmp_path
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _tiny_base(tmp_path):
    from training.tiny import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path / "tiny-source")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_up_serves_login_reports_healthy_with_a_live_worker_and_stops_both_on_ctrl_c(platform):
    proc, url, data_dir = platform
    deadline, health = time.time() + 150, None
    while time.time() < deadline:
        assert proc.poll() is None, (data_dir / "up.log").read_text()[-3000:]
        try:
            health = httpx.get(f"{url}/healthz", timeout=5)
            if health.status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(1)
    assert health is not None and health.status_code == 200, (data_dir / "up.log").read_text()[-3000:]
    assert health.json()["components"]["queues"]["training"] == "ok"
    login = httpx.get(f"{url}/accounts/login/")
    assert login.status_code == 200 and "Log in to Tuneloop" in login.text
    log = (data_dir / "up.log").read_text()
    assert "alice" in log and "manager" in log  # the demo accounts are printed
    children = children_of(proc.pid)
    assert len(children) == 2
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    time.sleep(1)
    assert all(not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
               for pid in children)

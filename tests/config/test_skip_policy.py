"""CI fails when a test skips for a reason nobody documented (tests/skip_policy.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pytest(tmp_path: Path, reason: str, strict: str) -> subprocess.CompletedProcess:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text("from tests.skip_policy import *  # noqa\n")
    (tmp_path / "test_one.py").write_text(
        f"import pytest\n\ndef test_runs():\n    pass\n\ndef test_skips():\n    pytest.skip({reason!r})\n")
    env = {**os.environ, "TUNELOOP_STRICT_SKIPS": strict, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), "-p", "no:cacheprovider",
         "-p", "no:django", "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(("reason", "strict", "passes"), [
    ("no GPU on this machine", "1", True),
    ("needs PostgreSQL (DATABASE_URL)", "1", True),
    ("needs PostgreSQL (DATABASE_URL)", "services", False),
    ("the network is flaky today", "1", False),
    ("the network is flaky today", "", True),
])
def test_a_skip_outside_the_documented_reasons_fails_ci(tmp_path, reason, strict, passes):
    result = _pytest(tmp_path, reason, strict)
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    if not passes:
        assert "skips outside the documented reasons" in result.stdout
        assert reason in result.stdout

"""CI's rule on skips: a test may skip only for a documented reason.

A skip hides a test as well as a failure does, so under ``TUNELOOP_STRICT_SKIPS`` (``.ci/run``
sets it) a skip whose reason matches none of the patterns below fails the session, with the test
and its reason listed. ``TUNELOOP_STRICT_SKIPS=services`` is the PostgreSQL + Redis run: there a
test that needs those servers must run, so their reasons are not allowed either.
"""

from __future__ import annotations

import os
import re

import pytest

# Reason pattern -> why it is acceptable (keep in step with the skips the tests make).
ALLOWED = {
    r"no GPU|CUDA is not available|needs a GPU|needs (a|two) CUDA GPUs?": "the GPU tests run on GPU machines only",
    r"needs PostgreSQL": "PostgreSQL-only behaviour (row locks, SKIP LOCKED); runs in the PostgreSQL + Redis set-up",
    r"needs Redis": "Redis-only behaviour; runs in the PostgreSQL + Redis set-up",
}
_SERVICES = (r"needs PostgreSQL", r"needs Redis")

_skipped: list[tuple[str, str]] = []


def _allowed_patterns() -> list[str]:
    mode = os.environ.get("TUNELOOP_STRICT_SKIPS", "").strip().lower()
    return [p for p in ALLOWED if not (mode == "services" and p in _SERVICES)]


def _strict() -> bool:
    return os.environ.get("TUNELOOP_STRICT_SKIPS", "").strip().lower() not in ("", "0", "false", "no", "off")


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if not any(re.search(p, reason) for p in _allowed_patterns()):
            _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session, exitstatus):
    if _strict() and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _strict() and _skipped:
        terminalreporter.section("skips outside the documented reasons (tests/skip_policy.py)", red=True)
        for nodeid, reason in _skipped:
            terminalreporter.write_line(f"{nodeid}: {reason}")

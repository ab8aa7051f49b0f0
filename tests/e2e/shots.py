"""Where the browser tests save their screenshots: a temporary folder, so `make test` leaves the tree clean.

``make screenshots`` (``TUNELOOP_SCREENSHOTS=docs/screenshots``) runs the browser tests to refresh the
pictures the docs show; nothing else writes to ``docs/screenshots/``.
"""

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOTS = (ROOT / os.environ["TUNELOOP_SCREENSHOTS"] if os.environ.get("TUNELOOP_SCREENSHOTS")
         else Path(tempfile.gettempdir()) / "tuneloop-screenshots")


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll a JavaScript expression until it is truthy. Playwright's ``wait_for_function`` evaluates a
    string with ``eval`` inside the page, which the Content-Security-Policy (no 'unsafe-eval') refuses;
    ``page.evaluate`` goes through the DevTools protocol, which the policy does not govern."""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"never true in the page: {expression}")
        time.sleep(0.1)

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

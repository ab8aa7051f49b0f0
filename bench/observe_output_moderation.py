"""A bench-only server: output moderation's verdicts are recorded, not acted on. NEVER deploy this.

``bench/chat_concurrency.py --observe-output-moderation`` serves this ASGI app in a second pass, to
show what the serving pipeline itself costs when output moderation's false positives on benign
answers (which end rows early and replace them with a template) are taken out of the figure.
Everything else is the production path: input moderation acts as always, and every output check
still runs (its cost stays in the figure); a flagged verdict is only written, one line per answer
with a flagged check, to the file ``TUNELOOP_BENCH_OBSERVE_LOG`` names, and the answer streams on. Such
an answer is not always one the server would replace: a flag on an answer's first words is confirmed
on a longer window first (serving/pipeline.py, ``confirm_words``), which this pass never reaches. The
headline figures are the ones with moderation acting (``config.asgi``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace

from config.asgi import application  # noqa: F401  (Django set up, the app uvicorn serves)
from serving import pipeline

LOG = os.environ["TUNELOOP_BENCH_OBSERVE_LOG"]
_LOG_LOCK = threading.Lock()


class RecordingModerator:
    """Runs every check of the real moderator; answers "not flagged" and counts the flags instead."""

    def __init__(self, moderator) -> None:
        self.moderator, self.flags = moderator, 0

    def check(self, text: str):
        result = self.moderator.check(text)
        if result.flagged:
            self.flags += 1
        return replace(result, flagged=False)

    def __getattr__(self, name):
        return getattr(self.moderator, name)


_events = pipeline.ModeratedReply.events


def _observed_events(self):
    if not self.started:
        self.start()  # input moderation: the real one, acting
    recorder = RecordingModerator(self.moderator)
    self.moderator = recorder
    try:
        yield from _events(self)
    finally:
        if recorder.flags:
            with _LOG_LOCK, open(LOG, "a") as log:
                log.write(f"flagged by a check ({recorder.flags} flagged checks)\n")


pipeline.ModeratedReply.events = _observed_events

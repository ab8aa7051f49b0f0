"""Stand-ins the serving tests need: an engine that says a scripted answer and records its calls."""

from __future__ import annotations


class ScriptedEngine:
    """Answers every request with ``answer``, ``piece`` characters at a time, and records the requests."""

    def __init__(self, answer: str, piece: int = 3) -> None:
        self.answer, self.piece = answer, piece
        self.calls: list[list[dict]] = []
        self.closed = 0

    def stream(self, messages, params):
        self.calls.append(messages)
        engine = self

        def pieces():
            try:
                for i in range(0, len(engine.answer), engine.piece):
                    yield engine.answer[i:i + engine.piece]
            finally:
                engine.closed += 1

        return pieces()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

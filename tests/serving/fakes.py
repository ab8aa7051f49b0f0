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


class SlotEngine(ScriptedEngine):
    """A scripted engine with ``capacity`` slots, like ``LocalEngine``: ``stream`` takes one (``EngineBusy``
    when none is free) and closing the pieces, or reading them to the end, gives it back, even when they
    were never read. Past ``fail_after`` pieces it raises ``EngineError``."""

    def __init__(self, answer: str, *, capacity: int = 2, piece: int = 3, fail_after: int | None = None) -> None:
        super().__init__(answer, piece)
        self.capacity, self.in_use, self.fail_after = capacity, 0, fail_after

    def stream(self, messages, params):
        from serving.engine import EngineBusy

        if self.in_use >= self.capacity:
            raise EngineBusy("all generation slots busy")
        self.in_use += 1
        self.calls.append(messages)
        return _Pieces(self)


class _Pieces:
    def __init__(self, engine: SlotEngine) -> None:
        self.engine, self.sent, self.released = engine, 0, False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        from serving.engine import EngineError

        engine, start = self.engine, self.sent * self.engine.piece
        if self.released or start >= len(engine.answer):
            self.close()
            raise StopIteration
        if engine.fail_after is not None and self.sent >= engine.fail_after:
            self.close()
            raise EngineError("generation failed: injected")
        self.sent += 1
        return engine.answer[start:start + engine.piece]

    def close(self) -> None:
        if not self.released:
            self.released = True
            self.engine.in_use -= 1

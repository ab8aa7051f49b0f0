"""The answering pipeline: input moderation → model → output moderation → the answer or a template.

``ModeratedReply`` is plain Python (no Django): it takes the request's messages, an engine (anything
with ``stream(messages, params)``), a ``Moderator`` and a ``template_for(categories)`` callable, and
yields events:

- ``("delta", text)``: text the user may see now;
- ``("replace", template)``: the model's answer was flagged; show ``template`` instead of anything
  sent so far.

Input: every message of the request, whatever its role, and each pair of neighbouring messages joined
(for harm split over turns) is moderated before the engine is called; a flagged one means the engine
is never called and the template is the whole answer.

Output, the hold-back strategy: the answer is moderated as a whole, again every ``check_every``
characters and at the end, and text is released only up to ``hold_back`` characters behind the last
moderated position. A flagged phrase is caught while it is still inside the held-back window, so
none of its characters reach the user; answers shorter than the window are checked whole before
their first character is shown. On a flag the engine's iterator is closed (generation stops) and
the reply ends with ``replace``. ``outcome`` then says what happened, for the caller to log.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from serving.engine import GenerationParams
from serving.moderation import ModerationResult

HOLD_BACK_CHARS = 160
CHECK_EVERY_CHARS = 24


@dataclass
class Outcome:
    text: str = ""  # what the user finally got
    model_text: str = ""  # what the model wrote (kept for review even when replaced)
    template: bool = False
    direction: str | None = None  # "input" or "output" when moderation flagged
    flagged_input: str = ""  # the user message that was flagged, for the event log
    flagged: ModerationResult | None = None
    finish_reason: str = "stop"  # stop | length | content_filter
    completion_tokens: int = 0


def flagged_categories(result: ModerationResult) -> list[str]:
    return [c for c, on in result.categories.items() if on]


class ModeratedReply:
    def __init__(self, *, messages: list[dict], engine, params: GenerationParams, moderator,
                 template_for: Callable[[list[str]], str], hold_back: int = HOLD_BACK_CHARS,
                 check_every: int = CHECK_EVERY_CHARS, count_tokens: Callable[[str], int] | None = None) -> None:
        self.messages = messages
        self.engine = engine
        self.params = params
        self.moderator = moderator
        self.template_for = template_for
        self.hold_back = hold_back
        self.check_every = check_every
        self.count_tokens = count_tokens
        self.outcome = Outcome()
        self.started = False
        self.pieces = None

    def moderate_input(self) -> ModerationResult | None:
        """The first flagged result over the caller's messages, or None when everything passes.

        Every message is checked whatever its role (a system or assistant message is as much the
        caller's text as a user one), then each pair of neighbouring messages joined, so harm split
        over two turns ("how do I make a" / "pipe bomb") is read as the model will read it.
        """
        texts = [str(message.get("content") or "") for message in self.messages]
        joined = [f"{a}\n{b}" for a, b in itertools.pairwise(texts)]
        for text in [*texts, *joined]:
            if not text.strip():
                continue
            result = self.moderator.check(text)
            if result.flagged:
                self.outcome.flagged_input = text
                return result
        return None

    def _template(self, result: ModerationResult, direction: str) -> str:
        text = self.template_for(flagged_categories(result))
        self.outcome.template, self.outcome.direction, self.outcome.flagged = True, direction, result
        self.outcome.finish_reason, self.outcome.text = "content_filter", text
        return text

    def start(self) -> None:
        """Moderate the input and, when it passes, open the engine's stream (may raise ``EngineBusy``)."""
        flagged = self.moderate_input()
        if flagged is not None:
            self._template(flagged, "input")
            self.pieces = None
        else:
            self.pieces = self.engine.stream(self.messages, self.params)
        self.started = True

    def events(self) -> Iterator[tuple[str, str]]:
        if not self.started:
            self.start()
        if self.pieces is None:
            yield "delta", self.outcome.text
            return
        generated, released, checked = "", 0, 0
        pieces = self.pieces
        try:
            for piece in pieces:
                generated += piece.replace("\x00", "")  # never stored by PostgreSQL, never useful to show
                if len(generated) - checked < self.check_every:
                    continue
                result = self.moderator.check(generated)
                checked = len(generated)
                if result.flagged:
                    self.outcome.model_text = generated
                    yield "replace", self._template(result, "output")
                    return
                upto = checked - self.hold_back
                space = generated.rfind(" ", released, upto)  # release whole words when there is a break
                upto = space + 1 if space >= released else upto
                if upto > released:
                    yield "delta", generated[released:upto]
                    released = upto
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        self.outcome.model_text = generated
        if checked < len(generated) or not generated:
            result = self.moderator.check(generated)
            if result.flagged:
                yield "replace", self._template(result, "output")
                return
        if len(generated) > released:
            yield "delta", generated[released:]
        self.outcome.text = generated
        if self.count_tokens is not None:
            self.outcome.completion_tokens = self.count_tokens(generated)
            if self.outcome.completion_tokens >= self.params.max_tokens:
                self.outcome.finish_reason = "length"

    def close(self) -> None:
        """Stop generation and free the engine slot, also when ``events()`` was never iterated."""
        close = getattr(self.pieces, "close", None)
        if close is not None:
            close()

    def run(self) -> Outcome:
        """The whole reply at once (non-streaming callers)."""
        for _ in self.events():
            pass
        return self.outcome

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

Output, the hold-back strategy: text is released on word boundaries, and only once a passing
moderation check covered it *and* the ``hold_back`` characters that follow it (the default, 1, holds
back the last whole word: a word shows once a check also read the word after it). A phrase the
classifier flags by the time its next word arrives is caught while its first word is still held
back, so none of it reaches the user; an answer shorter than the first window is checked whole
before its first character is shown. A longer hold-back lets a check read more after a word before
it shows, at the price of the first words' delay: ``bench/moderation_hold_back.py`` measures both
on the moderation corpus's harmful dev texts (docs/operations.md has the figures and the choice). Each check
reads only the new window of the answer: the text not yet released, plus ``context`` characters
before it so a phrase split by a release point is still read whole — the cost of a check does not
grow with the answer. The first check runs as soon as a first word could be released (the first
words show after a handful of tokens); later ones every ``check_every`` new characters, so text
streams in word-sized pieces. A flag on a window shorter than ``confirm_words`` words (in practice an
answer's first words: later windows carry their context) is confirmed first: nothing more is released,
generation goes on, and the window is checked again once it holds ``confirm_words`` words (or the answer
ends): still flagged, the answer is replaced; passing, the text is released. A classifier reads three to
eight words far less reliably than a sentence ("To kill a stuck process", "Daddy, I'm just a little kid"
flag alone and pass in their sentence), and no character is shown before a passing check read it either
way (docs/operations.md, "Output moderation of streamed answers"). On a confirmed flag the engine's
iterator is closed (generation stops) and the reply ends with ``replace``. ``outcome`` then says what
happened, for the caller to log; its token counts come from the engine (the templated prompt, the
generated tokens) when it reports them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from serving.engine import GenerationParams
from serving.moderation import ModerationResult

HOLD_BACK_CHARS = 1  # the last whole word waits until a check has also read the word after it (see below)
CHECK_EVERY_CHARS = 12
CONTEXT_CHARS = 96  # released text re-read before the new window
LONG_RUN_CHARS = 32  # text without a word break is released in pieces of this size
CONFIRM_WORDS = 12  # a flag on a shorter window is confirmed on a window of this many words (see below)


@dataclass
class Outcome:
    text: str = ""  # what the user finally got
    model_text: str = ""  # what the model wrote (kept for review even when replaced)
    template: bool = False
    direction: str | None = None  # "input" or "output" when moderation flagged
    flagged_input: str = ""  # the user message that was flagged, for the event log
    flagged: ModerationResult | None = None
    finish_reason: str = "stop"  # stop | length | content_filter
    prompt_tokens: int = 0
    completion_tokens: int = 0


def flagged_categories(result: ModerationResult) -> list[str]:
    return [c for c, on in result.categories.items() if on]


def _whole_words(text: str) -> int:
    """Where the last whole word of ``text`` ends (after its space or newline): a check never reads a
    word the model is still writing ("An honest answe"), whose fragment a classifier may misread.
    The end of ``text`` in a long run without breaks (code, languages written without spaces)."""
    cut = max(text.rfind(" "), text.rfind("\n")) + 1
    return len(text) if len(text) - cut >= LONG_RUN_CHARS else cut


def _word_end(text: str, start: int, limit: int) -> int | None:
    """The end of the last whole word (after its space or newline) in ``text[start:limit]``, if any;
    ``limit`` itself in a long run without breaks (code, languages written without spaces)."""
    if limit <= start:
        return None
    cut = max(text.rfind(" ", start, limit), text.rfind("\n", start, limit))
    if cut >= start:
        return cut + 1
    return limit if limit - start >= LONG_RUN_CHARS else None


class ModeratedReply:
    def __init__(self, *, messages: list[dict], engine, params: GenerationParams, moderator,
                 template_for: Callable[[list[str]], str], hold_back: int = HOLD_BACK_CHARS,
                 check_every: int = CHECK_EVERY_CHARS, context: int = CONTEXT_CHARS,
                 confirm_words: int = CONFIRM_WORDS, count_tokens: Callable[[str], int] | None = None) -> None:
        self.messages = messages
        self.engine = engine
        self.params = params
        self.moderator = moderator
        self.template_for = template_for
        self.hold_back = hold_back
        self.check_every = check_every
        self.context = context
        self.confirm_words = confirm_words
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
        """Moderate the input and, when it passes, open the engine's stream (may raise ``EngineBusy``).

        The engine is told the request is coming (``announce``, when it has one) while the input is
        moderated, so users who arrive together start in one prefill."""
        announce = getattr(self.engine, "announce", None)
        withdraw = announce() if callable(announce) else None
        try:
            flagged = self.moderate_input()
            if flagged is not None:
                self._template(flagged, "input")
                self.outcome.prompt_tokens = self._prompt_tokens()
                self.pieces = None
            else:
                self.pieces = self.engine.stream(self.messages, self.params)
        finally:
            if withdraw is not None:
                withdraw()
        self.started = True

    def events(self) -> Iterator[tuple[str, str]]:
        if not self.started:
            self.start()
        if self.pieces is None:
            yield "delta", self.outcome.text
            return
        generated, released, checked, confirming = "", 0, 0, False
        pieces = self.pieces
        try:
            for piece in pieces:
                generated += piece.replace("\x00", "")  # never stored by PostgreSQL, never useful to show
                whole = _whole_words(generated)
                if confirming:
                    window = self._window(generated, released, whole)
                    if not self._confirms(window):
                        continue  # a flag on a short window waits, its text held back, for the words that confirm it
                else:
                    due = whole - checked >= self.check_every or (not released and whole > checked)
                    if not due or _word_end(generated, released, whole - self.hold_back) is None:
                        continue
                    window = self._window(generated, released, whole)
                result = self.moderator.check(window)
                checked = whole
                if result.flagged and not confirming and not self._confirms(window):
                    confirming = True
                    continue
                confirming = False
                if result.flagged:
                    self.outcome.model_text = generated
                    self._count(pieces, generated)
                    yield "replace", self._template(result, "output")
                    return
                upto = _word_end(generated, released, checked - self.hold_back)
                if upto is not None:
                    yield "delta", generated[released:upto]
                    released = upto
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        self.outcome.model_text = generated
        self._count(pieces, generated)
        if checked < len(generated) or not generated or confirming:
            result = self.moderator.check(self._window(generated, released, len(generated)))
            if result.flagged:
                yield "replace", self._template(result, "output")
                return
        if len(generated) > released:
            yield "delta", generated[released:]
        self.outcome.text = generated

    def _confirms(self, window: str) -> bool:
        """Whether a window is long enough to confirm a flag: ``confirm_words`` words, or 8 characters a
        word of text written without spaces (which would otherwise wait for the end of the answer)."""
        return len(window.split()) >= self.confirm_words or len(window) >= 8 * self.confirm_words

    def _window(self, generated: str, released: int, end: int) -> str:
        """What a check reads: the unreleased text up to ``end`` and the released words just before it."""
        start = max(0, released - self.context)
        if start:
            space = generated.find(" ", start, released)
            start = space + 1 if space >= 0 else start
        return generated[start:end]

    def _prompt_tokens(self) -> int:
        count_prompt = getattr(self.engine, "count_prompt_tokens", None)
        if count_prompt is not None:
            return count_prompt(self.messages)
        if self.count_tokens is None:
            return 0
        return sum(self.count_tokens(str(m.get("content") or "")) for m in self.messages)

    def _count(self, pieces, generated: str) -> None:
        """Token counts and finish reason: the engine's own when it reports them, else counted from text."""
        completion = getattr(pieces, "completion_tokens", None)
        if completion is not None:
            self.outcome.prompt_tokens, self.outcome.completion_tokens = pieces.prompt_tokens, completion
            self.outcome.finish_reason = pieces.finish_reason or "stop"
            return
        self.outcome.prompt_tokens = self._prompt_tokens()
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

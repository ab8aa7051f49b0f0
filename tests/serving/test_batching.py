"""Continuous batching on a tiny model: answers decoded together are the answers each would get alone."""

import threading
from contextlib import contextmanager

import pytest

from serving.engine import EngineBusy, EngineError, GenerationParams, LocalEngine
from serving.moderation import ModerationResult
from serving.pipeline import ModeratedReply

HELLO = [{"role": "user", "content": "hello"}]
FRANCE = [{"role": "user", "content": "What is the capital of France? Tell me about the city."}]
GREEDY = GenerationParams(max_tokens=24, temperature=0)
SAMPLED = GenerationParams(max_tokens=40, temperature=1.0, top_p=0.9, seed=7)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return LocalEngine(tiny_model_dir, capacity=4, max_queue=2)


@contextmanager
def one_batch(engine):
    """Requests opened inside join the batch together: the scheduler cannot take a step until the block ends."""
    with engine.scheduler.lock:
        yield


def solo(engine, messages, params) -> str:
    return "".join(engine.stream(messages, params))


def test_requests_with_their_own_settings_in_one_batch_each_get_their_solo_answer(engine):
    sampled_alone = solo(engine, FRANCE, SAMPLED)
    cut = sampled_alone[len(sampled_alone) // 2:][:3]
    with_stop = GenerationParams(max_tokens=40, temperature=1.0, top_p=0.9, seed=7, stop=[cut])
    alone = [solo(engine, HELLO, GREEDY), solo(engine, FRANCE, GREEDY), sampled_alone, solo(engine, FRANCE, with_stop)]
    assert alone[3] == sampled_alone[:sampled_alone.index(cut)], "the stop string cuts the solo answer"

    with one_batch(engine):
        streams = [engine.stream(HELLO, GREEDY), engine.stream(FRANCE, GREEDY), engine.stream(FRANCE, SAMPLED),
                   engine.stream(FRANCE, with_stop)]
    together = ["", "", "", ""]
    while any(s is not None for s in streams):  # read them interleaved, as four clients would
        for i, stream in enumerate(streams):
            if stream is not None:
                piece = next(stream, None)
                if piece is None:
                    streams[i] = None
                else:
                    together[i] += piece
    assert engine.scheduler.stats()["peak"] == 4, "all four were decoded in one batch"
    assert together == alone


def test_a_cancelled_stream_frees_its_place_at_once(tiny_model_dir):
    engine = LocalEngine(tiny_model_dir, capacity=1, max_queue=1)
    running = engine.stream(HELLO, GenerationParams(max_tokens=4000, temperature=0))
    next(running)
    waiting = engine.stream(HELLO, GREEDY)
    with pytest.raises(EngineBusy):
        engine.stream(HELLO, GREEDY)
    waiting.close()  # a queued request that gives up frees its place in the queue
    queued = engine.stream(HELLO, GREEDY)
    running.close()  # the batch's only row: the queued request takes it at the next step
    assert "".join(queued) == solo(engine, HELLO, GREEDY)
    assert engine.scheduler.stats()["running"] == 0


class FlagsWord:
    """A moderator that flags any text containing ``word``, and records what it was asked to read."""

    categories = ("violence",)

    def __init__(self, word: str) -> None:
        self.word, self.read = word, []

    def check(self, text: str) -> ModerationResult:
        self.read.append(text)
        flagged = self.word in text
        return ModerationResult(flagged=flagged, categories={"violence": flagged}, scores={"violence": float(flagged)})


def test_a_flagged_answer_never_reaches_the_client_under_batching(engine):
    """Two users at once: the one whose answer turns harmful sees none of the harmful words, the other all of his."""
    answer = solo(engine, FRANCE, SAMPLED)
    start = answer.index(" ", len(answer) // 2) + 1
    word = answer[start:start + 4]  # a "harmful" word well into the answer
    moderator = FlagsWord(word)
    replies = [ModeratedReply(messages=m, engine=engine, params=p, moderator=moderator, template_for=lambda c: "T")
               for m, p in ((FRANCE, SAMPLED), (HELLO, GREEDY))]
    events: list[list] = [[], []]

    def read(i):
        events[i].extend(replies[i].events())

    with one_batch(engine):
        for reply in replies:
            reply.start()
    threads = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]

    flagged, benign = events
    shown = "".join(text for kind, text in flagged if kind == "delta")
    assert flagged[-1] == ("replace", "T") and answer.startswith(shown) and word not in shown
    assert len(shown) <= start, "not one character of the flagged word was released"
    assert [text for kind, text in benign if kind == "replace"] == []
    assert "".join(text for _, text in benign) == solo(engine, HELLO, GREEDY)
    assert max(len(text) for text in moderator.read) < 96 + 40, "each check reads a window, not the whole answer"


def test_the_engine_survives_a_request_that_raises_mid_batch(engine):
    expected = solo(engine, FRANCE, SAMPLED)
    with one_batch(engine):
        doomed, fine = engine.stream(HELLO, GenerationParams(max_tokens=30, temperature=0)), engine.stream(FRANCE, SAMPLED)
        calls = {"n": 0}
        choose = doomed.request.choose

        def breaks_on_the_third_token(logits, greedy):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("a bug in this request's sampling")
            return choose(logits, greedy)

        doomed.request.choose = breaks_on_the_third_token
    assert "".join(fine) == expected, "the other request finished as if alone"
    with pytest.raises(EngineError, match="sampling"):
        list(doomed)
    assert solo(engine, HELLO, GREEDY), "and the engine still answers new requests"
    assert engine.scheduler.stats()["running"] == 0


def test_a_failing_forward_pass_fails_its_rows_and_the_engine_carries_on(tiny_model_dir, monkeypatch):
    engine = LocalEngine(tiny_model_dir, capacity=2, max_queue=0)
    expected = solo(engine, HELLO, GREEDY)
    real_forward = engine.scheduler.model.forward
    broken = {"steps": 0}

    def forward(*args, **kwargs):
        broken["steps"] += 1
        if broken["steps"] == 3:
            raise RuntimeError("out of memory")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(engine.scheduler.model, "forward", forward)
    with pytest.raises(EngineError, match="out of memory"):
        list(engine.stream(HELLO, GREEDY))
    assert solo(engine, HELLO, GREEDY) == expected and engine.scheduler.stats()["running"] == 0


def test_a_request_that_waits_past_the_queue_timeout_gets_busy_not_a_hang(tiny_model_dir):
    engine = LocalEngine(tiny_model_dir, capacity=1, max_queue=1, queue_timeout=0.2)
    running = engine.stream(HELLO, GenerationParams(max_tokens=4000, temperature=0))
    next(running)
    queued = engine.stream(HELLO, GREEDY)
    with pytest.raises(EngineBusy, match=r"within 0\.2 s"):
        next(queued)
    running.close()


def test_users_who_arrive_together_start_in_one_prefill(tiny_model_dir, monkeypatch):
    """The second user's input is still being moderated when the first one's request reaches the idle engine:
    the engine waits for it, so both start decoding in one step instead of the second a step behind."""
    from serving import batching

    monkeypatch.setattr(batching, "GATHER_SECONDS", 30.0)  # the test's own pauses never run into the bound
    engine = LocalEngine(tiny_model_dir, capacity=4, max_queue=2)
    prefills = []
    prefill = engine.scheduler._prefill
    monkeypatch.setattr(engine.scheduler, "_prefill", lambda joiners: (prefills.append(len(joiners)), prefill(joiners)))
    expected = [solo(engine, HELLO, GREEDY), solo(engine, FRANCE, GREEDY)]
    prefills.clear()

    arriving = [engine.announce(), engine.announce()]
    first = engine.stream(HELLO, GREEDY)
    arriving[0]()
    threading.Event().wait(0.2)  # the second user's input moderation
    second = engine.stream(FRANCE, GREEDY)
    arriving[1]()
    assert ["".join(first), "".join(second)] == expected
    assert prefills == [2], "one prefill for both users"


def test_an_announced_request_that_never_comes_delays_the_others_only_briefly(tiny_model_dir, monkeypatch):
    from serving import batching

    monkeypatch.setattr(batching, "GATHER_SECONDS", 0.3)
    engine = LocalEngine(tiny_model_dir, capacity=2, max_queue=0)
    expected = solo(engine, HELLO, GREEDY)
    engine.announce()  # never submitted, never withdrawn (a bug elsewhere must not stall the engine)
    answer: list[str] = []
    reader = threading.Thread(target=lambda: answer.append(solo(engine, HELLO, GREEDY)))
    reader.start()
    reader.join(timeout=60)
    assert answer == [expected]


class CountsAnnouncements:
    """An engine that counts the announcements not yet withdrawn; ``busy``: every stream is refused."""

    def __init__(self, busy: bool = False) -> None:
        self.busy, self.outstanding, self.streams = busy, 0, 0

    def announce(self):
        self.outstanding += 1

        def withdraw():
            self.outstanding -= 1

        return withdraw

    def stream(self, messages, params):
        self.streams += 1
        if self.busy:
            raise EngineBusy("full")
        return iter(["Paris is lovely. "])


@pytest.mark.parametrize(("word", "busy"), [("capital", False), ("nothing-flags", True), ("nothing-flags", False)])
def test_a_request_withdraws_its_announcement_on_every_way_out_of_start(word, busy):
    engine = CountsAnnouncements(busy=busy)
    reply = ModeratedReply(messages=FRANCE, engine=engine, params=GREEDY, moderator=FlagsWord(word),
                           template_for=lambda c: "T")
    if busy:
        with pytest.raises(EngineBusy):
            reply.start()
    else:
        reply.start()
    assert engine.outstanding == 0
    assert engine.streams == (0 if word == "capital" else 1), "a flagged question never reaches the model"


def test_a_long_prompt_joins_running_answers_a_chunk_per_step_and_gets_its_solo_answer(tiny_model_dir, monkeypatch):
    """A long conversation joining the batch does not freeze the others for its whole prefill: its prompt goes
    in chunks, the running answer takes steps in between, and both answers are what they would be alone."""
    from serving import batching

    monkeypatch.setattr(batching, "PREFILL_CHUNK", 8)
    engine = LocalEngine(tiny_model_dir, capacity=4, max_queue=2)
    history = [{"role": "user", "content": "Tell me about Paris."}, {"role": "assistant", "content": "It is big."}] * 4
    long_chat = [*history, *FRANCE]
    running_params = GenerationParams(max_tokens=60, temperature=0)
    expected = [solo(engine, HELLO, running_params), solo(engine, long_chat, GREEDY)]
    chunks = len(engine.prompt_ids(long_chat)) // 8 + 1
    assert chunks > 4

    running = engine.stream(HELLO, running_params)
    first = next(running)
    progress = []  # the running answer's length at each chunk of the long prompt
    fill = engine.scheduler._fill
    monkeypatch.setattr(engine.scheduler, "_fill", lambda f: (progress.append(len(running.request.tokens)), fill(f)))
    joining = engine.stream(long_chat, GREEDY)
    assert ["".join([first, *running]), "".join(joining)] == expected
    assert len(progress) >= chunks - 1 and progress[-1] > progress[0], "the running answer went on between chunks"
    assert engine.scheduler.stats()["prefilling"] == 0


def test_a_stream_closed_while_its_long_prompt_is_prefilled_frees_its_place_at_once(tiny_model_dir, monkeypatch):
    from serving import batching

    monkeypatch.setattr(batching, "PREFILL_CHUNK", 8)
    engine = LocalEngine(tiny_model_dir, capacity=2, max_queue=0)
    long_chat = [{"role": "user", "content": "Tell me about Paris. " * 12}]
    running = engine.stream(HELLO, GenerationParams(max_tokens=4000, temperature=0))
    next(running)
    chunks = []
    fill = engine.scheduler._fill

    def close_after_the_first_chunk(filling):
        chunks.append(filling.done)
        fill(filling)
        if len(chunks) == 1:
            engine.scheduler.cancel(filling.request)  # what the stream's close() does: the client went away

    monkeypatch.setattr(engine.scheduler, "_fill", close_after_the_first_chunk)
    joining = engine.stream(long_chat, GREEDY)
    while not chunks:
        next(running)
    for _ in range(3):  # a few more steps of the running answer: no further chunk of the closed prompt
        next(running)
    after = engine.stream(HELLO, GREEDY)  # the batch of 2 (no queue) has a place again: EngineBusy otherwise
    running.close()
    assert "".join(after) == solo(engine, HELLO, GREEDY)
    assert chunks == [0] and engine.scheduler.stats()["prefilling"] == 0, "no chunk after the close"
    assert joining.request.tokens == [], "nothing of the closed answer was generated"
    joining.close()

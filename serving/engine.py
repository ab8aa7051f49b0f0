"""Generation engines: the model behind the chat page and ``/v1/chat/completions`` (no Django here).

An engine turns OpenAI-style ``messages`` plus ``GenerationParams`` into a stream of text pieces:

- ``LocalEngine`` loads a model version folder once (transformers), applies its chat template and
  hands the prompt to its ``Scheduler`` (``serving/batching.py``): one thread that decodes every
  running answer in one batch, step by step, admitting new requests and retiring finished ones at
  every step. ``capacity`` answers share the batch and ``max_queue`` more may wait; beyond that a
  request gets ``EngineBusy`` at once (the API answers 429), so a burst waits or is refused, never
  crashes.
- ``RemoteEngine`` sends the same request to an external OpenAI-compatible server (vLLM, TGI, …)
  and streams its server-sent events back, so a GPU fleet serves behind the same moderation.

``engine_for(path)`` keeps one engine per model folder (a small LRU): a new deployment names a new
folder and is loaded with no restart; ``engine_warm`` loads one in the background (the web process
does it at start and on deploy) and ``engine_states`` says which are ready (``/healthz``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EngineBusy", "EngineError", "GenerationParams", "LocalEngine", "RemoteEngine", "engine_for",
           "engine_states", "engine_warm"]

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The model could not answer (missing folder, remote server down, bad parameters)."""


class EngineBusy(EngineError):
    """The batch and its queue are full, or a queued request waited past the queue timeout."""


@dataclass
class GenerationParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise EngineError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise EngineError("temperature must not be negative")
        if not 0 < self.top_p <= 1:
            raise EngineError("top_p must be in (0, 1]")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = [s for s in self.stop if s][:4]


class StopScanner:
    """Cuts a stream at the first stop string, holding back only what could still start one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.keep = max((len(s) for s in stops), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Text safe to emit now; sets ``stopped`` once a stop string appeared."""
        if not self.stops:
            return piece
        self.buffer += piece
        hits = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            out, self.buffer = self.buffer[: min(hits)], ""
            return out
        cut = max(0, len(self.buffer) - self.keep)
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out


class LocalEngine:
    """In-process generation with transformers on one model folder, continuously batched.

    ``capacity`` is the batch size (answers generated together, one decoding step for all) and
    ``max_queue`` how many more may wait for a row; beyond both ``stream`` raises ``EngineBusy``.
    A waiting request that gets no row within ``queue_timeout`` seconds ends with ``EngineBusy``.
    """

    def __init__(self, folder: str | Path, *, capacity: int = 8, max_queue: int | None = None,
                 queue_timeout: float = 30.0, max_prompt_tokens: int = 1536) -> None:
        from serving.batching import Scheduler
        from training.sampling import load_policy, stop_token_ids

        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise EngineError(f"model folder {folder} has no config.json")
        self.folder = folder
        self.model, self.tokenizer = load_policy(folder)
        self.eos = stop_token_ids(self.model, self.tokenizer)
        self.max_prompt_tokens = max_prompt_tokens
        self.scheduler = Scheduler(self.model, self.tokenizer, self.eos, batch_size=capacity,
                                   max_queue=4 * capacity if max_queue is None else max_queue,
                                   queue_timeout=queue_timeout, name=f"engine-{folder.name}")

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """The templated prompt's token ids (what the model reads, and what usage counts)."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-self.max_prompt_tokens:]

    def stream(self, messages: list[dict], params: GenerationParams) -> Generation:
        """Take a place in the batch or its queue now (``EngineBusy`` when both are full); iterate for the pieces.

        Closing the returned iterator (or reaching its end) frees the place at once.
        """
        from serving.batching import Request

        request = Request(self.prompt_ids(messages), params)
        self.scheduler.submit(request)
        return Generation(self, request)

    def announce(self):
        """A request is on its way: see ``Scheduler.announce``; call the result once it was streamed or dropped."""
        return self.scheduler.announce()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0

    def count_prompt_tokens(self, messages: list[dict]) -> int:
        return len(self.prompt_ids(messages))

    def unload(self) -> None:
        """Accept no more requests; the scheduler thread ends when the running ones are done."""
        self.scheduler.stop()


class Generation:
    """One answer of a ``LocalEngine``, read piece by piece; its token counts are final once it ended."""

    stall_seconds = 300.0

    def __init__(self, engine: LocalEngine, request) -> None:
        self.engine, self.request = engine, request
        self.done = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.request.prompt)

    @property
    def completion_tokens(self) -> int:
        return len(self.request.tokens)

    @property
    def finish_reason(self) -> str | None:
        return self.request.finish_reason

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        if self.done:
            raise StopIteration
        try:
            kind, value = self.request.out.get(timeout=self.stall_seconds)
        except queue.Empty:
            self.close()
            raise EngineError(f"the engine produced nothing for {self.stall_seconds:g} s") from None
        if kind == "piece":
            return value
        self.close()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop generating (when still running) and free the place in the batch."""
        self.done = True
        self.engine.scheduler.cancel(self.request)

    def __del__(self) -> None:
        if not self.done:
            self.close()


class RemoteEngine:
    """An external OpenAI-compatible server (e.g. vLLM), streamed over HTTP with server-sent events."""

    def __init__(self, base_url: str, *, model: str, api_key: str = "", timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def stream(self, messages: list[dict], params: GenerationParams) -> RemoteGeneration:
        body = {"model": self.model, "messages": messages, "stream": True, "max_tokens": params.max_tokens,
                "temperature": params.temperature, "top_p": params.top_p, "stream_options": {"include_usage": True}}
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
        usage: dict = {}
        return RemoteGeneration(self._pieces(body, usage), usage)

    def _pieces(self, body: dict, usage: dict) -> Iterator[str]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with httpx.stream("POST", f"{self.base_url}/chat/completions", json=body, headers=headers,
                              timeout=self.timeout) as response:
                if response.status_code == 429:
                    raise EngineBusy("the remote engine is at capacity")
                if response.status_code != 200:
                    raise EngineError(f"the remote engine answered {response.status_code}: {response.read()[:300]!r}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                        usage.update(event.get("usage") or {})
                        choice = event["choices"][0] if event["choices"] else {}
                        delta = choice.get("delta", {}).get("content")
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                        raise EngineError(f"the remote engine sent a malformed event: {data[:200]}") from exc
                    if choice.get("finish_reason"):
                        usage["finish_reason"] = choice["finish_reason"]
                    if delta:
                        yield delta
        except httpx.HTTPError as exc:
            raise EngineError(f"the remote engine at {self.base_url} is unreachable: {exc}") from exc


class RemoteGeneration:
    """A remote answer's pieces; its token counts are the server's own (``None`` if it sent none)."""

    def __init__(self, pieces: Iterator[str], usage: dict) -> None:
        self.pieces, self.usage = pieces, usage

    def __iter__(self) -> RemoteGeneration:
        return self

    def __next__(self) -> str:
        return next(self.pieces)

    def close(self) -> None:
        self.pieces.close()

    @property
    def prompt_tokens(self) -> int:
        return int(self.usage.get("prompt_tokens") or 0)

    @property
    def completion_tokens(self) -> int | None:
        value = self.usage.get("completion_tokens")
        return int(value) if isinstance(value, int | float) else None

    @property
    def finish_reason(self) -> str | None:
        return self.usage.get("finish_reason")


class _Loading:
    """A model folder's engine while it loads: ``ready`` is set once ``engine`` or ``error`` is."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.engine: LocalEngine | None = None
        self.error: BaseException | None = None

    @property
    def state(self) -> str:
        return "loading" if not self.ready.is_set() else "failed" if self.error is not None else "ready"


_ENGINES: OrderedDict[str, _Loading] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


KEEP_LOADED = 2  # model folders a process keeps loaded


def engine_for(folder: str | Path, *, keep: int = KEEP_LOADED, **options) -> LocalEngine:
    """The process's engine for ``folder``: loaded on first use (or by ``engine_warm``), waited for while it
    loads; beyond ``keep`` folders the least recently used is unloaded once its answers are done."""
    key = str(Path(folder).resolve())
    with _ENGINES_LOCK:
        slot = _ENGINES.get(key)
        owner = slot is None or slot.error is not None  # a failed load is tried again
        if owner:
            slot = _ENGINES[key] = _Loading()
        _ENGINES.move_to_end(key)
        while len(_ENGINES) > keep:
            dropped = _ENGINES.popitem(last=False)[1]
            if dropped.engine is not None:
                dropped.engine.unload()
    if not owner:
        slot.ready.wait()
        if slot.error is not None:
            raise EngineError(f"the model in {key} could not be loaded: {slot.error}")
        return slot.engine
    try:
        slot.engine = LocalEngine(key, **options)
        return slot.engine
    except BaseException as exc:
        slot.error = exc
        raise
    finally:
        slot.ready.set()


def engine_warm(folder: str | Path, **options) -> None:
    """Load ``folder``'s engine in a background thread (at web-process start, on deploy), so the first
    user does not wait for it; ``engine_states`` tells when it is ready."""
    def load() -> None:
        try:
            engine_for(folder, **options)
        except Exception:
            log.exception("warm start of the model in %s failed", folder)

    threading.Thread(target=load, name="engine-warm", daemon=True).start()


def engine_states() -> dict[str, dict]:
    """Each loaded (or loading) model folder: ``state`` (loading / ready / failed) and its batch figures."""
    with _ENGINES_LOCK:
        slots = list(_ENGINES.items())
    states = {}
    for key, slot in slots:
        info = {"state": slot.state}
        if slot.engine is not None:
            info.update(slot.engine.scheduler.stats())
        if slot.error is not None:
            info["error"] = str(slot.error)[:300]
        states[key] = info
    return states

"""Generation engines: the model behind the chat page and ``/v1/chat/completions`` (no Django here).

An engine turns OpenAI-style ``messages`` plus ``GenerationParams`` into a stream of text pieces:

- ``LocalEngine`` loads a model version folder once (transformers), applies its chat template and
  streams with ``TextIteratorStreamer`` while ``generate`` runs in a thread of its own. At most
  ``capacity`` generations run at once; a request that cannot get a slot within ``queue_timeout``
  seconds gets ``EngineBusy`` (the API answers 429), so a burst waits or is refused, never crashes.
- ``RemoteEngine`` sends the same request to an external OpenAI-compatible server (vLLM, TGI, …)
  and streams its server-sent events back, so a GPU fleet serves behind the same moderation.

``engine_for(path)`` keeps one engine per model folder (a small LRU): a new deployment names a new
folder and is loaded on its first request, with no restart.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EngineBusy", "EngineError", "GenerationParams", "LocalEngine", "RemoteEngine", "engine_for"]


class EngineError(RuntimeError):
    """The model could not answer (missing folder, remote server down, bad parameters)."""


class EngineBusy(EngineError):
    """Every generation slot stayed taken for the whole queue timeout."""


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
    """In-process generation with transformers on one model folder."""

    def __init__(self, folder: str | Path, *, capacity: int = 2, queue_timeout: float = 30.0,
                 max_prompt_tokens: int = 1536) -> None:
        from training.sampling import load_policy, stop_token_ids

        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise EngineError(f"model folder {folder} has no config.json")
        self.folder = folder
        self.model, self.tokenizer = load_policy(folder)
        self.eos = stop_token_ids(self.model, self.tokenizer)
        self.max_prompt_tokens = max_prompt_tokens
        self.queue_timeout = queue_timeout
        self._slots = threading.BoundedSemaphore(capacity)

    def prompt_ids(self, messages: list[dict]):
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        return ids[:, -self.max_prompt_tokens:]

    def stream(self, messages: list[dict], params: GenerationParams) -> Generation:
        """Reserve a slot now (``EngineBusy`` when none frees up in time); iterate for the answer's pieces.

        Closing the returned iterator (or reaching its end) stops generation and frees the slot.
        """
        if not self._slots.acquire(timeout=self.queue_timeout):
            raise EngineBusy(f"all generation slots busy for {self.queue_timeout:g} s")
        try:
            return Generation(self, self.prompt_ids(messages), params)
        except BaseException:
            self._slots.release()
            raise

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


class Generation:
    """One running ``generate`` call of a ``LocalEngine``, read piece by piece."""

    def __init__(self, engine: LocalEngine, ids, params: GenerationParams) -> None:
        self.engine, self.ids, self.params = engine, ids, params
        self.cancelled = threading.Event()
        self.failure: list[BaseException] = []
        self.scanner = StopScanner(params.stop)
        self.thread: threading.Thread | None = None
        self.streamer = None
        self.released = False
        self.done = False

    def __iter__(self) -> Generation:
        return self

    def _start(self) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        engine, params, cancelled = self.engine, self.params, self.cancelled

        class Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        self.streamer = TextIteratorStreamer(engine.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                             timeout=300)
        sample = params.temperature > 0
        options = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": 0} \
            if sample else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}

        def run() -> None:
            try:
                with torch.no_grad():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    engine.model.generate(
                        input_ids=self.ids, attention_mask=torch.ones_like(self.ids),
                        max_new_tokens=params.max_tokens, pad_token_id=engine.tokenizer.pad_token_id,
                        eos_token_id=engine.eos, streamer=self.streamer,
                        stopping_criteria=StoppingCriteriaList([Cancel()]), **options,
                    )
            except BaseException as exc:  # surfaced to the reader in __next__
                self.failure.append(exc)
                self.streamer.end()

        self.thread = threading.Thread(target=run, name="generate", daemon=True)
        self.thread.start()

    def __next__(self) -> str:
        if self.done:
            raise StopIteration
        if self.thread is None:
            self._start()
        try:
            while True:
                try:
                    piece = next(self.streamer)
                except StopIteration:
                    if self.failure:
                        raise EngineError(f"generation failed: {self.failure[0]}") from self.failure[0]
                    tail = self.scanner.flush()
                    self.close()
                    if tail:
                        return tail
                    raise
                out = self.scanner.feed(piece)
                if self.scanner.stopped:
                    self.close()
                    if out:
                        return out
                    raise StopIteration
                if out:
                    return out
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.done = True
        self.cancelled.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=60)
        if not self.released:
            self.released = True
            self.engine._slots.release()

    def __del__(self) -> None:
        if not self.released:
            self.close()


class RemoteEngine:
    """An external OpenAI-compatible server (e.g. vLLM), streamed over HTTP with server-sent events."""

    def __init__(self, base_url: str, *, model: str, api_key: str = "", timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def stream(self, messages: list[dict], params: GenerationParams) -> Iterator[str]:
        import httpx

        body = {"model": self.model, "messages": messages, "stream": True, "max_tokens": params.max_tokens,
                "temperature": params.temperature, "top_p": params.top_p}
        if params.stop:
            body["stop"] = params.stop
        if params.seed is not None:
            body["seed"] = params.seed
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
                        delta = json.loads(data)["choices"][0].get("delta", {}).get("content")
                    except (ValueError, KeyError, IndexError) as exc:
                        raise EngineError(f"the remote engine sent a malformed event: {data[:200]}") from exc
                    if delta:
                        yield delta
        except httpx.HTTPError as exc:
            raise EngineError(f"the remote engine at {self.base_url} is unreachable: {exc}") from exc


_ENGINES: OrderedDict[str, LocalEngine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


def engine_for(folder: str | Path, *, keep: int = 2, **options) -> LocalEngine:
    """The process's engine for ``folder``, loaded on first use; the least recently used is dropped."""
    key = str(Path(folder).resolve())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = LocalEngine(key, **options)
            _ENGINES[key] = engine
            while len(_ENGINES) > keep:
                _ENGINES.popitem(last=False)
        _ENGINES.move_to_end(key)
        return engine

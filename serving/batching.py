"""Continuous batching over one causal LM: iteration-level scheduling, a KV-cache row per request.

One ``Scheduler`` thread per loaded model runs the decoding loop. At every step it

1. drops cancelled rows, and refuses requests that waited in the queue past ``queue_timeout``;
2. admits waiting requests into free rows (at most ``batch_size`` rows): their prompts are
   prefilled together, left padded, and their cache rows appended to the running batch. An idle
   engine first waits briefly for requests announced as on their way (``announce``: their input
   is being moderated), so users who arrive together share one prefill. A long prompt that joins
   running rows is prefilled ``PREFILL_CHUNK`` tokens per step instead, so they keep decoding;
3. runs one decoding step for every row at once: per-row attention mask and position ids let rows
   of different lengths share the forward pass;
4. picks each row's next token with that request's own temperature / top-p and its own
   ``torch.Generator`` (seeded from ``seed``), hands the request its new text, and retires the
   rows that are done (end of turn, ``max_tokens``, a stop string, cancelled, failed).

A row's answer does not depend on its neighbours: padding is masked out and nothing random is
shared, so a request gets the tokens it would get alone (greedy: the same text). A request whose
own step raises is failed alone; a failing forward pass fails the rows in it, never the thread.

Why not transformers' ``ContinuousBatchingManager``: its sampling mode (``do_sample``) is one per
manager, draws from the process-wide random state (no per-request seed), and its scheduler works
in paged-cache blocks tuned for GPUs. A few hundred lines over ``DynamicCache`` serve all of this
on a CPU with the model's own attention. No Django here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

import torch
from transformers import DynamicCache

from serving.engine import EngineBusy, EngineError, StopScanner

log = logging.getLogger(__name__)

PREFILL_TOKENS = 4096  # prompt tokens prefilled in one step at most, so running rows are not stalled long
PREFILL_CHUNK = 128  # a long prompt joining running rows is prefilled this many tokens per step, between their steps
GATHER_SECONDS = 0.1  # how long an idle engine waits for announced requests, to prefill them together


class Request:
    """One answer being generated: its prompt, its settings and the queue its reader takes text from.

    The queue carries ``("piece", text)``, then ``("end", finish_reason)`` or ``("error", exc)``.
    """

    def __init__(self, prompt: list[int], params) -> None:
        self.prompt = prompt
        self.params = params
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.tokens: list[int] = []
        self.decoded = ""
        self.scanner = StopScanner(params.stop)
        self.generator = torch.Generator()
        if params.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(params.seed)
        self.cancelled = False
        self.finished = False
        self.reserved = False
        self.finish_reason: str | None = None
        self.queued_at = time.monotonic()

    def choose(self, logits: torch.Tensor, greedy: int) -> int:
        """The next token from this row's last logits (``greedy`` is their argmax, computed for the batch)."""
        params = self.params
        if params.temperature == 0:
            return greedy
        scores = logits.float() / params.temperature
        if params.top_p < 1:  # the same cut as transformers' TopPLogitsWarper
            ordered, order = torch.sort(scores)
            cumulative = ordered.softmax(-1).cumsum(-1)
            drop = cumulative <= 1 - params.top_p
            drop[-1] = False
            scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        return int(torch.multinomial(scores.softmax(-1), 1, generator=self.generator))


class Filling:
    """A long prompt being prefilled a chunk per step: its own cache until its last chunk is in."""

    def __init__(self, request: Request) -> None:
        self.request, self.cache, self.done = request, None, 0


class Scheduler:
    """The decoding loop of one model; ``submit`` / ``cancel`` are safe from any thread."""

    def __init__(self, model, tokenizer, eos: list[int], *, batch_size: int, max_queue: int,
                 queue_timeout: float, name: str = "engine") -> None:
        if batch_size < 1 or max_queue < 0:
            raise EngineError("the batch size must be at least 1 and the queue bound not negative")
        self.model, self.tokenizer, self.eos = model, tokenizer, set(eos)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.batch_size, self.max_queue, self.queue_timeout = batch_size, max_queue, queue_timeout
        self.lock = threading.Condition()
        self.waiting: deque[Request] = deque()
        self.reserved = 0
        self.announced = 0  # requests on their way (their input is being moderated), see ``announce``
        self.stopping = False
        self.peak = 0  # the most rows decoded together so far
        self.rows: list[Request] = []  # the running batch; only the loop thread touches it and the cache
        self.filling: list[Filling] = []  # long prompts prefilled a chunk per step (loop thread only)
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, cache length], 0 where a row is left padding
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    # --- any thread

    def submit(self, request: Request) -> None:
        """Queue ``request`` for the next step; ``EngineBusy`` when the batch and the queue are full."""
        with self.lock:
            if self.stopping:
                raise EngineError("this engine was unloaded; retry to reach the current one")
            if self.reserved >= self.batch_size + self.max_queue:
                raise EngineBusy(f"the engine is at capacity ({self.batch_size} generating, "
                                 f"{self.max_queue} waiting)")
            self.reserved += 1
            request.reserved = True
            self.waiting.append(request)
            self.lock.notify_all()

    def announce(self) -> Callable[[], None]:
        """Say a request is on its way (its input being moderated); call what this returns once it was
        submitted or will not be. An idle engine with announced requests waits for them, at most
        ``GATHER_SECONDS``, so users who arrive together share one prefill instead of the first one's
        prefill and decoding step delaying all the others by a step."""
        with self.lock:
            self.announced += 1
        pending = [True]

        def withdraw() -> None:
            with self.lock:
                if pending[0]:
                    pending[0] = False
                    self.announced -= 1
                    self.lock.notify_all()

        return withdraw

    def cancel(self, request: Request) -> None:
        """Stop ``request``: its place is free for the next request at once, its row goes at the next step."""
        with self.lock:
            request.cancelled = True
            if request in self.waiting:
                self.waiting.remove(request)
            self._release(request)

    def stats(self) -> dict:
        with self.lock:
            return {"running": len(self.rows), "prefilling": len(self.filling), "waiting": len(self.waiting),
                    "peak": self.peak,
                    "batch_size": self.batch_size, "max_queue": self.max_queue}

    def stop(self) -> None:
        """Refuse new requests; the loop ends once the running and waiting ones are done."""
        with self.lock:
            self.stopping = True
            self.lock.notify_all()

    def _release(self, request: Request) -> None:  # under self.lock
        if request.reserved:
            request.reserved = False
            self.reserved -= 1

    # --- the loop thread

    def _loop(self) -> None:
        while True:
            with self.lock:
                while not self.waiting and not self.rows and not self.filling:
                    if self.stopping:
                        return
                    self.lock.wait()
                if not self.rows and not self.filling:
                    self._gather()
                joiners = self._admit()
            try:
                with torch.inference_mode():
                    self._step(joiners)
            except Exception as exc:  # the loop outlives a failing step: its rows fail, the next requests run
                log.exception("engine step failed")
                for request in [*self.rows, *joiners, *(f.request for f in self.filling)]:
                    self._end(request, error=EngineError(f"generation failed: {exc}"))
                self.rows, self.cache, self.mask, self.filling = [], None, None, []

    def _gather(self) -> None:  # under self.lock, with no running rows
        deadline = time.monotonic() + GATHER_SECONDS
        while self.announced and len(self.waiting) < self.batch_size and not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.lock.wait(left)

    def _admit(self) -> list[Request]:  # under self.lock
        now, joiners, budget = time.monotonic(), [], PREFILL_TOKENS
        free = self.batch_size - sum(not r.cancelled for r in self.rows) - len(self.filling)
        while self.waiting and now - self.waiting[0].queued_at > self.queue_timeout:  # oldest first
            self._end(self.waiting.popleft(), error=EngineBusy(f"no free generation slot within {self.queue_timeout:g} s"))
        running, taken = any(not r.cancelled for r in self.rows), 0
        while self.waiting and taken < free:
            request = self.waiting[0]
            if running and len(request.prompt) > PREFILL_CHUNK:  # prefilled between the running rows' steps
                self.filling.append(Filling(self.waiting.popleft()))
                taken += 1
                continue
            if joiners and len(request.prompt) > budget:
                break
            budget -= len(request.prompt)
            joiners.append(self.waiting.popleft())
            taken += 1
        return joiners

    def _step(self, joiners: list[Request]) -> None:
        self._retire([i for i, r in enumerate(self.rows) if r.cancelled or r.finished])
        if joiners:
            try:
                self._prefill(joiners)
            except Exception as exc:  # a prompt the model cannot take fails its own requests only
                log.exception("prefill failed")
                for request in joiners:
                    self._end(request, error=EngineError(f"generation failed: {exc}"))
        self.filling = [f for f in self.filling if not (f.request.cancelled or f.request.finished)]
        if self.filling:
            filling = self.filling[0]
            try:
                self._fill(filling)
            except Exception as exc:  # fails this prompt alone
                log.exception("prefill failed")
                self.filling.remove(filling)
                self._end(filling.request, error=EngineError(f"generation failed: {exc}"))
        if self.rows:
            self._decode()  # a failing forward pass fails the batch's rows (in _loop)

    def _prefill(self, joiners: list[Request]) -> None:
        width = max(len(r.prompt) for r in joiners)
        ids = torch.full((len(joiners), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(joiners), width), dtype=torch.long)
        for i, request in enumerate(joiners):
            ids[i, width - len(request.prompt):] = torch.tensor(request.prompt)
            mask[i, width - len(request.prompt):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        output = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                            logits_to_keep=1)
        self._merge(output.cache, mask, joiners)
        self._advance(output.logits[:, -1, :], first=len(self.rows) - len(joiners))

    def _fill(self, filling: Filling) -> None:
        """The next chunk of a long prompt; with its last chunk in, the request joins the running rows.

        A prompt prefilled whole would stall every running answer for as long as its prefill takes
        (a conversation's history: hundreds of tokens, seconds on a CPU); in chunks, the running
        rows take a step between them."""
        prompt = filling.request.prompt
        end = min(len(prompt), filling.done + PREFILL_CHUNK)
        output = self.model(input_ids=torch.tensor([prompt[filling.done:end]]),
                            attention_mask=torch.ones((1, end), dtype=torch.long),
                            position_ids=torch.arange(filling.done, end).unsqueeze(0),
                            cache=filling.cache, use_cache=True, logits_to_keep=1)
        filling.cache, filling.done = output.cache, end
        if end < len(prompt):
            return
        self.filling.remove(filling)
        self._merge(filling.cache, torch.ones((1, end), dtype=torch.long), [filling.request])
        self._advance(output.logits[:, -1, :], first=len(self.rows) - 1)

    def _decode(self) -> None:
        last = torch.tensor([[r.tokens[-1]] for r in self.rows])
        positions = torch.tensor([[len(r.prompt) + len(r.tokens) - 1] for r in self.rows])
        mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=torch.long)], dim=1)
        output = self.model(input_ids=last, attention_mask=mask, position_ids=positions,
                            cache=self.cache, use_cache=True, logits_to_keep=1)
        self.cache, self.mask = output.cache, mask
        self._advance(output.logits[:, -1, :], first=0)

    def _advance(self, logits: torch.Tensor, *, first: int) -> None:
        """Give rows ``first``… their next token; retire the ones that are done."""
        greedy = logits.argmax(-1).tolist()
        done = []
        for i in range(first, len(self.rows)):
            request = self.rows[i]
            try:
                if not request.cancelled:
                    self._accept(request, request.choose(logits[i - first], greedy[i - first]))
            except Exception as exc:  # this request alone fails; its neighbours carry on
                log.exception("a request failed mid-batch")
                self._end(request, error=EngineError(f"generation failed: {exc}"))
            if request.finished or request.cancelled:
                done.append(i)
        self._retire(done)

    def _accept(self, request: Request, token: int) -> None:
        if token in self.eos:
            self._end(request, reason="stop")
            return
        request.tokens.append(token)
        text = self.tokenizer.decode(request.tokens, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # a character whose bytes are not all generated yet waits
            piece = request.scanner.feed(text[len(request.decoded):])
            request.decoded = text
            if piece:
                request.out.put(("piece", piece))
            if request.scanner.stopped:
                self._end(request, reason="stop")
                return
        if len(request.tokens) >= request.params.max_tokens:
            self._end(request, reason="length")

    def _end(self, request: Request, *, reason: str = "stop", error: BaseException | None = None) -> None:
        if request.finished:
            return
        request.finished = True
        if error is not None:
            request.out.put(("error", error))
        else:
            text = self.tokenizer.decode(request.tokens, skip_special_tokens=True)
            tail = request.scanner.feed(text[len(request.decoded):]) + request.scanner.flush()
            if tail:
                request.out.put(("piece", tail))
            request.finish_reason = reason
            request.out.put(("end", reason))
        with self.lock:  # re-entrant: _admit calls this holding it
            self._release(request)

    # --- the batch's cache

    def _merge(self, cache: DynamicCache, mask: torch.Tensor, joiners: list[Request]) -> None:
        """Append the joiners' cache rows to the running batch, left padding the shorter side."""
        self.rows.extend(joiners)
        self.peak = max(self.peak, len(self.rows))
        if self.cache is None:
            self.cache, self.mask = cache, mask
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)])
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)])
        self.mask = torch.cat([_pad_left(self.mask, width), _pad_left(mask, width)])

    def _retire(self, indices: list[int]) -> None:
        if not indices:
            return
        gone = set(indices)
        keep = [i for i in range(len(self.rows)) if i not in gone]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, None
            return
        index = torch.tensor(keep)
        mask = self.mask[index]
        start = int((mask.sum(0) > 0).long().argmax())  # columns that are padding in every row go
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        self.mask = mask[:, start:]


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """``tensor`` widened to ``width`` along its sequence axis (-2 for cache tensors, -1 for masks) with zeros."""
    axis = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)

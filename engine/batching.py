"""Concurrent serving: a `Batcher` thread that owns a model and decodes many text streams in one batch
(continuous batching), each stream giving the same events as `engine.generate.stream` would alone.

Why not transformers' own continuous batching (5.23, generation/continuous_batching/, entry points
`init_continuous_batching` / `generate_batch`): it does run GPT2LMHeadModel on CPU with SDPA (tried: three
prompts, greedy, same ids as generate_ids; 64 tokens in 0.4 s) and it has streaming (`add_request(...,
streaming=True)`) and cancellation (`cancel_request`). It does not keep our per-request contract:
  - seeds: sampling is `torch.multinomial(probs, num_samples=1)` with no generator (model_runner.py:230) and
    the only seed is one `torch.manual_seed` on the process-wide RNG (distributed.py:197), so a request's
    draws depend on its batch-mates and the same seed does not give the same text;
  - greedy vs sampling is one switch for the whole manager (`self.do_sample`, continuous_api.py:349);
  - logits processors are built once per manager from one GenerationConfig (continuous_api.py:721); only
    temperature/top_k/top_p have per-request kwargs (cb_logits_processors.py, CLASSIC_TO_CB_PROCESSORS_MAP);
    RepetitionPenaltyLogitsProcessor is marked `supports_continuous_batching = False` and dropped
    (logits_process.py:356), and processors receive only the last token of each request
    (`input_ids[0, logits_indices]`, model_runner.py:209), so no n-gram ban either; caller-supplied
    per-request processors (the UI's constraints) have no place at all.
So this module is a small batcher of its own over one of two batch states with the same interface (add a
row from its prompt, set a row's next token, step all rows, keep some rows):
  - `engine.fastpath.LeanRows` (the default wherever engine/fastpath.py runs the model: GPT-2 on CPU): a
    preallocated KV cache whose slot r is row r at its own length; a step writes each row's key at its own
    position and masks keys past each row's end, so there is no padding; a leaving row's slot is filled by
    the last row (one row copied, not the batch); engine/compiled_step.py's compiled step once its package
    exists (a fixed (max_batch, n_positions) cache where that is small, else a growing one: 12x768's lone
    user 78 tok/s instead of the eager step's 28.6, 2026-11-30);
  - `engine.padded_rows.PaddedRows` (any other model/device): `transformers`' forward and DynamicCache, each
    row left-padded to the widest, a [rows, width] attention mask and explicit per-row position ids (GPT-2's
    positions are absolute, so padding must not shift them); a leaving row is cut out (index_select) and
    all-padding columns are trimmed.
Either way a new request is prefilled on its own (the computation `generate_ids` does; on the lean path its
large layers on the packed weights, or, with a compiled package, in one call of it, equal up to float
rounding; requests waiting together share that call, each prompt's tokens rows of its own slot:
`LeanRows.add_many`), and a finished, cancelled or failed row leaves at once. Logits processing and sampling run per row with
the request's own `logits_processors(cfg, ...)`, id history and seeded `torch.Generator`, as in
engine/generate.py.

Exactness: ids equal those of `stream` alone up to float rounding (products of one row and of several
accumulate in different orders: 1e-5..3e-4 in 128..3072-wide layers), so a greedy id can differ only where
the top two logits are that close, a seeded draw only that close to a boundary of its distribution (0 of
32 x 100 mixed requests on runs/tiny/model differed; tests/test_batching.py checks fixed prompts and seeds).

Throughput: README's serving-speed section and benchmarks/generate.py (1 vs 4 streams through this class).
A row's ids reach its reader in batches, at most DELIVER_S after the first undelivered one (see there).

Scheduling (fairness): each loop turn (1) drops cancelled rows, (2) prefills the waiting requests, oldest
first, up to max_batch rows in all, together, each producing its first token, then (3) runs one decode step
for all rows. A request that arrives while rows are decoding therefore waits for at most the step in
flight plus the prefills queued before it (and its own); with max_batch rows running it waits for a row to
end. A long prompt's prefill stalls the others' decoding for that long (no chunked prefill). A request is
cancelled by its stop_event or by closing (or dropping) its stream, and leaves before the next step.

Errors: a bad argument raises ValueError from `submit` in the caller's thread; an exception from one
request's logits processors reaches only that request's iterator; one in the batched forward reaches every
request in that batch (it cannot be attributed). `close()` ends the thread; requests still running then
raise RuntimeError.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence

import torch
from transformers import LogitsProcessor

# text_events (ids -> TextDelta/Finished with stop strings) and eot_id are stream()'s own text layer, reused
# as is rather than copied.
from engine.compiled_step import batch_shape, engine_for
from engine.fastpath import LeanRows, unsupported
from engine.generate import (
    GenerationConfig, History, StreamEvent, ban_ends, choose, eot_id, generate_ids, logits_processors, model_context,
    prompt_ids, seeded_generator, text_events, with_time_lock,
)
from engine.padded_rows import PaddedRows

MAX_BATCH_LIMIT = 256
# A row's picked ids are handed to its reader together, at most this long after the first of them (the first
# id of a request, the end and any error at once). Why: every hand-over wakes the reader's thread, and on 2
# cores the wake-ups of 4 readers every 0.5 ms step took the op's worker thread off its core mid-step (5-11
# involuntary switches of the batcher's thread a step). Demo model, 4 streams x 200 tokens, medians of 25
# rounds, alternated processes (/tmp/s14_deliver.py, 2026-12-01): 0 -> 2 ms, 6,222-8,233 -> 9,622-10,687
# tok/s (three pairs; one stream 4,913-6,634 -> 6,177-6,671); 2 -> 5 ms, 7,770-8,944 -> 9,694-9,964 (two
# pairs). A 12x768 step (15-20 ms) is longer, so there every id goes at once. The events are the same, and
# 5 ms is under a third of a browser's frame (16.7 ms).
DELIVER_S = 0.005


class _Request:
    """One request's state; the batcher thread writes it, the caller's thread reads `out` (and the counters
    once an event has come through `out`, which orders the writes before the reads)."""

    def __init__(self, ids: list[int], cfg: GenerationConfig, procs, eot: int, stop_event):
        self.ids, self.cfg, self.procs, self.eot, self.stop_event = ids, cfg, procs, eot, stop_event
        self.out: queue.SimpleQueue = queue.SimpleQueue()  # ("tok", [ids]) | ("end", reason) | ("err", exception)
        self.abandoned = threading.Event()  # the caller stopped iterating (closed, stop string, dropped)
        self.gen: torch.Generator | None = None
        self.hist: History | None = None  # prompt + generated ids: what penalties and processors read
        self.n_new = 0
        self.pending: list[int] = []  # picked ids not yet handed to the reader (see DELIVER_S)
        self.delivered_at = 0.0  # perf_counter of the last hand-over
        self.submitted_step = 0
        self.first_token_step: int | None = None
        self.finished_step: int | None = None
        self.submitted_at = time.perf_counter()
        self.first_token_s: float | None = None

    def cancelled(self) -> bool:
        return self.abandoned.is_set() or (self.stop_event is not None and self.stop_event.is_set())


def _ids(req: _Request) -> Generator[int, None, str]:
    """The caller-side id source `text_events` turns into text: what the batcher sends, ending with the reason."""
    try:
        while True:
            kind, value = req.out.get()
            if kind == "tok":
                yield from value
            elif kind == "end":
                return value
            else:
                raise value
    finally:
        req.abandoned.set()  # no-op once finished; otherwise the batcher drops the row at its next step


class BatchStream:
    """What `Batcher.submit` returns: an iterator of StreamEvents (TextDelta..., Finished) plus this request's
    scheduling counters, counted in batcher decode steps begun (read them after the events they concern)."""

    def __init__(self, events: Iterator[StreamEvent], req: _Request):
        self._events, self._req = events, req

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    def close(self) -> None:
        """Stop listening: the batcher drops the request at its next step."""
        self._req.abandoned.set()  # closing a never-started generator runs no finally, so say it here
        self._events.close()

    def __del__(self) -> None:
        self._req.abandoned.set()  # dropped unread: nobody listens, free the row

    @property
    def submitted_step(self) -> int:
        """Batcher decode steps begun when the request was queued."""
        return self._req.submitted_step

    @property
    def first_token_step(self) -> int | None:
        """Decode steps begun when its first token was picked (None before that): the prefill runs between
        steps, so first_token_step - submitted_step is 0 when it arrived during a step, 1 when just before."""
        return self._req.first_token_step

    @property
    def finished_step(self) -> int | None:
        """Decode steps begun when it ended: a request of n tokens decoding alongside others ends at
        first_token_step + n - 1."""
        return self._req.finished_step

    @property
    def first_token_s(self) -> float | None:
        """Seconds from submit to the first token being picked."""
        return self._req.first_token_s


class Batcher:
    """One background thread owning `model`; `submit` is safe to call from any number of threads."""

    def __init__(self, model, tok, max_batch: int = 8, fast: bool = True):
        """fast: decode through engine/fastpath.py's lean step where it supports the model (GPT-2 on CPU),
        else through the model's own forward."""
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= MAX_BATCH_LIMIT:
            raise ValueError(f"max_batch={max_batch!r}: must be an integer in [1, {MAX_BATCH_LIMIT}]")
        if model.training:
            raise ValueError("model is in training mode (dropout on): call model.eval() before serving")
        self.model, self.tok, self.max_batch = model, tok, max_batch
        self.context = model_context(model)
        self.eot = eot_id(tok)
        self.steps = 0  # decode steps begun (the one running counts)
        self._cond = threading.Condition()
        self._inbox: list[_Request] = []
        self._closed = False
        self._pending: deque[_Request] = deque()
        self._rows: list[_Request] = []
        if fast and unsupported(model) is None:  # the compiled step (once its package exists) where it fits
            shape = batch_shape(model, max_batch)
            engine = engine_for(model, shape, pack=True, batch_slots=None if shape else max_batch)
            self._state = LeanRows(model, engine=engine)
        else:
            self._state = PaddedRows(model)
        self.fast = isinstance(self._state, LeanRows)
        self._thread = threading.Thread(target=self._run, name="anno-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------ caller side

    def submit(
        self, prompt: str, cfg: GenerationConfig, stop_event=None,
        processors: Sequence[LogitsProcessor] = (), skip_special_tokens: bool = False,
    ) -> BatchStream:
        """Queue a request; iterate the result for its events. Same arguments and events as
        `engine.generate.stream`; bad arguments raise ValueError here, in the caller's thread."""
        if not isinstance(cfg, GenerationConfig):
            raise TypeError(f"cfg must be an engine.generate.GenerationConfig, got {type(cfg).__name__}")
        cfg.validate(self.context)
        ids, dropped = prompt_ids(self.tok, prompt, cfg, self.context)
        processors = with_time_lock(self.tok, cfg, processors, len(ids))
        # stream()'s own checks (context fit, id range, eval mode); the unstarted generator is thrown away
        generate_ids(self.model, ids, cfg, stop_event, processors, eos_id=self.eot, fast=False).close()
        req = _Request(ids, cfg, logits_processors(cfg, processors), self.eot, stop_event)
        with self._cond:  # read the step counter and queue atomically w.r.t. the thread's step/drain
            if self._closed:
                raise RuntimeError("Batcher is closed")
            req.submitted_step = self.steps
            self._inbox.append(req)
            self._cond.notify()
        events = text_events(self.tok, _ids(req), cfg.stop, skip_special_tokens, len(ids), dropped)
        return BatchStream(events, req)

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread (after the step in flight); requests still running raise RuntimeError."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> int:
        """Rows in the batch now."""
        return len(self._rows)

    # ------------------------------------------------------------------------------------ thread side

    def _run(self) -> None:
        why = "Batcher was closed while this request ran"
        try:
            with torch.inference_mode():  # thread state of this thread only
                while True:
                    with self._cond:
                        while not (self._inbox or self._pending or self._rows or self._closed):
                            self._cond.wait()
                        if self._closed:
                            return
                        self._pending.extend(self._inbox)
                        self._inbox.clear()
                    self._drop_cancelled()
                    group = []
                    while self._pending and len(self._rows) + len(group) < self.max_batch:
                        group.append(self._pending.popleft())
                    if group:
                        self._prefill(group)
                    if self._rows:
                        with self._cond:
                            self.steps += 1
                        self._decode_step()
        except BaseException as e:  # a bug here: say so to everyone waiting rather than hang them
            why = f"Batcher thread failed: {e!r}"
            raise
        finally:
            with self._cond:
                self._closed = True
                left = self._rows + list(self._pending) + self._inbox
                self._inbox.clear()
            for req in left:
                self._end(req, "err", RuntimeError(why))
            self._pending.clear()
            self._reset()

    def _end(self, req: _Request, kind: str, value) -> None:
        if req.pending:  # ids picked before the end (or an error) reach the reader first, as from stream()
            req.out.put(("tok", req.pending))
            req.pending = []
        req.finished_step = self.steps
        req.out.put((kind, value))

    def _pick(self, req: _Request, logits: torch.Tensor, i: int = 0, flat=None) -> int:
        """engine.generate._decode's choice for row i of logits: processors over the request's own history,
        then argmax or a draw from its own generator. flat: logits as a numpy array (CPU fp32), whose row's
        argmax a greedy row without processors takes with no torch op. Before min_new_tokens new tokens the end
        of text is banned in the row (in place: the step's own output)."""
        ban = req.n_new < req.cfg.min_new_tokens
        if flat is not None and req.gen is None and not req.procs:
            if ban:
                flat[i, req.eot] = float("-inf")
            return int(flat[i].argmax())
        row = logits[i:i + 1]
        if row.dtype != torch.float32:
            row = row.float()
        if ban:
            row = ban_ends(row, [req.eot])
        return choose(req.procs(req.hist.ids(), row) if req.procs else row, req.gen)

    def _accept(self, req: _Request, token: int) -> bool:
        """Record a picked token; False when the request is over (end of text or length)."""
        if token == req.eot:
            self._end(req, "end", "eot")
            return False
        req.hist.append(token)
        req.n_new += 1
        req.pending.append(token)
        if req.n_new == req.cfg.max_new_tokens:
            self._end(req, "end", "length")
            return False
        now = time.perf_counter()
        if req.n_new == 1 or now - req.delivered_at >= DELIVER_S:
            req.out.put(("tok", req.pending))
            req.pending, req.delivered_at = [], now
        return True

    def _drop_cancelled(self) -> None:
        for req in [r for r in self._pending if r.cancelled()]:
            self._pending.remove(req)
            self._end(req, "end", "cancelled")
        keep = []
        for i, req in enumerate(self._rows):
            if req.cancelled():
                self._end(req, "end", "cancelled")
            else:
                keep.append(i)
        self._keep(keep)

    def _prefill(self, reqs: list[_Request]) -> None:
        """Prefill the waiting requests `reqs` as new rows, together where the state can (LeanRows.add_many:
        one call of a compiled package), each producing its first token. A failure of the joint prefill goes
        to every request in it; one request's own failure (its processors) to that request only."""
        device, live = self.model.device, []
        for req in reqs:
            if req.cancelled():  # _decode checks the event before the first token too
                self._end(req, "end", "cancelled")
                continue
            try:
                req.gen = seeded_generator(req.cfg, device)
                req.hist = History(req.ids, req.cfg.max_new_tokens, device)
            except Exception as e:  # noqa: BLE001 -- this request's failure goes to this request only
                self._end(req, "err", e)
                continue
            live.append(req)
        if not live:
            return
        base = len(self._rows)
        try:
            logits = self._state.add_many([r.ids for r in live], [r.cfg.max_new_tokens for r in live])
        except Exception as e:  # noqa: BLE001 -- a joint prefill's failure cannot be pinned on one request
            if self._state.rows > base and base:  # rows a one-by-one prefill added before it failed
                self._state.keep(list(range(base)))
            elif self._state.rows > base:
                self._state.reset()
            for req in live:
                self._end(req, "err", e)
            return
        self._rows.extend(live)
        drop = set()
        for i, (req, lg) in enumerate(zip(live, logits)):
            try:
                token = self._pick(req, lg)
            except Exception as e:  # noqa: BLE001 -- this request's failure goes to this request only
                self._end(req, "err", e)
                drop.add(base + i)
                continue
            req.first_token_step = self.steps
            req.first_token_s = time.perf_counter() - req.submitted_at
            if self._accept(req, token):
                self._state.set_next(base + i, token)
            else:
                drop.add(base + i)
        if drop:
            self._keep([i for i in range(len(self._rows)) if i not in drop])

    def _decode_step(self) -> None:
        rows = self._rows
        try:
            logits = self._state.step()
        except Exception as e:  # noqa: BLE001 -- a batched forward's failure cannot be pinned on one row
            for req in rows:
                self._end(req, "err", e)
            self._reset()
            return
        keep = []
        flat = logits.numpy() if logits.device.type == "cpu" and logits.dtype == torch.float32 else None
        for i, req in enumerate(rows):
            try:
                token = self._pick(req, logits, i, flat)
            except Exception as e:  # noqa: BLE001 -- e.g. a caller's processor raising: that caller's error
                self._end(req, "err", e)
                continue
            if self._accept(req, token):
                self._state.set_next(i, token)
                keep.append(i)
        self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        """Cut the batch down to rows `keep` (the state may reorder the rows it keeps)."""
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset()
            return
        self._rows = [self._rows[i] for i in self._state.keep(keep)]

    def _reset(self) -> None:
        self._rows = []
        self._state.reset()

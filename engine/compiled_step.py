"""The compiled CPU decode step for GPT-2: engine/fastpath.py's one-token step (rows with their own lengths
in a preallocated KV cache) ahead-of-time compiled by torch.export + AOTInductor into one C++ function per
cache shape, so a step is one call instead of ~100 torch ops; the same function prefills short prompts.

Why: the demo model's lean step (4x128, vocab 8000) is dispatch-bound, a few to tens of microseconds of
overhead per op for little arithmetic. Compiled, each layer is 4 matrix products plus 3 fused C++ kernels (the
cache write, masked softmax attention and both matmuls of a head are one kernel; with engine/blas.py's op,
its own attention), called from C++. The matrix
products are engine/blas.py's op where its library builds (`openblas()`; packages are keyed on it; its
own kernels, OpenBLAS for many rows; called through its C shim; on torch's threads), else MKL's at::addmm: 40.1 -> 57.8 tok/s on 12x768 at two threads, 37.2 -> 43.0 at one, the
demo model 1,020 -> 1,537 at two (benchmarks/generate.py's `aten_mm` variant, one process per variant,
2026-11-30; same greedy ids). Against the lean step, in one process with every variant (which slowed
CTranslate2, so its figures there are not used): demo model 0.44 vs 1.37 ms a token at one thread (torch.compile
with cpp_wrapper 0.82), 12x768 31.4 vs 17.2 tok/s at two (/tmp/c16/bench.py, slm.py; README has the
benchmark's history).
Why AOTInductor rather than torch.compile: no dynamo guard check, AOT wrapper or pytree per call (0.45 vs
0.60 ms for the bare call), no recompile limit (8 per code object) or process-wide stance, and one explicit
runner per shape. Greedy ids equal `model.generate`'s on three fixed prompts x 128 tokens, batch 4 ids equal
LeanGPT2's (and tests/test_fastpath.py checks a tiny model); logits are not bit-equal (different kernels),
so an id can differ only where the top two logits tie to ~1e-5.

What a runner is specialised to: cache slots, cache width and torch's thread count (inductor writes the
OpenMP thread count into the C++ kernels); the number of rows (1..slots) is a dynamic dimension of one
package (demo model, one-row step of a slots-8, width-256 package 0.61 ms vs 2.35 lean; 3 rows 1.54 vs 2.99;
8 rows 2.76 vs 3.52, loaded machine, /tmp/c16/dyn.py). Batch-1 widths are rounded up to a power of two
(>= 64, <= n_positions), so one generation needs one shape; the batcher uses one fixed (max_batch,
n_positions) cache when that is at most BATCH_CACHE_BYTES, so serving needs one more (`serving_shapes`); else
its cache grows: several rows on (max_batch, width) packages, a lone row on the batch-1 ones. Compiling a
shape takes 15-55 s here (inductor's own cache does not shorten it:
the wrapper is rebuilt); the package is then kept in `package_dir()` and later processes load it in
~0.02 s. Nothing compiles inside a request: `engine_for` gives engines that run the eager lean step until a
shape's package exists, and `precompile` (`cli.py compile-step`, which app.py starts as a background
process) builds the packages. Models above MAX_WEIGHTS are not compiled (unmeasured; compile time grows
with the model). The weights are not copied: the package holds no constants and is given the model's own
parameters (user-managed), so in-place weight updates are seen. The same package prefills a prompt of up
to PREFILL_ROWS tokens in one call (each prompt token is a row of its slot: engine/step_package.py's
`_Step`); longer prompts, and any before a package exists, take LeanGPT2's eager prefill, which writes the
same cache. Demo model, 23 tokens: 1.4-1.6 ms against 2.8 eager; time to the first token of `stream` 3.8-4.4 ms against 6.9 (with
`engine_for`'s cheaper recheck, below); 12x768, 20 tokens: 70-75 ms against 95-100 (2026-11-30,
/tmp/s9_pf.py, s9_ttft.py, s9_slm.py).

Int8 models (engine/int8.py's weight-only layers, "int8-cpu") compile the same way, their products on the op's
int8 twin anno::anno_linear_q8, and only where the op builds (at::addmm has no int8 weights): 12x768 at two
threads ~145 tok/s against ~58 in fp32, the demo model's greedy ids equal to the lean step's and
`model.generate`'s (2026-11-30, /tmp/s8/int8slm.py and int8c.py; benchmarks/generate.py's int8 row).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

import torch

from engine import blas
from engine.int8 import Int8Linear
from engine.fastpath import KVCache, LeanGPT2
from engine.fastpath import unsupported as lean_unsupported
# The package itself (what is compiled, its key, build and load): engine/step_package.py. Its names are
# compiled_step's too, as callers and tests use them.
from engine.step_package import (  # noqa: F401
    MIN_WIDTH, _int8_layers, compile_runner, cxx_compiler, max_rows,
    openblas, package_dir, package_path, width_for,
)

# Measured up to the 12x768 shape (92M: 1.26x lean at one thread, 1.8x at two); larger models keep LeanGPT2.
MAX_WEIGHTS = 128_000_000
# The batcher's fixed cache (every slot at the full context) above this is not used: its cache grows with the
# rows and lengths it has instead (12x768 at ctx 1024 would hold 604 MB for 8 rows; the demo model 8 MB), its
# steps of several rows run (max_batch, width) packages, a lone row the batch-1 ones (`CompiledGPT2.settle`).
BATCH_CACHE_BYTES = 64 << 20
_RECHECK_S = 1.0  # how often an engine looks for a package that another process may have built
# Prompts of up to this many tokens are prefilled by the compiled package, longer ones by LeanGPT2's eager
# forward: the package's attention was then a per-row loop over the whole cache width on one thread, where eager
# SDPA is a causal flash kernel on torch's threads. 12x768 at two threads (2026-11-30, /tmp/s9_slm.py and
# s9_long.py): 20 tokens 70-75 ms compiled vs 95-100 eager, 48 tokens 87 vs 129, 160 tokens 366 vs 343
# (before the op's attention, step_package's `_Step.attend`). With it (2026-12-01, one noisy run,
# /tmp/s11/pf.py), compiled vs eager: 100 tokens 236 vs 234 ms, 160 tokens 308 vs 386, 250 tokens 543 vs
# 510: no clear win, so the limit stays.
PREFILL_ROWS = 64


def unsupported(model) -> str | None:
    """None when `CompiledGPT2(model)` can decode this model, else the reason (the caller then uses LeanGPT2
    or the model's own forward). Layers may be fp32 Conv1D or engine/int8.py's Int8Linear (int8 layers compile
    only with engine/blas.py's op: see CompiledGPT2)."""
    if reason := lean_unsupported(model):
        return reason
    n = sum(p.numel() for p in model.parameters()) + sum(m.weight.numel() for m in _int8_layers(model))
    if n > MAX_WEIGHTS:
        return f"{n:,} parameters: only models up to {MAX_WEIGHTS:,} are compiled (larger ones are unmeasured)"
    if cxx_compiler() is None:
        return "no C++ compiler (g++ or $CXX) for AOTInductor"
    if not hasattr(torch._inductor, "aoti_compile_and_package"):
        return f"torch {torch.__version__} has no AOTInductor packaging"
    from transformers.pytorch_utils import Conv1D

    for b in model.transformer.h:
        for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj):
            if not (type(m) is Conv1D and m.weight.dtype == torch.float32 or type(m) is Int8Linear):
                return f"{type(m).__name__} layers (only fp32 Conv1D and int8 Int8Linear layers compile)"
    head = model.lm_head
    if type(head) is Int8Linear and head.bias is None:
        return None
    if type(head) is not torch.nn.Linear or head.bias is not None or head.weight.dtype != torch.float32:
        return "lm_head is not a bias-free fp32 nn.Linear or Int8Linear"
    return None


class CompiledGPT2:
    """LeanGPT2's interface (new_cache, prefill, step) with the decode step compiled; see the module
    docstring. wait=True: a step of a shape not compiled yet compiles it (17-34 s) in the call; wait=False:
    it loads the shape's package when `package_dir()` has one, else runs LeanGPT2's eager step on the same
    cache (a server must not stall on a compile). fixed=(slots, width): every cache has that shape (the
    batcher's: rows come and go without a new shape or a cache copy). batch_slots (the batcher's, when it
    has no fixed shape): a cache of several rows has that many slots, so rows 2..batch_slots share the
    (batch_slots, width) packages `serving_shapes` lists."""

    def __init__(self, model, wait: bool = True, pack: bool = False, fixed: tuple[int, int] | None = None,
                 batch_slots: int | None = None):
        if reason := unsupported(model):
            raise ValueError(f"CompiledGPT2 cannot run this model: {reason}")
        self.model, self.wait, self.fixed, self.batch_slots = model, wait, fixed, batch_slots
        self.int8 = bool(_int8_layers(model))  # compiles only with engine/blas.py's op
        self.lean = LeanGPT2(model, pack=pack)
        self.context = model.config.n_positions
        self.runners: dict[tuple[int, int, int], object] = {}
        self._looked: dict[tuple[int, int, int], float] = {}
        self._lock = threading.Lock()
        self._every: dict[int, torch.Tensor] = {}  # rows -> arange(rows), a step's slot indices

    def new_cache(self, slots: int = 1, width: int = 64) -> KVCache:
        if self.fixed is not None:
            return self.lean.new_cache(*self.fixed)
        return self.lean.new_cache(slots, width_for(width, self.context))

    def reserve(self, cache: KVCache, slots: int, width: int) -> None:
        """Room for `slots` rows of `width` positions, the shape rounded as packages are keyed: the width up to
        `width_for`'s, several slots up to batch_slots (else doubling). A fixed engine's cache already has its
        one shape."""
        if self.batch_slots and 1 < slots <= self.batch_slots:
            slots = self.batch_slots
        cache.reserve(slots, width_for(width, self.context) if width > cache.width else cache.width)

    def settle(self, cache: KVCache) -> None:
        """After rows left: a cache of several slots left with one row goes back to one slot, so that row
        decodes on the batch-1 package `precompile` builds (the batcher of a model with no fixed shape: 12x768
        alone in the batcher 28.6 tok/s on the lean step vs 72.7 for `stream`, 2026-11-30, benchmarks/
        generate.py). The copy is the row's keys and values (12x768 at width 256: 19 MB, ~2 ms)."""
        if self.fixed is None and len(cache.lengths) == 1 < cache.slots:
            cache.shrink(1)

    def prefill(self, ids: list[int], cache: KVCache, slot: int) -> torch.Tensor:
        """Run the prompt `ids` into slot `slot` (a new row when slot == len(cache.lengths)) in one call of
        the compiled package (see engine/step_package.py's `_Step`), or LeanGPT2's eager prefill while there
        is none; returns the next-token logits [1, vocab]. Why compiled: the eager prefill runs ~100 torch ops
        on MKL with torch's OpenMP pool, whose threads then spin against the op's workers in the steps that follow. Prompts over
        PREFILL_ROWS tokens take the eager path."""
        n, new_row = len(ids), slot == len(cache.lengths)
        if n > cache.width or slot >= cache.slots:
            cache.reserve(max(cache.slots, slot + 1), width_for(n, self.context) if n > cache.width else cache.width)
        runner = self._ready((cache.slots, cache.width, torch.get_num_threads())) if n <= PREFILL_ROWS else None
        if runner is None:
            return self.lean.prefill(ids, cache, slot)
        run = [torch.tensor(ids, dtype=torch.long), torch.arange(n), torch.full((n,), slot, dtype=torch.long),
               torch.tensor([n - 1])]
        logits = runner.run([*run, *cache.k, *cache.v])[0]
        if new_row:
            cache.lengths.append(n)
        else:
            cache.lengths[slot] = n
        return logits

    def prefill_many(self, prompts: list[list[int]], cache: KVCache) -> list[torch.Tensor]:
        """Prefill several prompts as new last rows in order, in one call of the package when their tokens
        fit PREFILL_ROWS (each prompt's tokens are rows of its own slot, so every prompt attends only to
        itself), else one `prefill` each; returns each prompt's next-token logits [1, vocab]. Why: the
        batcher's waiting requests then stream the weights once instead of once each (12x768, four
        6-23-token prompts: 124-147 ms one by one, /tmp/s10/bprof.py)."""
        first, n = len(cache.lengths), [len(ids) for ids in prompts]
        width = width_for(max(n), self.context) if max(n) > cache.width else cache.width
        cache.reserve(max(cache.slots, first + len(prompts)), width)
        key = (cache.slots, cache.width, torch.get_num_threads())
        fits = len(prompts) > 1 and sum(n) <= min(PREFILL_ROWS, max_rows(cache.slots, cache.width))
        runner = self._ready(key) if fits else None
        if runner is None:
            return [self.prefill(ids, cache, first + i) for i, ids in enumerate(prompts)]
        ends = torch.tensor(n).cumsum(0)
        run = [torch.tensor([t for ids in prompts for t in ids], dtype=torch.long),
               torch.cat([torch.arange(k) for k in n]),
               torch.cat([torch.full((k,), first + i, dtype=torch.long) for i, k in enumerate(n)]), ends - 1]
        logits = runner.run([*run, *cache.k, *cache.v])[0]
        cache.lengths.extend(n)
        return [logits[i:i + 1] for i in range(len(prompts))]

    def runner(self, slots: int, width: int, use_openblas: bool | None = None):
        """The compiled runner for caches of this shape (compiling it now when no package exists)."""
        key = (slots, width, torch.get_num_threads())
        with self._lock:
            if key not in self.runners:
                self.runners[key] = compile_runner(self.model, slots, width, use_openblas)
            return self.runners[key]

    def _ready(self, key: tuple[int, int, int]):
        """The runner for key, or None while no package exists (looked for at most once a second)."""
        runner = self.runners.get(key)
        if runner is not None or self.wait:
            return runner or self.runner(*key[:2])
        now = time.monotonic()
        if now - self._looked.get(key, -_RECHECK_S) < _RECHECK_S:
            return None
        self._looked[key] = now
        use = openblas()  # decided once here: the library may appear (a compile-step process) at any time
        if self.int8 and not use:
            return None
        return self.runner(*key[:2], use) if package_path(self.model, *key[:2], use).is_file() else None

    def step(self, tokens: Sequence[int], cache: KVCache) -> torch.Tensor:
        """One decode step for every row: tokens, the last id of each row. Returns logits [rows, vocab]."""
        rows = len(cache.lengths)
        if len(tokens) != rows:
            raise ValueError(f"tokens has {len(tokens)} ids for a cache of {rows} rows: one id a row")
        need = max(cache.lengths) + 1
        if need > cache.width or rows > cache.slots:
            cache.reserve(rows, width_for(need, self.context) if need > cache.width else cache.width)
        runner = self._ready((cache.slots, cache.width, torch.get_num_threads()))
        if runner is None:
            return self.lean.step(tokens, cache)
        # Inputs made once and written through numpy: after a step has streamed the weights, every torch op
        # here cost 10-20 us (its code no longer in cache), a numpy store ~1 (demo model, 2 threads: 0.05 ms of
        # Python around a 0.21 ms call, /tmp/s12/loop2.py, 2026-12-01).
        every = self._every.get(rows)
        if every is None:
            every = self._every.setdefault(rows, torch.arange(rows))
        if rows == 1:
            if cache.step_inputs is None:
                tok, pos = torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)
                cache.step_inputs = (tok, pos, tok.numpy(), pos.numpy())
            tok, pos, tok_np, pos_np = cache.step_inputs
            tok_np[0], pos_np[0] = tokens[0], cache.lengths[0]
        else:
            tok, pos = torch.tensor(tokens, dtype=torch.long), torch.tensor(cache.lengths)
        logits = runner.run([tok, pos, every, every, *cache.k, *cache.v])[0]
        cache.lengths = [n + 1 for n in cache.lengths]
        return logits


class _Engines(dict):
    """A model's compiled engines, kept on the model (so they live and die with it) but never copied or
    pickled with it: a deepcopy or a pickle of the model starts without engines."""

    def __deepcopy__(self, memo):
        return _Engines()

    def __reduce__(self):
        return (_Engines, ())


def engine_for(model, fixed: tuple[int, int] | None = None, pack: bool = False, batch_slots: int | None = None):
    """The compiled engine (wait=False) for a model `unsupported` accepts, one per (model, fixed, pack,
    batch_slots) so loaded runners are reused across requests; None otherwise (the caller keeps LeanGPT2).
    A model that has an engine is only rechecked for what can change in place (dtype, device): the full check
    walks every parameter and looks for the compiler, 2 ms a request on the demo model (cProfile,
    2026-11-30), a third of its time to the first token."""
    mine = model.__dict__.setdefault("_anno_compiled_engines", _Engines())
    key = (fixed, pack, batch_slots)
    if key in mine:
        return mine[key] if lean_unsupported(model) is None else None
    if unsupported(model) is not None:
        return None
    mine[key] = CompiledGPT2(model, wait=False, pack=pack, fixed=fixed, batch_slots=batch_slots)
    return mine[key]


def batch_shape(model, max_batch: int) -> tuple[int, int] | None:
    """The batcher's fixed cache shape, max_batch slots of the model's whole context, or None when that
    cache would exceed BATCH_CACHE_BYTES (the batcher's cache then grows: one slot for one row, max_batch
    slots for more, at the rounded widths; `serving_shapes`)."""
    cfg = model.config
    if 2 * cfg.n_layer * max_batch * cfg.n_positions * cfg.n_embd * 4 > BATCH_CACHE_BYTES:
        return None
    return (max_batch, cfg.n_positions)


def serving_shapes(model, max_batch: int) -> list[tuple[int, int]]:
    """(slots, width) of every package a server of this model uses: batch-1 generation at each rounded
    width, and the batcher's fixed shape, or where it has none, (max_batch, width) at each of those widths
    (12x768: 10 packages, ~5-6 min of compiling here, once)."""
    ctx, widths, w = model.config.n_positions, [], MIN_WIDTH
    while True:
        widths.append(width_for(w, ctx))
        if widths[-1] >= ctx:
            break
        w *= 2
    batch = batch_shape(model, max_batch)
    several = [batch] if batch else [(max_batch, w) for w in widths] if max_batch > 1 else []
    return list(dict.fromkeys([(1, w) for w in widths] + several))


def precompile(model, max_batch: int, progress=print) -> list[dict]:
    """Build the missing packages of `serving_shapes` at torch's current thread count (a long job:
    17-34 s a shape here), after engine/blas.py's op (when it builds); returns one {"slots",
    "width", "threads", "openblas", "seconds", "built"} per shape."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 1024:
        raise ValueError(f"max_batch={max_batch!r}: must be an integer in [1, 1024]")
    if reason := unsupported(model):
        raise ValueError(f"nothing to compile: {reason}")
    out, t0 = [], time.time()
    use = openblas(build=True)
    if not use and _int8_layers(model):
        raise ValueError(f"nothing to compile: int8 layers need engine/blas.py's op "
                         f"({blas.unavailable(package_dir())})")
    progress(json.dumps({"openblas": use, "seconds": round(time.time() - t0, 1)} if use else
                        {"openblas": False, "why": blas.unavailable(package_dir())}))
    for slots, width in serving_shapes(model, max_batch):
        t0, built = time.time(), not package_path(model, slots, width, use).is_file()
        compile_runner(model, slots, width, use)
        out.append({"slots": slots, "width": width, "threads": torch.get_num_threads(), "openblas": use,
                    "seconds": round(time.time() - t0, 1), "built": built})
        progress(json.dumps(out[-1]))
    return out

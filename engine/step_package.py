"""The compiled decode step's package: what is compiled (`_Step`, one forward pass over rows that are each a
token at a position of a KV-cache slot), how a package is keyed (torch, architecture, the step's source, the
compiler, cache shape, threads, whether engine/blas.py's op is used), where it is kept, and how it is built and
loaded (`compile_runner`). engine/compiled_step.py's engine (`CompiledGPT2`) runs these packages; its docstring
says why and what was measured.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from engine import blas
from engine.int8 import Int8Linear

MIN_WIDTH = 64

# Every package runs the op's products on torch's threads. Small models' one-slot packages ran them on one
# thread until the op's pool let its caller take the parts no worker had started (engine/blas.cpp's Pool):
# before, a woken worker that shared the caller's core could hold a step up for a time slice. Since, demo
# model (7.4 MB), `stream`, 64 tokens after a 0.3 s pause, 4 alternated pairs of processes (2026-12-01,
# /tmp/s12/thr.py): 22.6-28.5 ms on two threads against 31.5-34.6 on one; with a 150-token prompt (eager
# prefill, torch's OpenMP threads) 34.1-38.9 against 39.5-41.8.


def cxx_compiler() -> str | None:
    """The C++ compiler inductor would call (its config, else $CXX, else g++), or None when absent."""
    try:
        from torch._inductor import config

        cxx = [c for c in config.cpp.cxx if c]
    except (ImportError, AttributeError):
        cxx = []
    for name in cxx + [os.environ.get("CXX") or "g++"]:
        if shutil.which(name):
            return shutil.which(name)
    return None


def _int8_layers(model) -> list:
    return [m for m in model.modules() if type(m) is Int8Linear]


def max_rows(slots: int, width: int) -> int:
    """The most rows one call of a (slots, width) package takes: a whole cache width of prompt, or a step of
    every slot."""
    return max(slots, width)


def width_for(n: int, context: int) -> int:
    """The cache width compiled for n positions: the next power of two >= max(n, MIN_WIDTH), capped at the
    context (so a model sees few distinct shapes)."""
    w = MIN_WIDTH
    while w < n:
        w *= 2
    return max(n, min(w, context))


class _Step(torch.nn.Module):
    """One forward pass over `rows` (dynamic) new positions, each a token at a position of a cache slot: tokens,
    pos and slot [rows] long, last [outs] long (which rows' logits to return), then the k caches and the v caches
    of every layer [slots, heads, width, head_dim], written in place at (slot, pos). A row attends to its slot's
    keys up to its own position, so the same function is a decode step of several sequences (slot = 0..rows-1,
    last = all rows) and the prompt of one (slot all s, pos 0..n-1, last = n-1: causal attention over keys
    written in the same call). Returns logits [outs, vocab]. The same layer order and ops as LeanGPT2."""

    def __init__(self, model, blas_threads: int):
        super().__init__()
        self.model, self.blas_threads = model, blas_threads  # 0: at::addmm
        cfg = model.config
        self.n_layer, self.n_head, self.d, self.eps = cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.layer_norm_epsilon

    def forward(self, tokens, pos, slot, last, *caches):
        t, L, H, d = self.model.transformer, self.n_layer, self.n_head, self.d
        B, hd = tokens.shape[0], d // H
        h = F.embedding(tokens, t.wte.weight) + F.embedding(pos, t.wpe.weight)  # [B, d]
        rows, heads = slot[:, None].expand(B, H), torch.arange(H)[None, :].expand(B, H)
        at = pos[:, None].expand(B, H)
        for layer, blk in enumerate(t.h):
            kc, vc = caches[layer], caches[L + layer]
            a = F.layer_norm(h, (d,), blk.ln_1.weight, blk.ln_1.bias, self.eps)
            q, k, v = self.layer(a, blk.attn.c_attn).split(d, dim=1)
            kc.index_put_((rows, heads, at), k.view(B, H, hd))
            vc.index_put_((rows, heads, at), v.view(B, H, hd))
            h = self.layer(self.attend(q, kc, vc, slot, pos, blk.attn.scaling), blk.attn.c_proj) + h
            m = F.layer_norm(h, (d,), blk.ln_2.weight, blk.ln_2.bias, self.eps)
            f = blk.mlp.act(self.layer(m, blk.mlp.c_fc))
            h = h + self.layer(f, blk.mlp.c_proj)
        h = F.layer_norm(h[last], (d,), t.ln_f.weight, t.ln_f.bias, self.eps)
        return self.layer(h, self.model.lm_head)

    def attend(self, q, kc, vc, slot, pos, scale):
        """Each row's attention over its slot's keys 0..pos -> [rows, d]: engine/blas.py's op where the package
        uses it (each row's keys read once, up to its own position, on the op's threads), else an explicit
        softmax that inductor fuses with the cache write into one kernel (SDPA stays a separate flash-attention
        call, 15% slower per step), which runs on one thread over the whole cache width. 12x768, 8-slot package
        of width 128, keys at position 60, two alternated runs on a slow day (13 GB/s copies; /tmp/s11/ab.py,
        2026-12-01): a step of 4 rows 42.7 / 44.5 ms with inductor's kernel, 36.6 / 37.5 with the op, 34.3 /
        36.1 with no attention at all; 1 row 28.9 / 31.1, 27.8 / 28.9 and 26.1 / 29.3."""
        if self.blas_threads:
            return blas.attend(q, kc, vc, slot, pos, scale, self.blas_threads)
        B, H, W, hd = q.shape[0], *kc.shape[1:]
        masked = (torch.arange(W)[None, :] > pos[:, None])[:, None, None, :]  # [B, 1, 1, W]: past each row's end
        s = (q.view(B, H, 1, hd) @ kc[slot].transpose(-1, -2)) * scale
        return (torch.softmax(s.masked_fill(masked, float("-inf")), dim=-1) @ vc[slot]).reshape(B, H * hd)

    def layer(self, x, m):
        """m(x) for a Conv1D (x @ w + b, w [in, out]), the bias-free lm_head nn.Linear (w [out, in]) or an
        Int8Linear: engine/blas.py's ops, else at::addmm (int8 layers need the op: see compile_runner)."""
        if type(m) is Int8Linear:
            return blas.linear_q8(x, m.weight, m.scale, m.bias, self.blas_threads)
        out_in = type(m) is torch.nn.Linear
        if self.blas_threads:
            return blas.linear(x, m.weight, m.bias, out_in, self.blas_threads)
        return F.linear(x, m.weight) if out_in else torch.addmm(m.bias, x, m.weight)


def package_dir() -> Path:
    """Where compiled packages are kept between processes ($ANNO_AOTI_CACHE, else ~/.cache/anno/aoti). Why:
    AOTInductor rebuilds the C++ wrapper on every compile (17-25 s per shape here even with inductor's cache
    warm), while loading a saved package takes ~0.02 s. A package holds no weights, only code for one
    architecture and shape, so any model of that architecture reuses it."""
    return Path(os.environ.get("ANNO_AOTI_CACHE") or Path.home() / ".cache" / "anno" / "aoti")


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """The step's source and how it is exported: a package built from older code is not reused."""
    code = inspect.getsource(_Step) + inspect.getsource(compile_runner) + blas.source_digest()
    return hashlib.sha256(code.encode()).hexdigest()


def openblas(build: bool = False) -> bool:
    """Whether steps compiled now call engine/blas.py's op (its library is loaded or kept in `package_dir()`;
    build: build it now when missing, ~15 s) rather than at::addmm."""
    return blas.unavailable(package_dir(), cxx_compiler() if build else None) is None


def _package_key(model, slots: int, width: int, use_openblas: bool) -> str:
    cfg = model.config
    arch = {k: getattr(cfg, k, None) for k in ("n_layer", "n_head", "n_embd", "n_inner", "vocab_size", "n_positions",
                                              "layer_norm_epsilon", "activation_function", "scale_attn_weights",
                                              "scale_attn_by_inverse_layer_idx")}
    int8 = [n for n, m in model.named_modules() if type(m) is Int8Linear]  # which layers are int8
    parts = [torch.__version__, json.dumps(arch, sort_keys=True), _code_digest(), cxx_compiler(),
             slots, width, torch.get_num_threads(), use_openblas, int8]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def package_path(model, slots: int, width: int, use_openblas: bool | None = None) -> Path:
    """The file of this shape's compiled package in `package_dir()` (at torch's current thread count; with
    engine/blas.py's op when its library is there, unless use_openblas says)."""
    use = openblas() if use_openblas is None else use_openblas
    return package_dir() / f"step-{_package_key(model, slots, width, use)}.pt2"


def compile_runner(model, slots: int, width: int, use_openblas: bool | None = None):
    """An AOTInductor runner of `_Step` for caches of this shape (any number of rows up to `slots`) at
    torch's current thread count, bound to the model's own parameters (no copy), loaded from `package_dir()`
    when compiled before. Its matrix products are engine/blas.py's op when use_openblas (None: when
    that op's library exists or builds now), else at::addmm. Call as runner.run([tokens, pos,
    slot, last, *k, *v]) -> [logits] (see `_Step`)."""
    use = openblas(build=True) if use_openblas is None else use_openblas
    if use and not openblas():
        raise RuntimeError(f"engine/blas.py's op is unusable: {blas.unavailable(package_dir())}")
    if not use and _int8_layers(model):
        raise RuntimeError(f"int8 layers compile only with engine/blas.py's op: {blas.unavailable(package_dir())}")
    step = _Step(model, torch.get_num_threads() if use else 0)
    cfg = model.config
    pkg = package_path(model, slots, width, use)
    folder = pkg.parent
    if not pkg.is_file():
        cache = [torch.zeros(slots, cfg.n_head, width, cfg.n_embd // cfg.n_head) for _ in range(2 * cfg.n_layer)]
        # examples of 3 rows and 2 outputs: a size of 1 would specialise a dimension to 1, equal ones unify them
        example = (*(torch.zeros(3, dtype=torch.long) for _ in range(3)), torch.zeros(2, dtype=torch.long), *cache)
        rows = torch.export.Dim("rows", min=1, max=max_rows(slots, width))
        outs = torch.export.Dim("outs", min=1, max=max_rows(slots, width))
        shapes = ({0: rows}, {0: rows}, {0: rows}, {0: outs}, tuple(None for _ in cache))
        with torch.no_grad():
            ep = torch.export.export(step, example, dynamic_shapes=shapes, strict=False)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tmp-", dir=folder) as d:  # atomic: build, then rename
            # with the op, single-threaded kernels, so no torch OpenMP pool spins against its workers or
            # OpenBLAS's pool (12x768 at two threads, 2026-11-30: 53.1 tok/s so, 3.6 with both pools live)
            configs = {"aot_inductor.package_constants_in_so": False, "cpp.threads": 1 if use else -1}
            if use:  # the ops' C shims, called directly (the proxy executor parses every call's arguments)
                ops = torch.ops.anno
                configs["aot_inductor.custom_ops_to_c_shims"] = {ops.anno_linear.default: [blas.C_SHIM],
                                                                 ops.anno_linear_q8.default: [blas.C_SHIM_Q8],
                                                                 ops.anno_attend.default: [blas.C_SHIM_ATTEND]}
            tmp = torch._inductor.aoti_compile_and_package(ep, package_path=os.path.join(d, "step.pt2"),
                                                           inductor_configs=configs)
            os.replace(tmp, pkg)
    params = dict(step.named_parameters(remove_duplicate=False)) | dict(step.named_buffers(remove_duplicate=False))
    weights = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return StepRunner(pkg, {name: t.detach() for name, t in params.items()}, release_gil=weights > RELEASE_GIL_BYTES)


# Models with more weights than this run their steps with the GIL released (StepRunner). A long step (12x768:
# 16-20 ms) then no longer stalls the server's other Python threads: with a thread doing Python work beside it,
# that thread ran 1.6 million loop iterations during 50 steps instead of 50 thousand, the steps 19-22 -> 26-29
# ms. A short one (the demo model: 0.15 ms) keeps it: each step would hand the GIL over and wait up to the
# switch interval (5 ms) to get it back, and with a busy Python thread beside it a step took 57 ms
# (/tmp/s12/gil4.py, gil5.py, 2026-12-01).
RELEASE_GIL_BYTES = 32 << 20


class StepRunner:
    """A loaded package, bound to the model's own tensors (no copy): run([tokens, pos, slot, last, *k, *v]) ->
    [logits] (see `_Step`; the list is consumed). release_gil: through engine/blas.py's anno::step_run when
    that library is loaded (a torch op's call releases the GIL while it runs; engine/blas_package.h); else, or
    without it, through AOTInductor's Python loader, which holds the GIL (see RELEASE_GIL_BYTES)."""

    def __init__(self, path: Path, params: dict[str, torch.Tensor], release_gil: bool = True):
        self._id, self._params = None, params  # the package reads the tensors in place: kept alive with it
        if release_gil and blas.loaded():
            self._op = torch.ops.anno.step_run.default
            self._id = torch.ops.anno.step_load(str(path), list(params), list(params.values()))
        else:
            aoti = torch._inductor.aoti_load_package(str(path))  # extracts the .so to its own temp folder
            aoti.load_constants({f: params[f] for f in aoti.get_constant_fqns()}, check_full_update=True,
                                user_managed=True)
            self._loader = aoti.loader

    def run(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self._op(self._id, inputs) if self._id is not None else self._loader.boxed_run(inputs)

    def __del__(self):
        if getattr(self, "_id", None) is not None:
            try:
                torch.ops.anno.step_free(self._id)
            except Exception:  # noqa: BLE001 -- interpreter shutdown: the library may be gone already
                pass

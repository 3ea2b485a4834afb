"""The lean CPU decode step for GPT-2: the forward pass that `engine.generate` and `engine.batching` run by
default on CPU instead of `GPT2LMHeadModel.forward`.

Why: a 12x768 decode step through transformers spends ~75% of its time in the GEMMs and the rest in
module plumbing, DynamicCache's torch.cat of the whole cache every step (7% at 40 tokens, growing with the
length), mask building and position bookkeeping (torch.profiler, 10 steps, 1 thread). This module calls the
very same layer modules (the Conv1D / nn.Linear / engine/int8.py Int8Linear objects, LayerNorm weights, the
activation module, SDPA with the model's own scaling) in the same order, so batch-1 greedy ids equal
`model.generate`'s, but keeps keys and values in a preallocated `KVCache` written in place and does no other
per-token work. Weights are shared with the model (no copies): in-place weight updates are seen. The one
exception is the batcher's steps of several rows and its prompts (`LeanGPT2(pack=True)`, `LeanRows`): their
large layers run on oneDNN-packed copies (see `packed`), since MKL's few-row GEMM is slow here.

Batches: row r of a batch lives in cache slot r with its own length; a decode step writes each row's new key
at its own position and masks keys past each row's end, so rows of different lengths need no padding and
GPT-2's absolute positions stay right. A finished row is removed by moving the last row into its slot.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def unsupported(model) -> str | None:
    """None when `LeanGPT2(model)` can decode this model, else the reason it cannot (the caller then uses
    the model's own forward)."""
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT2LMHeadModel):
        return f"{type(model).__name__} is not a GPT2LMHeadModel"
    wte = model.transformer.wte.weight
    if wte.device.type != "cpu":
        return f"model is on {wte.device.type}, the lean path is for CPU"
    if wte.dtype != torch.float32:
        return f"embeddings are {wte.dtype}, the lean path computes in float32"
    if model.config.add_cross_attention:
        return "cross-attention GPT-2 is not a decoder-only LM"
    if getattr(model.config, "_attn_implementation", "sdpa") == "eager" and model.config.reorder_and_upcast_attn:
        return "reorder_and_upcast_attn eager attention computes scores differently"
    return None


def row_split(module, k: int):
    """The layer as a function of x [..., in] that, for a single row, computes its fp32 matmul as k column
    blocks in one batched GEMM (bit-identical to the module: each output column is the same MKL dot product)
    and otherwise calls the module. Why: MKL runs a one-row GEMM on one thread (measured here: of 30 x 48
    one-row products of a 12x768 step at 2 torch threads, all CPU ticks on the calling thread, while an
    elementwise op used both), whereas its batched GEMM gives each block to a thread. The blocks are strided
    views of the module's own weight: no copy. Int8 layers (engine/int8.py) and anything else are called as
    they are. Otherwise (k = 1, or a shape that does not split) the
    same op the module's forward runs is called directly, without nn.Module's call machinery."""
    from transformers.pytorch_utils import Conv1D

    conv = isinstance(module, Conv1D)  # x @ W + b, W [in, out]; nn.Linear: x @ W.T + b, W [out, in]
    if not (conv or type(module) is torch.nn.Linear):
        return module
    w, b = module.weight, module.bias
    n_in, n_out = w.shape if conv else w.shape[::-1]
    if conv:  # Conv1D.forward's own op, without nn.Module's call machinery (a fifth of a tiny-model step)
        def direct(x: torch.Tensor) -> torch.Tensor:
            return torch.addmm(b, x.view(-1, n_in), w).view(*x.shape[:-1], n_out)
    else:
        def direct(x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, w, b)
    if k <= 1 or n_out % k or w.dtype != torch.float32 or not w.is_contiguous():
        return direct
    # [k, in, out/k]: block j is columns j*out/k.. of the product, a strided view of W
    wk = w.view(n_in, k, n_out // k).permute(1, 0, 2) if conv else w.view(k, n_out // k, n_in).transpose(1, 2)
    bk = None if b is None else b.view(k, 1, n_out // k)

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.numel() != n_in:
            return direct(x)
        xk = x.reshape(1, 1, n_in).expand(k, 1, n_in)
        y = torch.bmm(xk, wk) if bk is None else torch.baddbmm(bk, xk, wk)
        return y.transpose(0, 1).reshape(*x.shape[:-1], n_out)

    return forward


PACK_MIN_WEIGHTS = 1 << 18


def packed(module, rows_hint: int = 8):
    """The layer as a function of x [..., in] through oneDNN's linear on a weight copy prepacked into its
    blocked layout (what inductor's weight freezing does on CPU), for steps of several rows; None when the
    layer is not an fp32 Conv1D / nn.Linear or oneDNN is missing. Why: on this machine (AMD EPYC, 2 threads,
    MKL 2024.2) MKL's sgemm with 4 rows costs 2.7x its one-row product, oneDNN's packed one 1.3x: the four
    matrices of a 12x768 layer, 4 rows, 3.1 ms packed vs 7.6 ms addmm and 2.3 ms for one row (min of 5 rounds,
    2026-11-30). Results equal the module's up to float rounding (|diff| <= 5e-6 on outputs of ~5). The copy
    costs the layer's size again in memory and does not follow later in-place weight updates. Layers under
    PACK_MIN_WEIGHTS weights keep the module: there oneDNN's fixed cost per call (~40 us) outweighs the gain
    (4 rows: 128x512 50 us packed vs 36 addmm; 768x768 158 vs 333; 128x8000 207 vs 620)."""
    from transformers.pytorch_utils import Conv1D

    conv = isinstance(module, Conv1D)
    if not (conv or type(module) is torch.nn.Linear) or module.weight.dtype != torch.float32:
        return None
    if module.weight.numel() < PACK_MIN_WEIGHTS:
        return None
    if not torch.backends.mkldnn.is_available():
        return None
    w = module.weight.detach()
    w = (w.t() if conv else w).contiguous()  # oneDNN takes [out, in]
    pw = torch.ops.mkldnn._reorder_linear_weight(w, rows_hint)
    b = None if module.bias is None else module.bias.detach()

    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, pw, b, "none", [], "")

    return forward


class KVCache:
    """Keys and values of every layer, preallocated: k[l], v[l] are [slots, heads, width, head_dim]. Row r of
    a batch is slot r; `lengths[r]` tokens of it are filled. Grows (by copying) when more slots or a longer
    width are needed, so a batch pays for the rows and lengths it has, not the model's whole context."""

    def __init__(self, n_layer: int, n_head: int, head_dim: int, slots: int, width: int, dtype=torch.float32):
        self.shape = (n_head, head_dim)
        self.k = [torch.zeros(slots, n_head, width, head_dim, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(slots, n_head, width, head_dim, dtype=dtype) for _ in range(n_layer)]
        self.lengths: list[int] = []
        # an engine's input tensors for one-row steps of this cache, written in place (engine/compiled_step.py)
        self.step_inputs: tuple | None = None

    @property
    def slots(self) -> int:
        return self.k[0].shape[0]

    @property
    def width(self) -> int:
        return self.k[0].shape[2]

    def reserve(self, slots: int, width: int) -> None:
        """Make room for `slots` rows of `width` positions (doubling, so growth is amortised)."""
        s, w = self.slots, self.width
        if slots <= s and width <= w:
            return
        s2, w2 = max(s, slots if slots <= s else max(slots, 2 * s)), max(w, width if width <= w else max(width, 2 * w))
        n = len(self.lengths)
        for buf in (self.k, self.v):
            for i, t in enumerate(buf):
                new = torch.zeros(s2, *self.shape[:1], w2, self.shape[1], dtype=t.dtype)  # zeros: masked keys stay finite
                new[:n, :, :w] = t[:n]
                buf[i] = new

    def shrink(self, slots: int) -> None:
        """Keep only the first `slots` slots (at least as many as there are rows), by copying."""
        if not len(self.lengths) <= slots <= self.slots:
            raise ValueError(f"slots={slots} must be in [{len(self.lengths)} rows, {self.slots} slots]")
        if slots < self.slots:
            for buf in (self.k, self.v):
                for i, t in enumerate(buf):
                    buf[i] = t[:slots].clone()

    def move(self, src: int, dst: int) -> None:
        """Copy row src into slot dst (used to fill the hole a removed row leaves)."""
        n = self.lengths[src]
        for buf in (self.k, self.v):
            for t in buf:
                t[dst, :, :n] = t[src, :, :n]
        self.lengths[dst] = n

    def remove(self, rows: list[int]) -> list[int]:
        """Drop the given rows; the others keep their order except that the last rows fill the holes.
        Returns, for each new row index, the old index it came from."""
        gone = set(rows)
        order = list(range(len(self.lengths)))
        for r in sorted(gone, reverse=True):
            last = len(order) - 1
            if r != last:
                self.move(last, r)
                order[r] = order[last]
            order.pop()
            self.lengths.pop()
        return order


class LeanGPT2:
    """GPT-2 decoding over a KVCache, calling the model's own layer modules; see the module docstring."""

    def __init__(self, model, split: int | None = None, pack: bool = False):
        """split: how many column blocks a one-row fp32 matmul is cut into (default: torch's thread count
        now; 1 = the layer modules as they are). pack: decode steps of several rows and prompts of several tokens
        run their matmuls through `packed` weights (the batcher's; one-row steps keep the module's own weights).
        A 20-token prompt of the 12x768 model: 56-60 ms packed vs 86-95 unpacked (MKL), logits within 4e-6,
        2026-11-30 (/tmp/s8/pfpack.py)."""
        if reason := unsupported(model):
            raise ValueError(f"LeanGPT2 cannot run this model: {reason}")
        t = model.transformer
        cfg = model.config
        self.n_layer, self.n_head = cfg.n_layer, cfg.n_head
        self.d = cfg.n_embd
        self.head_dim = self.d // self.n_head
        self.wte, self.wpe = t.wte.weight, t.wpe.weight
        self.eps = cfg.layer_norm_epsilon
        k = torch.get_num_threads() if split is None else split
        self.split = k
        self.blocks = [(b.ln_1.weight, b.ln_1.bias, row_split(b.attn.c_attn, k), row_split(b.attn.c_proj, k),
                        b.attn.scaling, b.ln_2.weight, b.ln_2.bias, row_split(b.mlp.c_fc, k), b.mlp.act,
                        row_split(b.mlp.c_proj, k)) for b in t.h]
        self.ln_f = (t.ln_f.weight, t.ln_f.bias)
        self.lm_head = row_split(model.lm_head, k)
        self.rows_blocks, self.rows_lm_head = self.blocks, self.lm_head  # for steps of several rows
        if pack:
            def pk(module, fallback):
                return packed(module) or fallback
            self.rows_blocks = [(w1, b1, pk(b.attn.c_attn, ca), pk(b.attn.c_proj, cp), s, w2, b2, pk(b.mlp.c_fc, fc),
                                 act, pk(b.mlp.c_proj, mp))
                                for b, (w1, b1, ca, cp, s, w2, b2, fc, act, mp) in zip(t.h, self.blocks)]
            self.rows_lm_head = pk(model.lm_head, self.lm_head)

    def new_cache(self, slots: int = 1, width: int = 64) -> KVCache:
        return KVCache(self.n_layer, self.n_head, self.head_dim, slots, width, self.wte.dtype)

    def reserve(self, cache: KVCache, slots: int, width: int) -> None:
        """Room in `cache` for `slots` rows of `width` positions (engine/compiled_step.py's engine rounds
        the shape to its packages' shapes)."""
        cache.reserve(slots, width)

    def settle(self, cache: KVCache) -> None:
        """Called after rows left the cache; nothing to do here (see engine/compiled_step.CompiledGPT2)."""

    def prefill(self, ids: list[int], cache: KVCache, slot: int) -> torch.Tensor:
        """Run the prompt `ids` into slot `slot` of cache (a new row when slot == len(cache.lengths)) and
        return the next-token logits [1, vocab]."""
        n, new_row = len(ids), slot == len(cache.lengths)
        cache.reserve(max(cache.slots, slot + 1), n)
        if new_row:
            cache.lengths.append(0)
        try:
            logits = self._forward(torch.tensor([ids], dtype=torch.long), torch.arange(n)[None], cache, slot, 0)
        except BaseException:
            if new_row:
                cache.lengths.pop()
            raise
        cache.lengths[slot] = n
        return logits

    def step(self, tokens: Sequence[int], cache: KVCache) -> torch.Tensor:
        """One decode step for every row of cache: tokens, the last id of each row. Returns logits [rows,
        vocab] and advances every row by one."""
        rows = len(cache.lengths)
        if len(tokens) != rows:
            raise ValueError(f"tokens has {len(tokens)} ids for a cache of {rows} rows: one id a row")
        cache.reserve(rows, max(cache.lengths) + 1)
        tokens = torch.tensor(tokens, dtype=torch.long)[:, None]
        if rows == 1:
            p = cache.lengths[0]
            logits = self._forward(tokens, torch.tensor([[p]]), cache, 0, p)
        else:
            pos = torch.tensor(cache.lengths)
            logits = self._forward(tokens, pos[:, None], cache, None, pos)
        cache.lengths = [n + 1 for n in cache.lengths]
        return logits

    def _forward(self, x, positions, cache: KVCache, slot, start) -> torch.Tensor:
        """x [B, T]. slot is an int (one row, positions start..start+T-1, written by slicing) or None (every
        row, T == 1, start a [B] tensor of per-row positions, written by indexing, keys masked per row)."""
        B, T = x.shape
        H, hd, d = self.n_head, self.head_dim, self.d
        h = F.embedding(x, self.wte) + F.embedding(positions, self.wpe)
        # several rows (a batched step) or several positions (a prompt): the packed layers where this engine has
        # them; the lm_head sees one position per row
        blocks = self.rows_blocks if B > 1 or T > 1 else self.blocks
        lm_head = self.rows_lm_head if B > 1 else self.lm_head
        if slot is None:
            end = int(start.max()) + 1
            rows = torch.arange(B)
            mask = (torch.arange(end)[None, :] <= start[:, None])[:, None, None, :]  # [B, 1, 1, end]
        else:
            end = start + T
        for layer, (w1, b1, c_attn, c_proj, scale, w2, b2, c_fc, act, mlp_proj) in enumerate(blocks):
            a = F.layer_norm(h, (d,), w1, b1, self.eps)
            q, k, v = c_attn(a).split(d, dim=2)
            q = q.view(B, T, H, hd).transpose(1, 2)
            k = k.view(B, T, H, hd).transpose(1, 2)
            v = v.view(B, T, H, hd).transpose(1, 2)
            kc, vc = cache.k[layer], cache.v[layer]
            if slot is None:
                kc[rows, :, start] = k[:, :, 0]
                vc[rows, :, start] = v[:, :, 0]
                a = F.scaled_dot_product_attention(q, kc[:B, :, :end], vc[:B, :, :end], attn_mask=mask, scale=scale)
            else:
                kc[slot, :, start:end] = k[0]
                vc[slot, :, start:end] = v[0]
                a = F.scaled_dot_product_attention(
                    q, kc[slot:slot + 1, :, :end], vc[slot:slot + 1, :, :end], is_causal=T > 1, scale=scale)
            a = c_proj(a.transpose(1, 2).reshape(B, T, d).contiguous())
            h = a + h
            m = F.layer_norm(h, (d,), w2, b2, self.eps)
            h = h + mlp_proj(act(c_fc(m)))
        h = F.layer_norm(h, (d,), *self.ln_f, self.eps)
        return lm_head(h[:, -1:])[:, -1]


class LeanRows:
    """The continuous batcher's batch state on the lean path (engine/batching.py holds the same interface
    over the model's own forward): row r is cache slot r plus the token it feeds next."""

    def __init__(self, model, pack: bool = True, engine=None):
        """engine: the step to run (default LeanGPT2(model, pack)); engine/compiled_step.CompiledGPT2 has
        the same interface."""
        self.lean = engine if engine is not None else LeanGPT2(model, pack=pack)
        self.cache: KVCache | None = None
        self.next: list[int] = []

    @property
    def rows(self) -> int:
        return len(self.next)

    def add(self, ids: list[int], room: int) -> torch.Tensor:
        """Prefill a new last row from its prompt alone (exactly the batch-1 computation `generate_ids`
        does) with room for `room` more tokens; returns its next-token logits [1, vocab]."""
        if self.cache is None:
            self.cache = self.lean.new_cache(1, len(ids) + room)
        self.lean.reserve(self.cache, self.rows + 1, len(ids) + room)
        logits = self.lean.prefill(ids, self.cache, self.rows)
        self.next.append(-1)  # set_next gives it the picked token
        return logits

    def add_many(self, prompts: list[list[int]], rooms: list[int]) -> list[torch.Tensor]:
        """`add` for several new last rows, in one call where the engine prefills several prompts at once
        (engine/compiled_step.CompiledGPT2.prefill_many), else one `add` each."""
        many = getattr(self.lean, "prefill_many", None)
        if many is None or len(prompts) < 2:
            return [self.add(ids, room) for ids, room in zip(prompts, rooms)]
        width = max(len(ids) + room for ids, room in zip(prompts, rooms))
        if self.cache is None:
            self.cache = self.lean.new_cache(1, width)
        self.lean.reserve(self.cache, self.rows + len(prompts), width)
        logits = many(prompts, self.cache)
        self.next.extend([-1] * len(prompts))  # set_next gives each its picked token
        return logits

    def set_next(self, row: int, token: int) -> None:
        self.next[row] = token

    def step(self) -> torch.Tensor:
        """One decode step for every row; logits [rows, vocab]."""
        return self.lean.step(self.next, self.cache)

    def keep(self, keep: list[int]) -> list[int]:
        """Keep rows `keep`; returns, for each row after, the index it had before (removed rows' slots are
        filled by the last rows, so the order changes)."""
        order = self.cache.remove(sorted(set(range(self.rows)) - set(keep)))
        self.next = [self.next[i] for i in order]
        self.lean.settle(self.cache)
        return order

    def reset(self) -> None:
        self.cache, self.next = None, []

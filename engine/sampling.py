"""Sampling one token on CPU with the ids `model.generate` would pick, at a fraction of its cost: `Warp`
(transformers' temperature, top-k and top-p warpers in one call, same output tensor) and `draw`
(torch.multinomial(probs, 1, generator=gen), same id and same generator state after).

Why: at the app's defaults (temperature 0.8, top-k 50, top-p 0.95) the demo model (vocab 8,000) spent ~500 us a
sampled token outside its ~150 us step (2026-12-02, /tmp/s16/samp.py, medians of 2,000 calls, 2 threads): top-k
69 us, top-p 219 (a sort of all 8,000 logits, 130), multinomial 195 (one exponential variate per vocabulary
entry, each a log). In the batcher those costs are paid per row, one after another, so 4 sampling users paid
~2 ms of picks for a 0.3 ms step.

How each stays exact (tests/test_sampling.py compares with the originals on random, tied, subnormal, NaN and
inf logits and on many seeds):
- temperature: numpy's float32 division by float32(temperature), bit for bit torch's `scores / temperature`.
- top-k: the k-th largest value by np.partition is the value torch.topk(k)[0][-1] returns (ties counted by
  multiplicity in both); the mask `scores < kth` is the warper's own.
- top-p: after top-k only ~k logits are finite. Their sort, placed after V - m entries of -inf, is the array
  torch.sort gives (the -inf block's order is invisible: equal values, all removed); the softmax and cumsum
  then run on that full-length array with the warper's own torch ops, so the sums add in the same order.
  Tied finite logits (whose order torch.sort leaves unspecified) take the warper itself.
- draw: multinomial's one-sample path is argmax(p / q), q ~ Exp(1) drawn for every entry in order from the
  generator, each q = float(-log1p(-u)) of one uniform double u (aten's exponential transformation; checked
  here: torch.empty(8000).exponential_ and torch.empty(8000, dtype=float64).uniform_ leave the same generator
  state and give q = -log1p(-u)). So the u are drawn in bulk (63 us for 8,000; the draw that advances the
  generator alike) and q is computed only where p > 0 (math.log1p: libm's, as aten's scalar kernel). Zero
  entries give p / q = 0 unless u == 0 (0/0, a NaN that argmax would pick) or every nonzero ratio underflows
  to 0: those cases compute q for every entry.
Anything else (not CPU float32, one row; NaN, +inf; more than MAX_FINITE candidates) takes the original.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

# Candidates (finite logits / nonzero probabilities) up to which the shortcuts run: a Python-level log per
# candidate (~0.15 us) stays far under the 195 us of a full multinomial at 8,000 entries.
MAX_FINITE = 1024
_NEG_INF = float("-inf")


def _one_row_cpu_f32(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 2 and t.shape[0] == 1 \
        and t.is_contiguous()


def _kth_largest(s: np.ndarray, k: int) -> np.float32:
    """The k-th largest entry of s, ties counted by multiplicity. Every one of the k largest is >= the k-th
    largest of a 1-in-16 sample (k sample entries are at least that), so only those candidates are
    partitioned: 8,000 logits, k = 50, ~800 candidates instead of 8,000 (a full np.partition took 57 us)."""
    sample = s[::16]
    if len(sample) > 4 * k:
        floor = np.partition(sample, len(sample) - k)[len(sample) - k]
        s = s[s >= floor]
    return np.partition(s, len(s) - k)[len(s) - k]


def _top_k(s: np.ndarray, k: int) -> bool:
    """TopKLogitsWarper(k) on s in place; False (s untouched) where only the original is exact: a NaN."""
    if np.isnan(s).any():  # torch.topk ranks NaN above everything
        return False
    s[s < _kth_largest(s, min(k, len(s)))] = _NEG_INF
    return True


def _top_p(s: np.ndarray, top_p: float) -> bool:
    """TopPLogitsWarper(top_p) on s in place; False where only the original is exact (too many finite logits,
    NaN or +inf, tied finite logits)."""
    fin = np.flatnonzero(s != _NEG_INF)
    vals = s[fin]
    if len(fin) > MAX_FINITE or not np.isfinite(vals).all():
        return False
    order = np.argsort(vals, kind="stable")
    sv = vals[order]
    if len(sv) > 1 and (sv[1:] == sv[:-1]).any():  # ties: torch.sort's order among them is its own
        return False
    v, m = len(s), len(fin)
    full = np.full((1, v), _NEG_INF, dtype=np.float32)
    full[0, v - m:] = sv
    cumulative = torch.from_numpy(full).softmax(dim=-1).cumsum(dim=-1)  # the warper's ops, same array
    remove = cumulative <= (1 - top_p)
    remove[..., -1:] = 0  # min_tokens_to_keep=1, as generate builds it
    s[fin[order[remove.numpy()[0, v - m:]]]] = _NEG_INF
    return True


class Warp:
    """Temperature, top-k and top-p as `model.generate` applies them (TemperatureLogitsWarper, TopKLogitsWarper,
    TopPLogitsWarper, in that order, each only where on: temperature != 1, top_k != 0, top_p < 1), in one
    call with the same output. One call instead of three: in the batcher, beside its readers' threads, each
    warper call cost 2-3x its time alone (temperature 44 us against 8; /tmp/s16/bprof2.py). Temperature is
    numpy's float32 division by float32(temperature), bit for bit torch's (1.4M values, 45 scales checked)."""

    def __init__(self, temperature: float, top_k: int, top_p: float):
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)
        self.chain = ([TemperatureLogitsWarper(self.temperature)] if self.temperature != 1 else []) \
            + ([TopKLogitsWarper(self.top_k)] if self.top_k != 0 else []) \
            + ([TopPLogitsWarper(self.top_p)] if self.top_p < 1 else [])

    def _original(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.chain:
            scores = warper(input_ids, scores)
        return scores

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if not _one_row_cpu_f32(scores):
            return self._original(input_ids, scores)
        s = scores.numpy()[0]
        with np.errstate(over="ignore"):  # torch's division overflows to inf silently too
            s = s / np.float32(self.temperature) if self.temperature != 1 else s.copy()
        if (self.top_k and not _top_k(s, self.top_k)) or (self.top_p < 1 and not _top_p(s, self.top_p)):
            return self._original(input_ids, scores)
        return torch.from_numpy(s[None])


def _ratios_all(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    q = np.array([-math.log1p(-x) for x in u.tolist()], dtype=np.float64).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        return p / q


def draw(probs: torch.Tensor, gen: torch.Generator) -> int:
    """torch.multinomial(probs, 1, generator=gen)'s id for probs [1, V], and the same generator state after."""
    if not _one_row_cpu_f32(probs) or gen.device.type != "cpu":
        return int(torch.multinomial(probs, 1, generator=gen))
    p = probs.numpy()[0]
    top = p.max()
    if not (top < math.inf and p.min() >= 0 and top > 0):  # multinomial's own checks raise its own errors
        return int(torch.multinomial(probs, 1, generator=gen))
    nz = np.flatnonzero(p > 0)  # a bool mask: 4x faster than flatnonzero on the floats
    if len(nz) > MAX_FINITE:
        return int(torch.multinomial(probs, 1, generator=gen))
    u = torch.empty(len(p), dtype=torch.float64).uniform_(0, 1, generator=gen).numpy()
    r = _ratios_all(p[nz], u[nz])
    if r.max() > 0 and not (u == 0).any():
        return int(nz[int(r.argmax())])  # nz ascending: the first maximum, as argmax over all entries
    return int(_ratios_all(p, u).argmax())  # a NaN (0/0) or all-underflow: every entry, as aten does

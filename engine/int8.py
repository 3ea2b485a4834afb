"""Weight-only int8 linear layers, the "int8-cpu" method of engine/quantize.py: `Int8Linear` holds int8
weights [out, in] (nn.Linear's layout) with one float32 scale per output row (symmetric: absmax / 127) and a
float32 bias; activations stay float32. Its product is engine/blas.py's anno::anno_linear_q8 where that op is
loaded (`cli.py compile-step` builds it; engine/blas.cpp: one AVX2 dot kernel that converts the int8 weights
as it reads them, split over the op's worker threads; from 64 rows a dequantized copy through at::linear),
else F.linear on a float32 copy of the weights made at the first call (the same product up to float
rounding, at fp32 speed and with the fp32 bytes held as well: the op's library needs a C++ compiler and the
OpenBLAS numpy ships). torch's own weight-only kernel (torch._weight_int8pack_mm) took 69-87 ms for the
12x768 model's 49 one-row products in float32, against 3.9-7.8 ms here (/tmp/s8/i8mm.py), so it is not used.

Why weight-only rather than PyTorch's dynamic int8 (torch.ao quantize_dynamic: fbgemm, activations quantized
per call), which "int8-cpu" was until 2026-11-30: decoding is memory-bound, and this reads a quarter of the
fp32 bytes without rounding the activations. The 12x768 model's 49 one-row products per token took 4.7-5.0 ms
against 12.8-15.0 ms in fp32 on the op's own kernels (2 threads; 7.6 vs 16.4 on one), the demo model's 0.17
either way (its weights fit in cache; /tmp/s8/q8speed.py). Dynamic int8 could not be compiled into
engine/compiled_step.py's step, so on the demo model it ran 0.12-0.56x CTranslate2's int8 (fbgemm's per-call
overhead); these layers compile.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine import blas

QMAX = 127  # symmetric: -127..127 (-128 unused, so negating a weight never overflows)
# Eager calls (LeanGPT2's steps before a compiled package exists, prefill, model.forward) run the op on one
# thread (from 64 rows it uses MKL on torch's threads): next to torch's OpenMP pool the op's workers took turns
# spinning with it. Lean step, 2 torch threads, 2026-11-30 (/tmp/s8/lean8slm.py): 12x768 74.9 tok/s with the op
# on one thread, 20.4-28.7 with any layer on two; demo model 784 vs 283. Compiled steps use its workers.
EAGER_THREADS = 1


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 [out, in], float32 scale [out]) of a float weight [out, in]: per row, scale = absmax / QMAX and
    q = round(w / scale); an all-zero row gets scale 1."""
    w = weight.detach().to(torch.float32)
    scale = w.abs().amax(dim=1) / QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale[:, None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def op_ready(build: bool = False) -> bool:
    """Whether anno::anno_linear_q8 is loaded now (loading its library when built; build: building it first
    when missing, ~15 s once per machine, kept beside the compiled packages)."""
    from engine.compiled_step import openblas  # not at import: compiled_step imports this module

    return openblas(build=build)


class Int8Linear(nn.Module):
    """y = x @ (weight * scale[:, None]).T + bias, weight int8 [out, in]. Buffers, not parameters: nothing here
    trains."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self._fp32 = None  # F.linear's weight where the op is not loaded (see the module docstring)

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None) -> "Int8Linear":
        """The layer of a float weight [out, in] (nn.Linear's layout) and bias."""
        layer = cls(weight.shape[1], weight.shape[0], bias=bias is not None)
        layer.set(*quantize_rows(weight), None if bias is None else bias.detach().to(torch.float32).clone())
        return layer

    def set(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        """Replace the int8 weight [out, in], scale [out] and bias [out] (shapes and dtypes checked)."""
        want = {"weight": ((self.out_features, self.in_features), torch.int8), "scale": ((self.out_features,),
                torch.float32), "bias": ((self.out_features,), torch.float32)}
        for name, t in (("weight", weight), ("scale", scale), ("bias", bias)):
            if (t is None) != (getattr(self, name) is None) and name == "bias":
                raise ValueError(f"bias: this layer has {'one' if self.bias is not None else 'none'}, got "
                                 f"{'none' if t is None else 'one'}")
            if t is not None and (tuple(t.shape) != want[name][0] or t.dtype != want[name][1]):
                raise ValueError(f"{name}: expected {want[name][1]} {list(want[name][0])}, got {t.dtype} "
                                 f"{list(t.shape)}")
        self.weight, self.scale = weight.contiguous(), scale.contiguous()
        if bias is not None:
            self.bias = bias.contiguous()
        self._fp32 = None

    def dequantized(self) -> torch.Tensor:
        """The float32 weight [out, in] this layer multiplies by."""
        return self.weight.to(torch.float32) * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(torch.float32).contiguous()
        if blas.loaded() and x2.device.type == "cpu":
            y = blas.linear_q8(x2, self.weight, self.scale, self.bias, EAGER_THREADS)
        else:
            if getattr(self, "_fp32", None) is None or self._fp32.device != x2.device:
                self._fp32 = self.dequantized().to(x2.device)  # a plain attribute: not saved, not in buffers
            y = F.linear(x2, self._fp32, self.bias)
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

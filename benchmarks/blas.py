"""Benchmark: the matrix products of one decode token through torch's at::mm (MKL, what the compiled step
called first), engine/blas.py's anno::anno_linear (what it calls now: its own kernels and workers for one
row and for several, up to blas.own_rows(); OpenBLAS's sgemm beyond) and numpy's matmul (OpenBLAS called
directly: the peer). Two more variants of the op: `anno_linear_panels` (several rows of [in, out] weights on
the panel kernel, split by columns, as before axpy_many) and `anno_linear_huge_pages` (the same weights copied
onto transparent huge pages by engine/hugepages.py, as engine/checkpoint.load_hf_model loads models).

The op runs at torch's thread count (as in the compiled step); numpy's OpenBLAS pool is set to the same
count. Each variant's timed block starts after a 0.3 s pause, so a thread pool the previous one left spinning
(OpenBLAS's spins ~0.1 s) is asleep and does not take a core from it.

Shapes: every product of a 12x768 GPT-2 (vocab 8000: c_attn 768x2304, c_proj 768x768, c_fc 768x3072,
mlp c_proj 3072x768 per layer, lm_head 8000x768 [out, in]) with 12 distinct layers (359 MB of weights, so
they come from memory as in decoding, not from cache), and the demo model's 4x128 set. Rows 1 (one
stream), 4 and 8 (the batcher). Variants alternate within each round; medians of rounds. Prints one JSON
object; `ratios` holds, per case, the op's speed over at::mm and over numpy, its time over its one-row time,
axpy_many's speed over the panel kernel's, and its speed on huge pages over 4 KB pages.

    .venv/bin/python benchmarks/blas.py [--threads 2] [--rounds 5]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine import blas  # noqa: E402
from engine import hugepages  # noqa: E402
from engine import compiled_step  # noqa: E402

SHAPES = {"12x768": (12, 768, 8000), "demo 4x128": (4, 128, 8000)}


def weights(layers: int, d: int, vocab: int) -> tuple[list[list[torch.Tensor]], torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    per = [[torch.randn(d, 3 * d, generator=g), torch.randn(d, d, generator=g), torch.randn(d, 4 * d, generator=g),
            torch.randn(4 * d, d, generator=g)] for _ in range(layers)]
    return per, torch.randn(vocab, d, generator=g)


def numpy_threads(n: int) -> None:
    """numpy's OpenBLAS pool at n threads, so both sides use as many cores."""
    handle = ctypes.CDLL(str(blas.find_openblas()[0]))
    for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
        if hasattr(handle, name):
            getattr(handle, name)(n)
            return


def on_huge_pages(per, head):
    """Copies of the weights on transparent huge pages (engine/hugepages.py, as models are loaded), or None
    with the reason printed where the platform has none."""
    mod = torch.nn.Module()
    mod.ws = torch.nn.ParameterList([torch.nn.Parameter(w.clone(), requires_grad=False)
                                     for w in [*(w for layer in per for w in layer), head]])
    report = hugepages.rehome(mod)
    if report["skipped"]:
        return None, report
    ws = list(mod.ws)
    return ([ws[i:i + 4] for i in range(0, len(ws) - 1, 4)], ws[-1]), report


def runs(per, head, rows: int, huge=None) -> dict:
    d = head.shape[1]
    x, x4 = torch.randn(rows, d), torch.randn(rows, 4 * d)
    xn, x4n, hn = x.numpy(), x4.numpy(), head.numpy()
    pn = [[w.numpy() for w in layer] for layer in per]

    def aten():
        for w in per:
            torch.mm(x, w[0]), torch.mm(x, w[1]), torch.mm(x, w[2]), torch.mm(x4, w[3])
        torch.nn.functional.linear(x, head)

    t = torch.get_num_threads()

    def op():
        for w in per:
            blas.linear(x, w[0], None, False, t), blas.linear(x, w[1], None, False, t)
            blas.linear(x, w[2], None, False, t), blas.linear(x4, w[3], None, False, t)
        blas.linear(x, head, None, True, t)

    def numpy():
        for w in pn:
            xn @ w[0], xn @ w[1], xn @ w[2], x4n @ w[3]
        xn @ hn.T

    def panels():  # several rows of [in, out] products on the panel kernel (split by columns), as before
        default = blas.axpy_rows()
        blas.axpy_rows(1)
        try:
            op()
        finally:
            blas.axpy_rows(default)

    def op_huge():
        hper, hhead = huge
        for w in hper:
            blas.linear(x, w[0], None, False, t), blas.linear(x, w[1], None, False, t)
            blas.linear(x, w[2], None, False, t), blas.linear(x4, w[3], None, False, t)
        blas.linear(x, hhead, None, True, t)

    fns = {"aten_mm": aten, "anno_linear": op, "numpy": numpy}
    if rows > 1:
        fns["anno_linear_panels"] = panels
    if huge is not None:
        fns["anno_linear_huge_pages"] = op_huge
    return fns


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="torch threads (numpy's OpenBLAS: the same)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    why = blas.unavailable(compiled_step.package_dir(), compiled_step.cxx_compiler())
    if why:
        print(json.dumps({"benchmark": "blas", "error": why}))
        return
    numpy_threads(threads)
    out = {"benchmark": "blas", "cpus": os.cpu_count(), "threads": threads,
           "load_average_1min_start": round(os.getloadavg()[0], 2), "cases": {}, "ratios": {}}
    one_row = {}
    with torch.inference_mode():
        for name, shape in SHAPES.items():
            per, head = weights(*shape)
            mb = (sum(w.numel() for layer in per for w in layer) + head.numel()) * 4 / 1e6
            huge, report = on_huge_pages(per, head)
            out["huge_pages"] = {**out.get("huge_pages", {}), name: report}
            for rows in (1, 4, 8):
                fns = runs(per, head, rows, huge)
                n = 20 if shape[1] >= 512 else 400
                times = {k: [] for k in fns}
                for f in fns.values():  # warm-up
                    f()
                for _ in range(args.rounds):
                    for k, f in fns.items():
                        time.sleep(0.3)
                        t = time.perf_counter()
                        for _ in range(n):
                            f()
                        times[k].append((time.perf_counter() - t) / n)
                case = f"{name} rows {rows}"
                med = {k: statistics.median(v) for k, v in times.items()}
                out["cases"][case] = {k: {"ms_per_token": round(v * 1e3, 3), "gb_per_s": round(mb / v / 1e3, 1)}
                                      for k, v in med.items()}
                one_row.setdefault(name, med["anno_linear"])  # rows 1 comes first
                out["ratios"][case] = {"vs_aten_mm": round(med["aten_mm"] / med["anno_linear"], 2),
                                       "vs_numpy": round(med["numpy"] / med["anno_linear"], 2),
                                       "time_vs_one_row": round(med["anno_linear"] / one_row[name], 2)}
                if "anno_linear_panels" in med:
                    out["ratios"][case]["axpy_vs_panels"] = round(med["anno_linear_panels"] / med["anno_linear"], 2)
                if "anno_linear_huge_pages" in med:
                    out["ratios"][case]["huge_pages_vs_4k"] = round(med["anno_linear"] /
                                                                    med["anno_linear_huge_pages"], 2)
    out["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

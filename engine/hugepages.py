"""Weights on transparent huge pages: `rehome(model)` moves a CPU model's parameters and buffers into one
anonymous mapping marked MADV_HUGEPAGE before it is first written, so the kernel backs it with 2 MB pages
instead of 4 KB ones. engine/checkpoint.load_hf_model and engine/quantize's int8 loader call it, so every
model the app, the CLI and the benchmarks load for inference gets it.

Why: batch-1 decoding streams every weight once per token, and on 4 KB pages the 12x768 model's 368 MB are
~90,000 pages, far more than the TLB holds (Zen 3: 2,048 L2 entries, 8 MB), so every 4 KB of weights costs a
page walk, and inside a KVM guest (this machine, and most cloud and Space CPUs) a walk is two-dimensional.
With THP's default "madvise" mode (this machine's), torch's allocator never asks for huge pages (its own
THP_MEM_ALLOC_ENABLE switch is read once per process from the environment). Measured with the 49 one-row
products of one 12x768 token on engine/blas.py's op, 2 threads, both copies in one process, alternating
over 12 rounds: 12.04 ms on 4 KB pages vs 11.14 ms on huge pages (1.08x; 11 of 12 rounds faster), i.e. 30.6
vs 33.0 GB/s (2026-11-30, /tmp/s10/thp2.py; benchmarks/blas.py's `anno_linear_huge_pages` variant repeats it).

What stays the same: each Parameter object is kept (only its `.data` moves), so tied weights stay tied,
optimizers and modules holding the Parameter see the new memory, and in-place updates are seen. Values are
copied bit for bit. Nothing happens off Linux, when THP is "never", for tensors not on the CPU, or when the
model holds less than one huge page of weights. The mapping lives as long as any tensor in it does.
"""
from __future__ import annotations

import ctypes
import mmap
import re
from pathlib import Path

import torch

HUGE = 2 << 20  # x86-64's transparent huge page
ALIGN = 64  # each tensor starts on a cache line (the op's kernels load 32-byte vectors)
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def unavailable() -> str | None:
    """None when huge pages can be asked for here, else why not."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return "this platform has no MADV_HUGEPAGE (Linux only)"
    try:
        mode = re.search(r"\[(\w+)\]", THP_MODE.read_text()).group(1)
    except (OSError, AttributeError):
        return f"{THP_MODE} is not readable"
    return "transparent huge pages are disabled ('never')" if mode == "never" else None


def _tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Each distinct CPU tensor of the model once (tied weights are one Parameter), largest first."""
    seen, out = set(), []
    for t in [*model.parameters(), *model.buffers()]:
        if t is None or t.device.type != "cpu" or not t.is_contiguous() or id(t) in seen:
            continue
        seen.add(id(t))
        out.append(t)
    return sorted(out, key=lambda t: -t.nbytes)


def rehome(model: torch.nn.Module) -> dict:
    """Move the model's CPU parameters and buffers into one huge-page mapping (see the module docstring).
    Returns {"moved_bytes", "huge_bytes" (backed by huge pages, from /proc/self/smaps; None where unreadable),
    "skipped" (None or the reason nothing moved)}."""
    tensors = _tensors(model)
    offsets, total = [], 0
    for t in tensors:
        offsets.append(total)
        total += -(-t.nbytes // ALIGN) * ALIGN
    why = unavailable() or ("weights are under one huge page" if total < HUGE else None)
    storages = [t.untyped_storage() for t in tensors]
    if why or len({s.data_ptr() for s in storages}) < len(tensors) or any(
            t.storage_offset() or s.nbytes() != t.nbytes for t, s in zip(tensors, storages)):
        return {"moved_bytes": 0, "huge_bytes": None,
                "skipped": why or "a tensor shares its storage with another (a view): moving it would split them"}
    try:
        region = mmap.mmap(-1, total + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        region.madvise(mmap.MADV_HUGEPAGE)  # before the first write, so the faults take huge pages
    except OSError as e:  # no memory for a second copy, or a kernel that refuses the advice: keep 4 KB pages
        return {"moved_bytes": 0, "huge_bytes": None, "skipped": f"mmap/madvise failed: {e}"}
    start = ctypes.addressof(ctypes.c_char.from_buffer(region))
    skip = (-start) % HUGE  # the first tensor starts on a huge-page boundary
    raw = torch.frombuffer(region, dtype=torch.uint8)  # holds `region` alive for as long as a tensor uses it
    with torch.no_grad():
        for t, off in zip(tensors, offsets):
            dst = raw[skip + off: skip + off + t.nbytes].view(t.dtype).view(t.shape)
            dst.copy_(t)
            t.data = dst
    return {"moved_bytes": total, "huge_bytes": _huge_bytes(start + skip, total), "skipped": None}


def _huge_bytes(start: int, size: int) -> int | None:
    """AnonHugePages of the mapping that contains [start, start + size), from /proc/self/smaps."""
    try:
        text = Path("/proc/self/smaps").read_text()
    except OSError:
        return None
    inside = False
    for line in text.splitlines():
        if m := re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line):
            lo, hi = int(m.group(1), 16), int(m.group(2), 16)
            inside = lo <= start and start + size <= hi
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1]) * 1024
    return None

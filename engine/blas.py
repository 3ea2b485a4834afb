"""The OpenBLAS matrix product of the compiled decode step: the `anno::linear` torch op (engine/blas.cpp) --
finding the OpenBLAS library numpy ships, building the op's library with the C++ compiler AOTInductor uses
(once per torch version, source and OpenBLAS; ~13 s), keeping it beside the compiled packages, loading it,
and its shape function for torch.export.

Why: engine/compiled_step.py's step spends most of a token in one-row matrix products, and on this machine
(AMD EPYC, MKL 2024.2 inside torch) MKL's are slow: the 12x768 model's 49 one-row products per token stream
its weights at 16.5 GB/s through at::mm with two threads, 23 GB/s through OpenBLAS (benchmarks/blas.py).
The op uses OpenBLAS's own thread pool, and the packages that call it are compiled with single-threaded
kernels so that torch's OpenMP pool stays idle meanwhile (engine/blas.cpp says what mixing them cost).
Where the op cannot be built (no numpy OpenBLAS >= 0.3.27, no compiler) the step keeps at::addmm, with the
same ids; benchmarks/generate.py's `aten_mm` variant measures that difference in every run.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("blas.cpp")
# (sgemv, sgemm, integer type) of the OpenBLAS builds numpy ships: scipy-openblas64 (numpy >= 2 wheels, ILP64,
# prefixed symbols), scipy-openblas32, and a plain libopenblas.
SYMBOLS = (("scipy_cblas_sgemv64_", "scipy_cblas_sgemm64_", "int64_t"),
           ("scipy_cblas_sgemv", "scipy_cblas_sgemm", "int"),
           ("cblas_sgemv", "cblas_sgemm", "int"))
_lock = threading.Lock()
_failed: dict[Path, str] = {}  # library -> why its build or load failed in this process (not retried)


@functools.lru_cache(maxsize=1)
def find_openblas() -> tuple[Path, tuple[str, str, str]] | str:
    """(library, (sgemv, sgemm, int type)) of the OpenBLAS numpy ships, or the reason there is none."""
    try:
        import numpy
    except ImportError:
        return "numpy is not installed"
    libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    for lib in sorted(libs.glob("lib*openblas*.so*")):
        try:
            handle = ctypes.CDLL(str(lib))  # numpy has it loaded already: the same handle
        except OSError:
            continue
        if not hasattr(handle, "openblas_set_num_threads_local"):
            continue  # OpenBLAS < 0.3.27: no per-thread setting, so its own pool would fight torch's
        for names in SYMBOLS:
            if all(hasattr(handle, n) for n in names[:2]):
                return lib, names
    return f"no OpenBLAS >= 0.3.27 with cblas_sgemv in numpy's bundled libraries ({libs})"


@functools.lru_cache(maxsize=1)
def source_digest() -> str:
    """engine/blas.cpp's digest: libraries and compiled packages built from other source are not reused."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest() if SOURCE.is_file() else "missing"


def loaded() -> bool:
    """Whether anno::linear is registered in this process."""
    return hasattr(torch.ops, "anno") and hasattr(torch.ops.anno, "linear")


def library_file(folder: Path) -> Path | str:
    """Where the op's library for this torch, source and OpenBLAS is kept in folder, or why there is none."""
    found = find_openblas()
    if isinstance(found, str):
        return found
    if not SOURCE.is_file():
        return f"{SOURCE} is missing"
    lib, names = found
    key = hashlib.sha256(repr([torch.__version__, source_digest(), str(lib), names]).encode()).hexdigest()[:24]
    return Path(folder) / f"anno_blas-{key}.so"


def build(folder: Path, cxx: str) -> Path:
    """Compile engine/blas.cpp against torch and numpy's OpenBLAS into folder (atomic: built in a temporary
    folder, then renamed). Raises RuntimeError with the compiler's output on failure."""
    target = library_file(folder)
    if isinstance(target, str):
        raise RuntimeError(f"cannot build anno::linear: {target}")
    lib, (sgemv, sgemm, int_type) = find_openblas()
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    torch_lib = cpp_extension.library_paths()[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tmp-", dir=target.parent) as d:
        out = os.path.join(d, target.name)
        cmd = [cxx, "-O2", "-shared", "-fPIC", "-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
               f"-DANNO_SGEMV={sgemv}", f"-DANNO_SGEMM={sgemm}", f"-DANNO_BLAS_INT={int_type}",
               *[f"-I{p}" for p in cpp_extension.include_paths()], str(SOURCE), "-o", out,
               f"-L{torch_lib}", "-ltorch", "-ltorch_cpu", "-lc10", str(lib),
               f"-Wl,-rpath,{torch_lib}", f"-Wl,-rpath,{lib.parent}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building anno::linear failed ({cxx}):\n{done.stderr[-4000:]}")
        os.replace(out, target)
    return target


def load(path: Path) -> None:
    """Register anno::linear from a built library (once per process) and its shape function."""
    with _lock:
        if loaded():
            return
        torch.ops.load_library(str(path))

        @torch.library.register_fake("anno::linear")
        def _shape(x, w, b, out_in, threads):
            return x.new_empty(x.shape[0], w.shape[0] if out_in else w.shape[1])


def unavailable(folder: Path, cxx: str | None = None) -> str | None:
    """None when anno::linear can be used now -- registered, or its library is in folder (then loaded), or,
    only when cxx is given, built now --, else the reason (the step then keeps at::addmm)."""
    if loaded():
        return None
    target = library_file(folder)
    if isinstance(target, str):
        return target
    if target in _failed:
        return _failed[target]
    try:
        if not target.is_file():
            if cxx is None:
                return f"{target.name} is not built yet (cli.py compile-step builds it)"
            build(folder, cxx)
        load(target)
    except (OSError, RuntimeError) as e:
        _failed[target] = f"anno::linear is unusable: {e}"
        return _failed[target]
    return None if loaded() else f"{target} loaded but registered no anno::linear"


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, out_in: bool = False,
           threads: int = 1) -> torch.Tensor:
    """x [rows, in] @ w (+ b): w [in, out], or [out, in] with out_in (nn.Linear's layout), on `threads` of
    OpenBLAS's own pool (call it where no torch OpenMP region runs alongside: see engine/blas.cpp). Needs
    `unavailable(...)` to be None."""
    return torch.ops.anno.linear(x, w, b, out_in, threads)

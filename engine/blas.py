"""The matrix products and attention of the compiled decode step: the `anno::anno_linear` torch op
(engine/blas.cpp: one row on its own prefetching GEMV kernels and worker threads, a few rows on its own panel
kernels, many on OpenBLAS's sgemm; small [out, in] weights, a small model's tied lm_head, from packed
copies), its weight-only int8 twin `anno::anno_linear_q8` (engine/int8.py's layers)
and `anno::anno_attend` (engine/blas_attention.h: each row's attention over its own keys, on the same workers)
-- finding the OpenBLAS library numpy ships, building the op's library for this CPU with the C++ compiler
AOTInductor uses (once per torch version, source, OpenBLAS and CPU; ~15 s), keeping it beside the compiled
packages, loading it, its shape functions for torch.export, and the C shim declarations AOTInductor needs to
call it directly.

Why: engine/compiled_step.py's step spends most of a token in one-row matrix products, and on this machine
(AMD EPYC, MKL 2024.2 inside torch) MKL's are slow: the 12x768 model's 49 one-row products per token stream
its weights at 16.5 GB/s through at::mm with two threads, 22 GB/s through OpenBLAS's sgemv, 25 GB/s through
the op's own kernels (benchmarks/blas.py; engine/blas.cpp says why). The packages that call the op are
compiled with single-threaded kernels so that torch's OpenMP pool stays idle meanwhile.
Where the op cannot be built (no numpy OpenBLAS >= 0.3.27, no compiler) the step keeps at::addmm, with the
same ids; benchmarks/generate.py's `aten_mm` variant measures that difference in every run.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("blas.cpp")
KERNELS = Path(__file__).with_name("blas_kernels.h")  # included by SOURCE
ATTENTION = Path(__file__).with_name("blas_attention.h")  # included by SOURCE
PACKAGE = Path(__file__).with_name("blas_package.h")  # included by SOURCE
SHIM_SOURCE = Path(__file__).with_name("blas_shim.c")  # the symbol compiled steps call; see that file
# (sgemv, sgemm, integer type) of the OpenBLAS builds numpy ships: scipy-openblas64 (numpy >= 2 wheels, ILP64,
# prefixed symbols), scipy-openblas32, and a plain libopenblas.
SYMBOLS = (("scipy_cblas_sgemv64_", "scipy_cblas_sgemm64_", "int64_t"),
           ("scipy_cblas_sgemv", "scipy_cblas_sgemm", "int"),
           ("cblas_sgemv", "cblas_sgemm", "int"))
# The op's C entry point as AOTInductor declares it (torch._inductor.config.aot_inductor.custom_ops_to_c_shims):
# compiled steps then call it directly, not through the proxy executor's per-call argument parsing.
C_SHIM = ("AOTITorchError aoti_torch_cpu_anno_linear(AtenTensorHandle x, AtenTensorHandle w, AtenTensorHandle* b, "
          "int32_t out_in, int64_t threads, AtenTensorHandle* ret0)")
C_SHIM_Q8 = ("AOTITorchError aoti_torch_cpu_anno_linear_q8(AtenTensorHandle x, AtenTensorHandle w, AtenTensorHandle "
             "scale, AtenTensorHandle* b, int64_t threads, AtenTensorHandle* ret0)")
C_SHIM_ATTEND = ("AOTITorchError aoti_torch_cpu_anno_attend(AtenTensorHandle q, AtenTensorHandle kc, AtenTensorHandle vc, "
                 "AtenTensorHandle slot, AtenTensorHandle pos, double scale, int64_t threads, AtenTensorHandle* ret0)")
_lock = threading.Lock()
_library: list = [None]  # the loaded library (ctypes), for gemv_kernel
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
    """engine/blas.cpp's, its headers' and engine/blas_shim.c's digest: libraries and compiled packages built
    from other source are not reused."""
    files = (SOURCE, KERNELS, ATTENTION, PACKAGE, SHIM_SOURCE)
    if not all(f.is_file() for f in files):
        return "missing"
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def loaded() -> bool:
    """Whether anno::anno_linear (and anno::anno_linear_q8, anno::anno_attend) is registered in this process."""
    return hasattr(torch.ops, "anno") and hasattr(torch.ops.anno, "anno_attend") and hasattr(torch.ops.anno, "step_run")


def library_file(folder: Path) -> Path | str:
    """Where the op's library for this torch, source, OpenBLAS and CPU (it is built with -march=native) is kept
    in folder, or why there is none."""
    found = find_openblas()
    if isinstance(found, str):
        return found
    for src in (SOURCE, SHIM_SOURCE):
        if not src.is_file():
            return f"{src} is missing"
    lib, names = found
    cpu = [platform.machine(), torch.backends.cpu.get_cpu_capability()]
    key = hashlib.sha256(repr([torch.__version__, source_digest(), str(lib), names, cpu]).encode()).hexdigest()[:24]
    return Path(folder) / f"anno_blas-{key}.so"


def shim_file(library: Path) -> Path:
    """The dependency-free library exporting the compiled steps' entry point, kept beside the op's library."""
    return library.with_name(library.name.replace("anno_blas-", "anno_blas_shim-"))


def build(folder: Path, cxx: str) -> Path:
    """Compile engine/blas.cpp against torch and numpy's OpenBLAS, and engine/blas_shim.c, into folder
    (atomic: built in a temporary folder, then renamed; the shim first, so the op's library existing means
    both do). Raises RuntimeError with the compiler's output on failure."""
    target = library_file(folder)
    if isinstance(target, str):
        raise RuntimeError(f"cannot build anno::anno_linear: {target}")
    lib, (sgemv, sgemm, int_type) = find_openblas()
    from torch.utils import cpp_extension

    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    torch_lib = cpp_extension.library_paths()[0]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tmp-", dir=target.parent) as d:
        out = os.path.join(d, target.name)
        # -march=native: the kernels are for this CPU (the key says which); hidden visibility: only the C
        # entries are exported (the op registers itself when loaded)
        cmd = [cxx, "-O2", "-march=native", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "-shared",
               "-fPIC", "-std=c++20", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
               f"-DANNO_SGEMV={sgemv}", f"-DANNO_SGEMM={sgemm}", f"-DANNO_BLAS_INT={int_type}",
               *[f"-I{p}" for p in cpp_extension.include_paths()], str(SOURCE), "-o", out,
               f"-L{torch_lib}", "-ltorch", "-ltorch_cpu", "-lc10", str(lib),
               f"-Wl,-rpath,{torch_lib}", f"-Wl,-rpath,{lib.parent}"]
        shim = os.path.join(d, shim_file(target).name)
        for argv in ([cxx, "-O2", "-shared", "-fPIC", "-x", "c", str(SHIM_SOURCE), "-o", shim], cmd):
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"building anno::anno_linear failed ({cxx}):\n{done.stderr[-4000:]}")
        os.replace(shim, shim_file(target))
        os.replace(out, target)
    return target


def load(path: Path) -> None:
    """Register anno::anno_linear from a built library (once per process) and its shape function, and load
    its shim library RTLD_GLOBAL pointing at it, so that compiled steps' libraries find their entry point."""
    with _lock:
        if loaded():
            return
        shim = ctypes.CDLL(str(shim_file(path)), mode=ctypes.RTLD_GLOBAL)
        torch.ops.load_library(str(path))
        _library[0] = ctypes.CDLL(str(path))
        shim.anno_shim_set(ctypes.cast(_library[0].anno_linear_c, ctypes.c_void_p))
        shim.anno_shim_set_q8(ctypes.cast(_library[0].anno_linear_q8_c, ctypes.c_void_p))
        shim.anno_shim_set_attend(ctypes.cast(_library[0].anno_attend_c, ctypes.c_void_p))

        @torch.library.register_fake("anno::anno_linear")
        def _shape(x, w, b, out_in, threads):
            return x.new_empty(x.shape[0], w.shape[0] if out_in else w.shape[1])

        @torch.library.register_fake("anno::anno_linear_q8")
        def _shape_q8(x, w, scale, b, threads):
            return x.new_empty(x.shape[0], w.shape[0])

        @torch.library.register_fake("anno::anno_attend")
        def _shape_attend(q, kc, vc, slot, pos, scale, threads):
            return q.new_empty(q.shape[0], kc.shape[1] * kc.shape[3])


def unavailable(folder: Path, cxx: str | None = None) -> str | None:
    """None when anno::anno_linear can be used now -- registered, or its library is in folder (then loaded), or,
    only when cxx is given, built now --, else the reason (the step then keeps at::addmm)."""
    if loaded():
        return None
    target = library_file(folder)
    if isinstance(target, str):
        return target
    if target in _failed:
        return _failed[target]
    try:
        if not (target.is_file() and shim_file(target).is_file()):
            if cxx is None:
                return f"{target.name} is not built yet (cli.py compile-step builds it)"
            build(folder, cxx)
        load(target)
    except (OSError, RuntimeError) as e:
        _failed[target] = f"anno::anno_linear is unusable: {e}"
        return _failed[target]
    return None if loaded() else f"{target} loaded but registered no anno::anno_linear"


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, out_in: bool = False,
           threads: int = 1) -> torch.Tensor:
    """x [rows, in] @ w (+ b): w [in, out], or [out, in] with out_in (nn.Linear's layout), on `threads`
    threads (the op's own workers up to `own_rows()` rows, OpenBLAS's pool for more; call it where no torch OpenMP region
    runs alongside: see engine/blas.cpp). Needs `unavailable(...)` to be None."""
    return torch.ops.anno.anno_linear(x, w, b, out_in, threads)


def linear_q8(x: torch.Tensor, w: torch.Tensor, scale: torch.Tensor, b: torch.Tensor | None,
              threads: int = 1) -> torch.Tensor:
    """x [rows, in] @ (w * scale[:, None]).T (+ b): weight-only int8, w int8 [out, in], scale float32 [out]
    (engine/int8.py's layers), x and the result float32, on `threads` threads (the op's workers; from 64 rows
    a dequantized copy through at::linear on torch's threads). Needs `unavailable(...)` to be None."""
    return torch.ops.anno.anno_linear_q8(x, w, scale, b, threads)


def attend(q: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor, slot: torch.Tensor, pos: torch.Tensor,
           scale: float, threads: int = 1) -> torch.Tensor:
    """Each row's attention over its KV-cache slot: softmax(scale * q . K[slot, h, :pos+1]) @ V[slot, h, :pos+1]
    per head. q [rows, heads * hd] (unit column stride), kc and vc [slots, heads, width, hd] contiguous float32
    (holding the rows' own keys already), slot and pos [rows] int64; returns [rows, heads * hd], on `threads`
    threads (the op's workers; engine/blas_attention.h). Needs `unavailable(...)` to be None."""
    return torch.ops.anno.anno_attend(q, kc, vc, slot, pos, scale, threads)


def _loaded_library():
    """The op's library (ctypes), for the kernel switches below; RuntimeError when it is not loaded."""
    if _library[0] is None:
        raise RuntimeError("anno::anno_linear is not loaded (see unavailable())")
    return _library[0]


def gemv_kernel(own: bool | None = None) -> str:
    """Which kernels one-row products use in this process: "own" (engine/blas.cpp's, the default where the
    CPU has AVX2 and FMA) or "openblas" (its sgemv); own=True/False switches (for benchmarks and tests).
    Needs the op loaded. Raises RuntimeError when own kernels are asked of a build without them."""
    mode = _loaded_library().anno_blas_gemv_kernel(-1 if own is None else int(own))
    if mode < 0:
        raise RuntimeError("this build of anno::anno_linear has no own kernels (the CPU lacks AVX2 or FMA)")
    return "own" if mode == 1 else "openblas"


def packed(on: bool | None = None) -> bool:
    """Whether small [out, in] fp32 weights (the tied lm_head of a small model) are multiplied from packed
    copies (engine/blas.cpp's `packed_for`; the default); on=False turns that off and drops the copies (for
    benchmarks and tests). Needs the op loaded."""
    fn = _loaded_library().anno_blas_pack
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
    return fn(-1 if on is None else int(bool(on))) == 1


def axpy_rows(rows: int | None = None) -> int:
    """Up to how many rows a product with [in, out] weights runs on engine/blas_kernels.h's axpy_many (split by
    weight rows); more rows use its panel kernel (split by columns). rows sets it (benchmarks, tests)."""
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise ValueError(f"rows={rows!r}: must be an integer >= 1")
    fn = _loaded_library().anno_blas_axpy_rows
    fn.restype, fn.argtypes = ctypes.c_int64, [ctypes.c_int64]
    return int(fn(-1 if rows is None else rows))


def own_rows(rows: int | None = None) -> int:
    """Up to how many rows a product runs on engine/blas.cpp's own kernels (more go to OpenBLAS's sgemm; 1:
    only one-row products do); rows sets it (for benchmarks and tests). Needs the op loaded."""
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
        raise ValueError(f"rows={rows!r}: must be an integer >= 1")
    fn = _loaded_library().anno_blas_own_rows
    fn.restype, fn.argtypes = ctypes.c_int64, [ctypes.c_int64]
    return int(fn(-1 if rows is None else rows))

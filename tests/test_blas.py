"""engine/blas.py: the OpenBLAS op (anno::linear) the compiled decode step calls -- its products equal
torch's for both weight layouts, one and several rows, with and without a bias, on one or two of OpenBLAS's
threads; it never writes its inputs; bad inputs get clear errors; its library is built once and reused."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import blas
from engine import compiled_step as C


@pytest.fixture(scope="module")
def op():
    found = blas.find_openblas()
    if isinstance(found, str):
        pytest.skip(f"no OpenBLAS to build anno::linear against: {found}")
    why = blas.unavailable(C.package_dir(), C.cxx_compiler())
    assert why is None, why
    return blas.linear


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("out_in", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_equals_torch(op, threads, rows, out_in, bias):
    g = torch.Generator().manual_seed(rows * 10 + out_in)
    n_in, n_out = 96, 77
    x = torch.randn(rows, n_in, generator=g)
    w = torch.randn(n_out, n_in, generator=g) if out_in else torch.randn(n_in, n_out, generator=g)
    b = torch.randn(n_out, generator=g) if bias else None
    kept = [t.clone() for t in (x, w, b) if t is not None]
    want = F.linear(x, w, b) if out_in else (x @ w + (b if bias else 0))
    got = op(x, w, b, out_in, threads)
    assert got.shape == (rows, n_out) and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    for before, now in zip(kept, (t for t in (x, w, b) if t is not None)):
        assert torch.equal(before, now)  # the bias is copied into the output, never written


def test_bad_inputs_get_clear_errors(op):
    x, w = torch.randn(1, 8), torch.randn(8, 4)
    with pytest.raises(RuntimeError, match="float32"):
        op(x.double(), w.double(), None, False)
    with pytest.raises(RuntimeError, match="x has 8 columns"):
        op(x, torch.randn(5, 4), None, False)
    with pytest.raises(RuntimeError, match=r"b must be contiguous float32 \[4\]"):
        op(x, w, torch.randn(5), False)
    with pytest.raises(RuntimeError, match="contiguous"):
        op(x, torch.randn(4, 8).t(), None, False)
    with pytest.raises(RuntimeError, match=r"threads must be in \[1, 1024\], got 0"):
        op(x, w, None, False, 0)


def test_library_is_built_once_and_reused(op):
    lib = blas.library_file(C.package_dir())
    assert lib.is_file()
    stamp = lib.stat().st_mtime_ns
    assert blas.unavailable(C.package_dir(), C.cxx_compiler()) is None
    assert lib.stat().st_mtime_ns == stamp
    assert not [p for p in lib.parent.iterdir() if p.name.startswith("tmp-")]  # the build folder is gone


def test_compiled_step_calls_the_op_once_per_product(op):
    """A compiled step runs 4 products a layer plus the lm_head through anno::linear (seen by the profiler
    at run time), and its logits equal the at::addmm-compiled step's."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=50)).eval()
    logits, calls = {}, {}
    for use in (True, False):
        runner = C.compile_runner(m, 1, 64, use_openblas=use)
        engine = C.CompiledGPT2(m, wait=True)
        engine.runners[(1, 64, torch.get_num_threads())] = runner
        with torch.inference_mode():
            cache = engine.new_cache(1, 64)
            engine.prefill([1, 2, 3], cache, 0)
            with torch.profiler.profile() as prof:
                logits[use] = engine.step(torch.tensor([[4]]), cache)
        calls[use] = sum(e.name == "anno::linear" for e in prof.events())
    assert calls == {True: 2 * 4 + 1, False: 0}
    torch.testing.assert_close(logits[True], logits[False], rtol=1e-5, atol=1e-5)

"""engine/blas.py: the op (anno::anno_linear) the compiled decode step calls -- its products equal torch's
for both weight layouts, one and several rows, with and without a bias, on its own kernels and on OpenBLAS's,
on 1-3 threads, with sizes that leave remainders, and from packed copies of small [out, in] weights, which
follow in-place updates and freed memory; it never writes its inputs; calls from several threads at
once and after a fork are right; bad inputs get clear errors; its library is built once and reused; a
compiled step calls it once per product, directly. Its attention (anno::anno_attend) equals a plain softmax
attention over each row's own keys, for head sizes that use every kernel path, on 1-3 threads."""
from __future__ import annotations

import os
import threading
import time
import zipfile

import pytest
import torch
import torch.nn.functional as F

from engine import blas
from engine import compiled_step as C


@pytest.fixture(scope="module")
def op(blas_ops):
    return blas_ops.linear


@pytest.fixture(params=["own", "openblas"])
def kernel(op, request):
    """Each set of kernels in turn: own (engine/blas.cpp's, where the CPU has AVX2 and FMA: one row, and
    several up to blas.own_rows()) or OpenBLAS's (sgemv for one row, sgemm for several)."""
    own = request.param == "own"
    default = blas.own_rows()
    try:
        assert blas.gemv_kernel(own) == request.param
    except RuntimeError as e:
        pytest.skip(str(e))
    blas.own_rows(default if own else 1)
    yield request.param
    blas.gemv_kernel(True) if not own else None
    blas.own_rows(default)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 3, 7, 13])  # several rows: blocks of 6 and remainders of 1 and 3
@pytest.mark.parametrize("out_in", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n_in, n_out", [(96, 77), (203, 45), (768, 2304)])
def test_linear_equals_torch(op, kernel, threads, rows, out_in, bias, n_in, n_out):
    g = torch.Generator().manual_seed(rows * 10 + out_in + n_in)
    x = torch.randn(rows, n_in, generator=g)
    w = torch.randn(n_out, n_in, generator=g) if out_in else torch.randn(n_in, n_out, generator=g)
    b = torch.randn(n_out, generator=g) if bias else None
    kept = [t.clone() for t in (x, w, b) if t is not None]
    want = F.linear(x, w, b) if out_in else (x @ w + (b if bias else 0))
    got = op(x, w, b, out_in, threads)
    assert got.shape == (rows, n_out) and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=3e-4)
    for before, now in zip(kept, (t for t in (x, w, b) if t is not None)):
        assert torch.equal(before, now)  # the bias is copied into the output, never written


def test_own_rows_setting(op):
    """Products of 2..own_rows() rows run on the own kernels (48 by default), more on sgemm; both agree, and
    the setting takes only integers >= 1."""
    default = blas.own_rows()
    assert default == 48
    x, w = torch.randn(60, 64), torch.randn(64, 48)
    try:
        for rows in (1, 60, default):
            assert blas.own_rows(rows) == rows
            torch.testing.assert_close(op(x, w, None, False, 2), x @ w, rtol=1e-5, atol=1e-4)
    finally:
        blas.own_rows(default)
    for bad in (0, -3, True, 2.0):
        with pytest.raises(ValueError, match="rows="):
            blas.own_rows(bad)


def test_axpy_rows_setting(op):
    """[in, out] products of 2..axpy_rows() rows (16 by default) of weights over 2^18 split by weight rows, more
    rows (and smaller weights) by columns on the panel kernel: both give torch's product for every row count,
    shape remainder (515 % 4, 517 % 8) and thread count."""
    default = blas.axpy_rows()
    assert default == 16
    g = torch.Generator().manual_seed(5)
    try:
        for setting in (1, default):
            assert blas.axpy_rows(setting) == setting
            for rows in (2, 5, 16, 17):
                for n_in, n_out in ((203, 45), (515, 517), (768, 3072)):  # small: panels; the rest: tails
                    x, w, b = torch.randn(rows, n_in, generator=g), torch.randn(n_in, n_out, generator=g), \
                        torch.randn(n_out, generator=g)
                    for threads in (1, 2):
                        torch.testing.assert_close(op(x, w, b, False, threads), x @ w + b, rtol=1e-5, atol=3e-4)
    finally:
        blas.axpy_rows(default)
    for bad in (0, -3, True, 2.0):
        with pytest.raises(ValueError, match="rows="):
            blas.axpy_rows(bad)


@pytest.mark.parametrize("rows", [1, 2, 4, 6, 7, 13])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n_in, n_out", [(128, 8000), (96, 48), (203, 64 * 3 + 16)])  # 4-panel groups + a tail
def test_packed_lm_head_equals_plain_and_torch(op, rows, threads, n_in, n_out):
    """Small [out, in] weights (a tied lm_head) multiplied from their packed panels give torch's product and
    the unpacked kernels' to float rounding, for one row (4-panel groups, then single panels) and several."""
    g = torch.Generator().manual_seed(rows + n_in)
    x, w = torch.randn(rows, n_in, generator=g), torch.randn(n_out, n_in, generator=g)
    b = torch.randn(n_out, generator=g)
    try:
        assert blas.packed(False) is False
        plain = op(x, w, b, True, threads)
        assert blas.packed(True) is True
        got = op(x, w, b, True, threads)
    finally:
        blas.packed(True)
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=3e-4)
    torch.testing.assert_close(got, plain, rtol=1e-5, atol=3e-4)


def test_packed_copy_follows_the_weights(op):
    """A packed copy is used only while it is the weights': an in-place update (the version counter), a new
    tensor in a freed one's memory (the storage, held weakly) and an inference tensor (no version counter,
    never packed) all give the product of the weights as they are now."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 128, generator=g)
    w = torch.randn(8000, 128, generator=g)
    torch.testing.assert_close(op(x, w, None, True, 2), x @ w.T, rtol=1e-5, atol=3e-4)
    with torch.no_grad():
        w.mul_(-2)
    torch.testing.assert_close(op(x, w, None, True, 2), x @ w.T, rtol=1e-5, atol=3e-4)
    w[:16].copy_(torch.ones(16, 128))  # a slice's write bumps the same counter
    torch.testing.assert_close(op(x[:1], w, None, True, 2), x[:1] @ w.T, rtol=1e-5, atol=3e-4)
    reused = False
    for seed in range(5):  # free it and allocate the same size: malloc usually hands back the same memory
        ptr = w.data_ptr()
        del w
        w = torch.randn(8000, 128, generator=torch.Generator().manual_seed(seed))
        reused |= w.data_ptr() == ptr
        torch.testing.assert_close(op(x, w, None, True, 2), x @ w.T, rtol=1e-5, atol=3e-4)
    with torch.inference_mode():
        wi = torch.randn(8000, 128, generator=g)
        torch.testing.assert_close(op(x, wi, None, True, 2), x @ wi.T, rtol=1e-5, atol=3e-4)
        wi.mul_(3)
        torch.testing.assert_close(op(x, wi, None, True, 2), x @ wi.T, rtol=1e-5, atol=3e-4)
    print("freed memory reused by the next weights:", reused)


def test_calls_from_several_threads_at_once(op):
    """Concurrent one-row calls (one holds the op's workers, the others compute alone) all get their own
    right answer."""
    g = torch.Generator().manual_seed(7)
    w, b = torch.randn(512, 640, generator=g), torch.randn(640, generator=g)
    xs = [torch.randn(1, 512, generator=g) for _ in range(4)]
    want = [x @ w + b for x in xs]
    bad = []

    def run(i):
        for _ in range(50):
            if not torch.allclose(op(xs[i], w, b, False, 2), want[i], rtol=1e-5, atol=3e-4):
                bad.append(i)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    [t.start() for t in workers]
    [t.join() for t in workers]
    assert not bad


def test_pool_grows_between_calls(op):
    """Calls that need more workers than exist start them between calls; each new worker joins the next call
    only (one that took the current call's number could run a job still being written)."""
    g = torch.Generator().manual_seed(3)
    w, b = torch.randn(512, 256, generator=g), torch.randn(256, generator=g)
    x = torch.randn(1, 512, generator=g)
    want = x @ w + b
    for threads in (2, 2, 4, 3, 6, 2, 8):
        for _ in range(20):
            torch.testing.assert_close(op(x, w, b, False, threads), want, rtol=1e-5, atol=3e-4)


def test_calls_right_after_the_workers_sleep(op):
    """After a pause longer than the workers spin (0.5 ms) they sleep; the next calls wake them while the
    caller takes the parts no worker has claimed yet (engine/blas.cpp's Pool): every answer still complete,
    for products split by weight rows, by columns, and across more parts than this machine has cores."""
    g = torch.Generator().manual_seed(11)
    w, b = torch.randn(768, 512, generator=g), torch.randn(512, generator=g)
    head = torch.randn(800, 768, generator=g)  # [out, in]: split by columns
    x = torch.randn(1, 768, generator=g)
    want, want_head = x @ w + b, x @ head.T
    for pause in (0, 0.002, 0.02, 0, 0.002):
        for threads in (2, 5):
            time.sleep(pause)
            torch.testing.assert_close(op(x, w, b, False, threads), want, rtol=1e-5, atol=3e-4)
            torch.testing.assert_close(op(x, head, None, True, threads), want_head, rtol=1e-5, atol=3e-4)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_child_gets_its_own_workers(op):
    """A child forked after the op's workers started (they do not exist in the child) still computes on two
    threads, without hanging."""
    w, x = torch.randn(256, 300), torch.randn(1, 256)
    want = x @ w
    op(x, w, None, False, 2)  # the parent's workers are running now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer 1 if right, 0 if not; never return into pytest
        try:
            ok = torch.allclose(op(x, w, None, False, 2), want, rtol=1e-5, atol=3e-4)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    got = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert got == b"1"


def test_only_the_entry_point_goes_global(op):
    """Compiled steps find aoti_torch_cpu_anno_linear in the process's global scope, but the op's library and
    its dependencies stay local: loading them globally broke CTranslate2 loaded later (tests/test_export.py)."""
    import ctypes

    everything = ctypes.CDLL(None)  # the global scope
    assert hasattr(everything, "aoti_torch_cpu_anno_linear") and hasattr(everything, "aoti_torch_cpu_anno_attend")
    assert not hasattr(everything, "anno_linear_c")  # the op's own library
    assert not hasattr(everything, blas.find_openblas()[1][0])  # numpy's OpenBLAS, which it links


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
    """A compiled step runs 4 products a layer plus the lm_head through anno::anno_linear and each layer's
    attention through anno::anno_attend, called directly
    through its C shim (its record seen by the profiler at run time; the proxy executor is not used), and its
    logits equal the at::addmm-compiled step's."""
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
                logits[use] = engine.step([4], cache)
        calls[use] = [sum(e.name == f"anno::anno_{op}" for e in prof.events()) for op in ("linear", "attend")]
    assert calls == {True: [2 * 4 + 1, 2], False: [0, 0]}
    with zipfile.ZipFile(C.package_path(m, 1, 64, use_openblas=True)) as z:
        wrapper = "".join(z.read(n).decode() for n in z.namelist() if n.endswith("wrapper.cpp"))
    assert wrapper.count("aoti_torch_cpu_anno_linear(") == 2 * 4 + 1 + 1  # the calls and the declaration
    assert wrapper.count("aoti_torch_cpu_anno_attend(") == 2 + 1
    assert "aoti_torch_proxy_executor_call_function" not in wrapper
    torch.testing.assert_close(logits[True], logits[False], rtol=1e-5, atol=1e-5)


def test_step_runner_through_the_op_equals_the_loader_and_frees(op, monkeypatch):
    """A package run through anno::step_run (the call releases the GIL; engine/blas_package.h) gives the same
    logits and cache writes as AOTInductor's Python loader; models over RELEASE_GIL_BYTES take that path, small
    ones keep the loader; a freed runner's id is refused with a clear error."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine import step_package as SP

    torch.manual_seed(1)
    m = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=50)).eval()
    small = C.compile_runner(m, 1, 64, use_openblas=True)
    assert small._id is None  # 0.1 MB of weights: the loader, GIL held
    monkeypatch.setattr(SP, "RELEASE_GIL_BYTES", 0)
    big = C.compile_runner(m, 1, 64, use_openblas=True)
    assert big._id is not None
    caches, outs = [], []
    for runner in (small, big):
        cache = [torch.zeros(1, 2, 64, 16) for _ in range(4)]
        with torch.inference_mode():
            runner.run([torch.tensor([1, 2, 3]), torch.arange(3), torch.zeros(3, dtype=torch.long), torch.tensor([2]),
                        *cache])
            outs.append(runner.run([torch.tensor([4]), torch.tensor([3]), torch.tensor([0]), torch.tensor([0]), *cache])[0])
        caches.append(cache)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(*caches):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert a[0, :, 4:].abs().sum() == 0 and a[0, :, :4].abs().sum() > 0  # positions 0..3 written, no more
    gone = big._id
    del big, runner  # its last references
    with pytest.raises(RuntimeError, match="no loaded step package with id"):
        torch.ops.anno.step_run(gone, [torch.tensor([4])])


def _attention(q, kc, vc, slot, pos, scale):
    """The reference: each row's softmax attention over its slot's keys 0..pos, per head."""
    heads, hd = kc.shape[1], kc.shape[3]
    out = []
    for r in range(q.shape[0]):
        k, v = kc[slot[r], :, :pos[r] + 1], vc[slot[r], :, :pos[r] + 1]
        s = (q[r].view(heads, 1, hd) @ k.transpose(-1, -2)) * scale
        out.append((torch.softmax(s, dim=-1) @ v).reshape(heads * hd))
    return torch.stack(out)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("slots, heads, width, hd", [(8, 12, 128, 64), (4, 4, 256, 32), (3, 3, 16, 20),
                                                     (2, 2, 40, 72)])  # 64/32/8-wide blocks and the scalar tail
def test_attend_equals_reference(op, threads, slots, heads, width, hd):
    g = torch.Generator().manual_seed(slots * 100 + hd)
    kc, vc = torch.randn(slots, heads, width, hd, generator=g), torch.randn(slots, heads, width, hd, generator=g)
    qkv = torch.randn(6, 3 * heads * hd, generator=g)
    q = qkv[:, :heads * hd]  # a view with the qkv product's row stride, as in the compiled step
    slot = torch.tensor([0, slots - 1, 1, 0, slots - 1, 1])
    pos = torch.tensor([0, width - 1, 5, width // 2, 1, width - 2])
    kept = [t.clone() for t in (qkv, kc, vc)]
    got = blas.attend(q, kc, vc, slot, pos, hd ** -0.5, threads)
    assert got.shape == (6, heads * hd) and got.is_contiguous()
    torch.testing.assert_close(got, _attention(q, kc, vc, slot, pos, hd ** -0.5), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(kept, (qkv, kc, vc)))
    one = blas.attend(q[:0], kc, vc, slot[:0], pos[:0], 1.0, threads)
    assert one.shape == (0, heads * hd)


def test_attend_bad_inputs_get_clear_errors(op):
    kc, vc = torch.randn(2, 3, 16, 8), torch.randn(2, 3, 16, 8)
    q, slot, pos = torch.randn(2, 24), torch.tensor([0, 1]), torch.tensor([3, 15])
    with pytest.raises(RuntimeError, match=r"row 1 has slot 1 \(slots 2\) and pos 16 \(width 16\)"):
        blas.attend(q, kc, vc, slot, pos + 1, 1.0)
    with pytest.raises(RuntimeError, match="row 0 has slot 2"):
        blas.attend(q, kc, vc, slot + 2, pos, 1.0)
    with pytest.raises(RuntimeError, match=r"q must be \[rows, 24\]"):
        blas.attend(torch.randn(2, 20), kc, vc, slot, pos, 1.0)
    with pytest.raises(RuntimeError, match="contiguous"):
        blas.attend(q, kc.transpose(2, 3).contiguous().transpose(2, 3), vc, slot, pos, 1.0)
    with pytest.raises(RuntimeError, match="float32"):
        blas.attend(q.double(), kc.double(), vc.double(), slot, pos, 1.0)
    with pytest.raises(RuntimeError, match="int64"):
        blas.attend(q, kc, vc, slot.int(), pos, 1.0)
    with pytest.raises(RuntimeError, match="alike"):
        blas.attend(q, kc, vc[:1], slot, pos, 1.0)

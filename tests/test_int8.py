"""engine/int8.py and engine/blas.cpp's anno::anno_linear_q8: per-row int8 quantization gives known values;
the op's product equals F.linear on the dequantized weights (1-70 rows, so both its own kernel and its dense
path; 1-3 threads; with and without a bias; sizes with remainders) and never writes its inputs; the layer
gives the same result with the op and without it; bad inputs get errors naming the field; folders written by
the dynamic int8 that "int8-cpu" used to be load as the same int8 weights; an int8 model's compiled step
calls the op once per product and gives the lean step's and `model.generate`'s greedy ids."""
from __future__ import annotations

import json
import zipfile

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from engine import blas
from engine import compiled_step as C
from engine.int8 import Int8Linear, quantize_rows


@pytest.fixture(scope="module")
def op(blas_ops):
    return blas_ops.linear_q8


def test_quantize_rows_known_values():
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [-0.254, 0.127, 0.0, 0.001]])
    q, s = quantize_rows(w)
    assert q.dtype == torch.int8 and s.dtype == torch.float32
    # row 0: scale 2/127, 1 -> 63.5 -> 64 (round half to even), 0.5 -> 31.75 -> 32; an all-zero row: scale 1
    assert q.tolist() == [[64, -127, 32, 0], [0, 0, 0, 0], [-127, 64, 0, 0]]
    torch.testing.assert_close(s, torch.tensor([2 / 127, 1.0, 0.254 / 127]))
    err = (q.float() * s[:, None] - w).abs()
    assert bool((err <= s[:, None] / 2 + 1e-7).all())  # rounding error at most half a step


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 3, 8, 70])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n_in, n_out", [(96, 77), (203, 45), (768, 2304)])
def test_op_equals_dequantized_linear(op, threads, rows, bias, n_in, n_out):
    g = torch.Generator().manual_seed(rows * 10 + n_in + bias)
    x = torch.randn(rows, n_in, generator=g)
    w = torch.randint(-127, 128, (n_out, n_in), dtype=torch.int8, generator=g)
    s = torch.rand(n_out, generator=g) / 100
    b = torch.randn(n_out, generator=g) if bias else None
    kept = [t.clone() for t in (x, w, s, b) if t is not None]
    want = F.linear(x.double(), w.double() * s.double()[:, None], None if b is None else b.double()).float()
    got = op(x, w, s, b, threads)
    assert got.shape == (rows, n_out) and got.dtype == torch.float32 and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    for before, now in zip(kept, (t for t in (x, w, s, b) if t is not None)):
        assert torch.equal(before, now)


def test_layer_equals_its_reference_with_and_without_the_op(op, monkeypatch):
    torch.manual_seed(0)
    w, b = torch.randn(40, 24), torch.randn(40)
    layer = Int8Linear.from_float(w, b)
    x = torch.randn(2, 5, 24)
    want = F.linear(x, layer.dequantized(), b)
    torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(blas, "loaded", lambda: False)  # a machine where the op's library cannot be built
    torch.testing.assert_close(layer(x), want, rtol=1e-6, atol=1e-6)
    assert layer._fp32 is not None and "_fp32" not in layer.state_dict()
    layer.set(*quantize_rows(2 * w), b)  # new weights drop the fp32 copy
    torch.testing.assert_close(layer(x), F.linear(x, layer.dequantized(), b), rtol=1e-6, atol=1e-6)
    # the quantized product is close to the float one (per-row int8: ~0.5% here)
    assert ((want - F.linear(x, w, b)).norm() / F.linear(x, w, b).norm()).item() < 0.01


def test_bad_inputs_get_clear_errors(op):
    x, w, s = torch.randn(1, 8), torch.zeros(4, 8, dtype=torch.int8), torch.ones(4)
    with pytest.raises(RuntimeError, match="x must be float32 and w int8"):
        op(x, w.float(), s, None, 1)
    with pytest.raises(RuntimeError, match="x has 8 columns"):
        op(x, torch.zeros(4, 5, dtype=torch.int8), s, None, 1)
    with pytest.raises(RuntimeError, match=r"scale must be contiguous float32 \[4\]"):
        op(x, w, torch.ones(5), None, 1)
    with pytest.raises(RuntimeError, match=r"b must be contiguous float32 \[4\]"):
        op(x, w, s, torch.ones(3), 1)
    with pytest.raises(RuntimeError, match=r"threads must be in \[1, 1024\], got 0"):
        op(x, w, s, None, 0)
    layer = Int8Linear(8, 4)
    with pytest.raises(ValueError, match=r"weight: expected torch.int8 \[4, 8\], got torch.float32"):
        layer.set(torch.zeros(4, 8), s, torch.zeros(4))
    with pytest.raises(ValueError, match="scale: expected torch.float32"):
        layer.set(w, torch.ones(4, dtype=torch.float64), torch.zeros(4))
    with pytest.raises(ValueError, match="bias: this layer has one, got none"):
        layer.set(w, s, None)


def test_folder_of_the_former_dynamic_int8_loads_as_the_same_weights(tmp_path):
    """Before 2026-11-30 int8-cpu folders held PyTorch dynamic int8: float64 scales and an int64 zero point
    per channel (zero: symmetric). They load into the same int8 weights; a non-zero zero point is refused."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine.checkpoint import save_hf_model
    from engine.quantize import INT8_WEIGHTS, QUANT_FILE, QuantizeError, int8_cpu, load_any, save_int8_cpu

    torch.manual_seed(0)
    src = save_hf_model(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=32,
                                                   vocab_size=60)).eval(), tmp_path / "fp32")
    q = int8_cpu(__import__("engine.checkpoint", fromlist=["x"]).load_hf_model(src))
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.json").write_text((src / "config.json").read_text())
    save_int8_cpu(q, out)
    tensors = load_file(str(out / INT8_WEIGHTS))
    for k in [k for k in tensors if k.endswith(".scale")]:  # rewrite it as the dynamic int8 wrote it
        tensors[k] = tensors[k].double()
        tensors[k[:-len("scale")] + "zero_point"] = torch.zeros(tensors[k].shape, dtype=torch.int64)
    save_file(tensors, str(out / INT8_WEIGHTS))
    info = json.loads((out / QUANT_FILE).read_text())
    info["recipe"]["activations"] = "quint8, quantized per call (dynamic), reduce_range"
    (out / QUANT_FILE).write_text(json.dumps(info))
    r = load_any(out)
    ids = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        torch.testing.assert_close(r(ids).logits, q(ids).logits, rtol=0, atol=0)
    tensors["lm_head.zero_point"] = torch.ones_like(tensors["lm_head.zero_point"])
    save_file(tensors, str(out / INT8_WEIGHTS))
    with pytest.raises(QuantizeError, match="lm_head.zero_point is not all zero"):
        load_any(out)


def test_int8_compiled_step_calls_the_op_and_keeps_greedy_ids(op):
    """An int8 model's compiled step: 4 int8 products a layer plus the lm_head through anno::anno_linear_q8,
    called directly through its C shim; its greedy ids equal the lean (eager) step's and model.generate's."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from engine import generate as G
    from engine.fastpath import LeanGPT2
    from engine.quantize import int8_cpu

    torch.manual_seed(0)
    m = int8_cpu(GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=50)).eval())
    assert C.unsupported(m) is None
    engine = C.CompiledGPT2(m, wait=True)
    cfg = G.GenerationConfig(max_new_tokens=20, temperature=0.0)
    run = lambda e: list(G._decode(m, [1, 2, 3], cfg, None, G.logits_processors(cfg, ()), set(), e))  # noqa: E731
    compiled, lean = run(engine), run(LeanGPT2(m))
    with torch.no_grad():
        want = m.generate(torch.tensor([[1, 2, 3]]), do_sample=False, max_new_tokens=20, min_new_tokens=20,
                          pad_token_id=0)[0, 3:].tolist()
    assert compiled == lean == want
    assert list(engine.runners) == [(1, 64, torch.get_num_threads())]
    with torch.inference_mode(), torch.profiler.profile() as prof:
        cache = engine.new_cache(1, 64)
        engine.prefill([1, 2, 3], cache, 0)
        engine.step([4], cache)
    assert sum(e.name == "anno::anno_linear_q8" for e in prof.events()) == 2 * 4 * 2 + 1 + 1  # prefill + step
    with zipfile.ZipFile(C.package_path(m, 1, 64, use_openblas=True)) as z:
        wrapper = "".join(z.read(n).decode() for n in z.namelist() if n.endswith("wrapper.cpp"))
    assert wrapper.count("aoti_torch_cpu_anno_linear_q8(") == 2 * 4 + 1 + 1  # the calls and the declaration
    assert "aoti_torch_proxy_executor_call_function" not in wrapper

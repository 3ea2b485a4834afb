"""Quantized serving (engine/quantize.py): int8-cpu save/reload is bit-identical, folders hold no pickle and a
sane quantization.json, quantized models generate through engine.generate and the model cache, bitsandbytes
methods quantize/save/reload/generate on CPU, errors are clear; int8 perplexity within 2% of fp32 on the
trained demo model."""
import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch

import engine.quantize as qz
from engine.checkpoint import load_hf_model, save_hf_model
from engine.generate import Finished, GenerationConfig, generate_ids, stream
from engine.loading import ModelCache
from engine.model import build_model, model_config
from engine.quantize import QuantizeError, int8_cpu, load_any, quantize, save_int8_cpu
from engine.tokenizer import encode_prompt, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ("The king", "In the yeare of our Lord", "Cheapside market and the river")
TEXTS = ["The merchant and the widow went to the market by the river.",
         "Thou hath the silver, quoth the servant, and the church bell rang in winter."]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


# tiny models: with 2 threads and another job on one of the 2 cores, every op waits at a thread barrier
# (measured: greedy decoding of runs/tiny/model 4-12 tok/s instead of ~650)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def fast(monkeypatch):
    """quantize's speed figures on 8 tokens, one timed run: the tests check the fields, not the speed."""
    monkeypatch.setattr(qz, "SPEED_NEW_TOKENS", 8)
    monkeypatch.setattr(qz, "SPEED_REPEATS", 1)


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A random-init 2 x 64 GPT-2 (vocab 512, context 64) with the session's tokenizer, in Hub format."""
    torch.manual_seed(0)
    model = build_model(model_config("tiny", 512, n_layer=2, n_embd=64, n_head=2, n_ctx=64), 0, 0, 0)
    out = tmp_path_factory.mktemp("q") / "fp32"
    files = [tiny_tokenizer / f for f in ("tokenizer.json", "tokenizer_config.json")]
    return save_hf_model(model.eval(), out, extra_files=files)


def _greedy(model, tok, prompts=PROMPTS, n=12) -> list[list[int]]:
    cfg = GenerationConfig(max_new_tokens=n, temperature=0.0)
    return [list(generate_ids(model, encode_prompt(tok, p), cfg, eos_id=-1)) for p in prompts]


def _logits(model, tok) -> torch.Tensor:
    ids = torch.tensor([encode_prompt(tok, TEXTS[0] + " " + TEXTS[1])[:64]])
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


def _copy_config(src: Path, dst: Path) -> None:
    dst.mkdir()
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(src / f, dst / f)


def test_int8_reload_is_bit_identical(fp32_dir, tmp_path):
    tok = load_tokenizer(fp32_dir)
    q = int8_cpu(load_hf_model(fp32_dir))
    before_tokens, before_logits = _greedy(q, tok), _logits(q, tok)
    out = tmp_path / "int8"
    _copy_config(fp32_dir, out)
    recipe = save_int8_cpu(q, out)
    assert recipe["lm_head"] is qz.QUANTIZE_LM_HEAD and len(recipe["modules"]) == 2 * 4 + qz.QUANTIZE_LM_HEAD
    r = load_any(out)
    assert sorted(qz._quantized_modules(r)) == recipe["modules"]
    assert _greedy(r, tok) == before_tokens
    assert torch.equal(_logits(r, tok), before_logits)
    # the input embedding stays fp32 and equal to the source's
    assert torch.equal(r.transformer.wte.weight, load_hf_model(fp32_dir).transformer.wte.weight)


def test_int8_untied_lm_head_variant_reloads_tied(fp32_dir, tmp_path):
    tok = load_tokenizer(fp32_dir)
    q = int8_cpu(load_hf_model(fp32_dir), quantize_lm_head=False)
    out = tmp_path / "int8"
    _copy_config(fp32_dir, out)
    assert save_int8_cpu(q, out)["lm_head"] is False
    r = load_any(out)
    assert r.lm_head.weight.data_ptr() == r.transformer.wte.weight.data_ptr()
    assert torch.equal(_logits(r, tok), _logits(q, tok))


def test_int8_is_close_to_fp32(fp32_dir):
    tok = load_tokenizer(fp32_dir)
    f = _logits(load_hf_model(fp32_dir), tok)
    q = _logits(int8_cpu(load_hf_model(fp32_dir)), tok)
    # measured 0.79% on this random-init model (2.2% with the dynamic int8 it replaced); a missing transpose of
    # the square c_proj gives 39%
    assert 0 < ((q - f).norm() / f.norm()).item() < 0.03


def test_quantize_int8_folder(fp32_dir, tmp_path, fast):
    out = tmp_path / "int8"
    info = quantize(fp32_dir, "int8-cpu", out, TEXTS, log=lambda m: None)
    assert json.loads((out / qz.QUANT_FILE).read_text()) == info
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                            qz.INT8_WEIGHTS, qz.QUANT_FILE])
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    assert not [f for f in files if (out / f).read_bytes()[:1] == b"\x80"]  # pickle protocol 2+ opcode
    assert info["method"] == "int8-cpu" and info["format"] == qz.FORMAT
    disk, mem = info["weights_on_disk_bytes"], info["memory_bytes"]
    assert disk["quantized"] == (out / qz.INT8_WEIGHTS).stat().st_size
    assert disk["fp32"] == (fp32_dir / "model.safetensors").stat().st_size
    # fp32 (tied): 4 bytes per parameter. int8: block weights 1 byte instead of 4, an int8 copy of wte as
    # lm_head, a float32 scale per output row (blocks: 192+64+256+64 each, lm_head 512)
    n_block_w = 2 * (64 * 192 + 64 * 64 + 64 * 256 + 256 * 64)
    assert mem["fp32"] == 4 * sum(p.numel() for p in load_hf_model(fp32_dir).parameters())
    assert mem["quantized"] == mem["fp32"] - 3 * n_block_w + 512 * 64 + 4 * (2 * 576 + 512)
    sp = info["speed"]
    assert sp["tok_s"] > 0 and sp["fp32_tok_s"] > 0 and sp["new_tokens"] == 8 and sp["threads"] >= 1
    assert sp["ratio"] == pytest.approx(sp["tok_s"] / sp["fp32_tok_s"], rel=0.01)
    ppl = info["perplexity"]
    assert ppl["documents"] == 2 and ppl["tokens"] > 20 and 1 < ppl["fp32_ppl"] < 2 * 512
    assert abs(ppl["delta_pct"]) < 2


def test_quantized_folder_serves_through_cache_and_stream(fp32_dir, tmp_path, fast):
    out = tmp_path / "int8"
    quantize(fp32_dir, "int8-cpu", out, log=lambda m: None)
    item = ModelCache().get(out)
    assert qz._quantized_modules(item.model)
    events = list(stream(item.model, item.tokenizer, "The king", GenerationConfig(max_new_tokens=10, seed=1)))
    done = events[-1]
    assert isinstance(done, Finished) and 1 <= done.generated_tokens <= 10
    fp32 = ModelCache().get(fp32_dir).model  # fp32 folders still load as they are
    assert not qz._quantized_modules(fp32) and type(fp32.transformer.h[0].attn.c_attn).__name__ == "Conv1D"


def test_errors(fp32_dir, tmp_path, fast, monkeypatch):
    with pytest.raises(QuantizeError, match="method='int4'.*int8-cpu, bnb-int8, bnb-nf4"):
        quantize(fp32_dir, "int4", tmp_path / "x", log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        quantize(tmp_path / "missing", "int8-cpu", tmp_path / "x", log=lambda m: None)
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        load_any(tmp_path)
    monkeypatch.setattr(qz, "bnb_status", lambda: "bitsandbytes cannot be imported (ImportError: test)")
    with pytest.raises(QuantizeError, match="bnb-nf4.*needs bitsandbytes.*ImportError: test"):
        quantize(fp32_dir, "bnb-nf4", tmp_path / "x", log=lambda m: None)
    assert not (tmp_path / "x").exists()
    out = tmp_path / "int8"
    quantize(fp32_dir, "int8-cpu", out, log=lambda m: None)
    with pytest.raises(QuantizeError, match="already quantized"):
        quantize(out, "int8-cpu", tmp_path / "y", log=lambda m: None)
    info = json.loads((out / qz.QUANT_FILE).read_text())
    info["recipe"]["modules"] = info["recipe"]["modules"][:-1]
    (out / qz.QUANT_FILE).write_text(json.dumps(info))
    with pytest.raises(QuantizeError, match="lists 8 quantized modules but the model built from config.json has 9"):
        load_any(out)


def test_cli_quantize(fp32_dir, tmp_path, tiny_corpus, fast, capsys):
    from cli import main

    assert main(["quantize", "--model", str(fp32_dir), "--method", "int8-cpu", "--out", str(tmp_path / "q")]) == 2
    assert "--corpus is required" in capsys.readouterr().err
    rc = main(["quantize", "--model", str(fp32_dir), "--method", "int8-cpu", "--out", str(tmp_path / "q"),
               "--corpus", str(tiny_corpus), "--eval-docs", "3"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["perplexity"]["documents"] == 3


@pytest.mark.parametrize("method", ["bnb-int8", "bnb-nf4"])  # 2.1 s and 0.3 s on one thread of the shared CPU
def test_bnb_quantize_save_reload_generate(fp32_dir, tmp_path, fast, method):
    if reason := qz.bnb_status():
        pytest.skip(f"bitsandbytes has no backend here: {reason}")
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    out = tmp_path / method
    info = quantize(fp32_dir, method, out, TEXTS, log=lambda m: None)
    assert (out / "model.safetensors").is_file() and not [p for p in out.iterdir() if p.suffix in PICKLE_SUFFIXES]
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["load_in_8bit" if method == "bnb-int8" else "load_in_4bit"] is True
    assert info["weights_on_disk_bytes"]["quantized"] < info["weights_on_disk_bytes"]["fp32"]
    assert abs(info["perplexity"]["delta_pct"]) < 2
    r = load_any(out)
    layer = bnb.nn.Linear8bitLt if method == "bnb-int8" else bnb.nn.Linear4bit
    assert isinstance(r.transformer.h[0].attn.c_attn, layer)
    tok = load_tokenizer(out)
    # reloaded == quantized in memory by transformers from the fp32 folder (the folder was saved before any
    # forward pass, see quantize)
    qcfg = BitsAndBytesConfig(load_in_8bit=True) if method == "bnb-int8" else BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    fresh = AutoModelForCausalLM.from_pretrained(fp32_dir, quantization_config=qcfg, device_map="cpu").eval()
    assert torch.equal(_logits(r, tok), _logits(fresh, tok))
    assert _greedy(r, tok, n=6) == _greedy(fresh, tok, n=6)


@pytest.mark.slow
def test_int8_perplexity_within_2pct_on_trained_model(tmp_path, fast):
    """The demo model (`make demo`) on 20 validation documents of its corpus: measured +0.07%."""
    run, corpus = ROOT / "runs" / "tiny", ROOT / "data" / "corpus"
    if not (run / "model" / "model.safetensors").is_file() or not (corpus / "report.json").is_file():
        pytest.skip("needs the trained demo model runs/tiny and data/corpus: run `make demo` first")
    from engine.corpus_io import iter_documents

    texts = [d["text"] for d in itertools.islice(iter_documents(corpus, "validation"), 20)]
    ppl = quantize(run, "int8-cpu", tmp_path / "q", texts, log=lambda m: None)["perplexity"]
    assert ppl["documents"] == 20 and ppl["fp32_ppl"] < 1000  # trained: far below the vocabulary's 8000
    assert abs(ppl["delta_pct"]) <= 2


def test_bnb_status_keeps_the_hub_kernel_notice_out_of_the_log():
    """Importing bitsandbytes through bnb_status (what the app does at start) prints no advice to install a
    Hub kernel package (bitsandbytes' CPU backend logs it on AVX512-BF16 CPUs, then uses its own kernel); its
    other warnings still reach the log."""
    import subprocess
    import sys

    code = ("import logging; from engine.quantize import bnb_status; bnb_status(); "
            "logging.getLogger('bitsandbytes.backends.cpu.ops').warning('another notice')")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    assert "kernels-community" not in run.stderr and "another notice" in run.stderr

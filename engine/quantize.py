"""Quantized serving: turning a Hub-format fp32 GPT-2 folder into a quantized model folder, loading any model
folder (fp32 or quantized) back, and measuring what the quantization costs and buys.

Three methods (`METHODS`):
- "int8-cpu": weight-only int8 (engine/int8.py: int8 weights per output row, float32 activations) on the
  blocks' layers and the lm_head; until 2026-11-30 it was PyTorch's dynamic int8, whose folders still load.
  Saved as safetensors (int8 weights + scales + biases, fp32 for the rest) plus the recipe in
  quantization.json: no pickle. Reloading rebuilds the skeleton from config.json, quantizes it and sets the
  saved weights, so the reloaded model is bit-identical to the saved one.
- "bnb-int8" / "bnb-nf4": transformers' BitsAndBytesConfig (LLM.int8() / 4-bit NormalFloat), saved with
  save_pretrained (safetensors) and reloaded with from_pretrained from the saved quantization config. Meant
  for the GPU; bitsandbytes 0.50 also runs on CPU (nf4 through a bf16 AVX512 kernel, int8 through torch's
  _int_mm).

Greedy tok/s measured on the shared 2-core CPU (2 threads, 64 new tokens, models interleaved, quiet spells):
SLM shape (12x768, vocab 8000) fp32 38.8, int8-cpu (then dynamic int8) 83, bnb-int8 37.7, bnb-nf4 71;
runs/tiny/model (4x128) fp32 ~650, int8-cpu ~650, bnb-int8 ~255, bnb-nf4 ~465 -- at that size per-op overhead,
not weights, dominates. benchmarks/generate.py has the current int8-cpu figures.

Every quantized folder carries quantization.json: method, recipe, weight bytes on disk and in memory, greedy
tok/s and validation perplexity next to the fp32 model's, all measured in the same `quantize` call.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from engine import hugepages
from engine.atomic import write_json_atomic
from engine.checkpoint import TOKENIZER_FILES, atomic_dir, load_hf_model
from engine.generate import GenerationConfig, generate_ids, model_context
from engine.int8 import Int8Linear, op_ready
from engine.tokenizer import ANNO_FILE, EOT, encode_prompt, load_tokenizer

METHODS = ("int8-cpu", "bnb-int8", "bnb-nf4")
QUANT_FILE = "quantization.json"
FORMAT = "anno-quantization/1"
INT8_WEIGHTS = "model.int8.safetensors"  # not model.safetensors: a plain from_pretrained must fail, not half-load
# The lm_head (tied to wte; the input embedding stays fp32, so it becomes an int8 copy) is quantized. One token's
# lm_head on 2 threads, fastest of 400 runs, fp32 vs the dynamic int8 of the time (weight-only int8 reads the
# same bytes): d=768 V=8000 460 vs 216 us, d=768 V=32000
# 11.0 vs 1.9 ms (memory-bound: 98 MB of fp32 weights), d=128 V=8000 81 vs 75 us. Cost in quality, perplexity
# on 20 validation documents of runs/tiny/model (fp32 158.889): 159.004 (+0.072%) with it, 158.964 (+0.047%)
# without; cost in size: V*d bytes (+6 MB on SLM's 121 MB).
QUANTIZE_LM_HEAD = True
SPEED_PROMPT = "It was the yeare of our Lord 1665, and in the Citie of London the sicknesse"
SPEED_NEW_TOKENS = 64
# Fastest of 3: the 2 cores are shared with other jobs, and a 2-thread run while another job held a core was
# up to 100x slower (runs/tiny/model fp32: 4-12 vs ~650 tok/s); the fastest run is the least disturbed one.
SPEED_REPEATS = 3
_BLOCK_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_FOLDER_FILES = ("config.json", "generation_config.json", *TOKENIZER_FILES, ANNO_FILE)


class QuantizeError(ValueError):
    """A quantization that cannot be done (unknown method, no bitsandbytes backend, unusable folder)."""


def _check_method(method) -> None:
    if method not in METHODS:
        raise QuantizeError(f"method={method!r}: allowed {', '.join(METHODS)}")


# ---------------------------------------------------------------------------------------------- int8-cpu


def _to_int8(model: nn.Module, lm_head: bool) -> list[str]:
    """Replace GPT-2's Conv1D layers (x @ W + b, W [in, out]) by engine/int8.py's Int8Linear of the same
    product (W transposed, per output row int8); the lm_head too when lm_head (an int8 copy of the tied wte:
    the input embedding stays fp32). Returns the replaced modules' names."""
    from transformers.pytorch_utils import Conv1D

    names = []
    for i, block in enumerate(model.transformer.h):
        for path in _BLOCK_LINEARS:
            parent, attr = getattr(block, path.split(".")[0]), path.split(".")[1]
            conv = getattr(parent, attr)
            if not isinstance(conv, Conv1D):
                raise QuantizeError(f"transformer.h.{i}.{path} is {type(conv).__name__}, expected GPT-2's Conv1D")
            setattr(parent, attr, Int8Linear.from_float(conv.weight.t(), conv.bias))
            names.append(f"transformer.h.{i}.{path}")
    if lm_head:
        model.lm_head = Int8Linear.from_float(model.transformer.wte.weight, None)
        names.append("lm_head")
    return names


def int8_cpu(model: nn.Module, quantize_lm_head: bool = QUANTIZE_LM_HEAD) -> nn.Module:
    """Weight-only int8 (engine/int8.py) of an fp32 GPT2LMHeadModel, in place (the model is returned, eval
    mode): per-output-row symmetric int8 weights for every block layer (and the lm_head if quantize_lm_head);
    activations stay fp32. Loads the int8 op's library when built (op_ready)."""
    model.eval()
    _to_int8(model, quantize_lm_head)
    op_ready()
    return model


def _quantized_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, Int8Linear)}


def _int8_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors to save, recipe). Int8Linear `n` -> n.qweight (int8 [out, in]), n.scale (float32 [out]),
    n.bias (fp32); every other tensor as it is, the tied lm_head once (as wte)."""
    qmods = _quantized_modules(model)
    if not qmods:
        raise QuantizeError("model has no int8 layers: run int8_cpu(model) first")
    tensors = {}
    for name, mod in qmods.items():
        tensors[f"{name}.qweight"], tensors[f"{name}.scale"] = mod.weight, mod.scale
        if mod.bias is not None:
            tensors[f"{name}.bias"] = mod.bias
    prefixes, wte_ptr = tuple(f"{n}." for n in qmods), model.transformer.wte.weight.data_ptr()
    for k, v in model.state_dict().items():
        if isinstance(v, torch.Tensor) and not k.startswith(prefixes) and not (
                k == "lm_head.weight" and v.data_ptr() == wte_ptr):  # tied: re-tied when the skeleton is built
            tensors[k] = v.detach().contiguous()
    recipe = {"modules": sorted(qmods), "lm_head": "lm_head" in qmods, "weights": "int8, per output row, "
              "symmetric (absmax / 127)", "activations": "float32 (weight-only int8)", "torch": torch.__version__}
    return tensors, recipe


def save_int8_cpu(model: nn.Module, folder: str | Path) -> dict:
    """Write an int8_cpu model's INT8_WEIGHTS and a quantization.json holding its recipe into `folder`, which
    with the source's config.json (and tokenizer files) is then a folder load_any reads. Returns the recipe."""
    tensors, recipe = _int8_tensors(model)
    save_file(tensors, str(Path(folder) / INT8_WEIGHTS), metadata={"format": "pt", "anno": FORMAT})
    write_json_atomic(Path(folder) / QUANT_FILE, {"format": FORMAT, "method": "int8-cpu", "recipe": recipe})
    return recipe


def _load_int8_cpu(path: Path, recipe: dict) -> nn.Module:
    """The model of an int8-cpu folder. Folders written before 2026-11-30 (PyTorch dynamic int8: float64
    scales and zero points, all zero for its symmetric weights) load as the same int8 weights."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig as HFGenerationConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", trust_remote_code=False)
    if (path / "generation_config.json").is_file():
        model.generation_config = HFGenerationConfig.from_pretrained(path)
    int8_cpu(model, quantize_lm_head=bool(recipe["lm_head"]))  # the skeleton's int8 layers get replaced below
    tensors = load_file(str(path / INT8_WEIGHTS))
    qmods = _quantized_modules(model)
    if sorted(qmods) != sorted(recipe["modules"]):
        raise QuantizeError(f"{path}: {QUANT_FILE} lists {len(recipe['modules'])} quantized modules but the model "
                            f"built from config.json has {len(qmods)}: folder and config do not match")
    for name, mod in qmods.items():
        q, scale, zp = (tensors.pop(f"{name}.{s}", None) for s in ("qweight", "scale", "zero_point"))
        if q is None or scale is None:
            raise QuantizeError(f"{path}/{INT8_WEIGHTS}: {name}.qweight or {name}.scale is missing")
        if zp is not None and bool(zp.any()):
            raise QuantizeError(f"{path}/{INT8_WEIGHTS}: {name}.zero_point is not all zero (asymmetric int8 "
                                f"weights are not supported)")
        try:
            mod.set(q, scale.to(torch.float32), tensors.pop(f"{name}.bias", None))
        except ValueError as e:
            raise QuantizeError(f"{path}/{INT8_WEIGHTS}: {name}: {e}") from None
    # The rest goes in by name; the int8 layers' own buffers were set above.
    prefixes, tied = tuple(f"{n}." for n in qmods), "lm_head" not in qmods
    targets = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers())
    expected = {k for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)
                and not k.startswith(prefixes) and not (tied and k == "lm_head.weight")}
    if set(tensors) != expected:
        raise QuantizeError(f"{path}/{INT8_WEIGHTS}: missing tensors {sorted(expected - set(tensors))[:5]}, "
                            f"unexpected {sorted(set(tensors) - expected)[:5]}")
    with torch.no_grad():
        for k, v in tensors.items():
            targets[k].copy_(v)
    hugepages.rehome(model)  # the int8 weights and the fp32 rest, as load_hf_model does
    return model.eval()


# ---------------------------------------------------------------------------------------------- bitsandbytes


def _bnb_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _no_hub_kernel_notice(record: logging.LogRecord) -> bool:
    """bitsandbytes 0.50's CPU backend, on CPUs with AVX512-BF16, tries at import to fetch a 4-bit kernel from
    the Hub (kernels-community, through the `kernels` package) and logs a warning telling the user to install
    it when that fails; it then uses its own kernel. Anno never fetches code at import (an offline machine
    cannot, and code from the Hub is not run), so the notice, printed in every `make demo`, is dropped."""
    return "kernels-community" not in record.getMessage()


def bnb_status() -> str | None:
    """None when bitsandbytes can quantize on this machine's device (CUDA if present, else CPU); otherwise
    the reason it cannot."""
    device, step = _bnb_device(), "imported"
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_no_hub_kernel_notice)  # before its import
    try:  # ImportError, a broken native library raising at import, or no kernel for the device
        import bitsandbytes.functional as bf
        step = f"run on {device}"
        bf.quantize_4bit(torch.ones(64, 64, device=device), quant_type="nf4")
        bf.int8_vectorwise_quant(torch.ones(4, 64, dtype=torch.float16, device=device))
    except Exception as e:
        return f"bitsandbytes cannot be {step} ({type(e).__name__}: {e})"
    return None


def _not_cast_notice(record: logging.LogRecord) -> bool:
    """bitsandbytes logs 'MatMul8bitLt: inputs will be cast from torch.float32 to float16' on every int8
    matmul on CPU (48 times per token for a 12-layer model): said once in quantization.json instead."""
    return "inputs will be cast" not in record.getMessage()


def _bnb_config(method: str):
    from transformers import BitsAndBytesConfig

    # nf4 computes in fp32, the engine models' dtype (on CPU the fused 4-bit kernel still runs in bf16)
    return BitsAndBytesConfig(load_in_8bit=True) if method == "bnb-int8" else BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)


def _load_bnb(path: Path, method: str | None = None) -> nn.Module:
    """from_pretrained with the quantization config saved in config.json, or a fresh one for `method` when
    path is an fp32 folder to quantize."""
    from transformers import AutoModelForCausalLM

    if reason := bnb_status():
        raise QuantizeError(f"cannot use bitsandbytes for {method or 'this folder'}: {reason}")
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_not_cast_notice)  # once: same object
    extra = {} if method is None else {"quantization_config": _bnb_config(method)}
    model = AutoModelForCausalLM.from_pretrained(
        path, device_map=_bnb_device(), trust_remote_code=False, use_safetensors=True, attn_implementation="sdpa",
        **extra)
    return model.eval()


# ---------------------------------------------------------------------------------------------- measuring


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights a model holds in memory: parameters and buffers (tied ones once), bitsandbytes'
    scales (absmax / SCB); int8 layers' weights, scales and biases are buffers."""
    seen, total = set(), 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()

    for t in [*model.parameters(), *model.buffers()]:
        add(t)
        add(getattr(getattr(t, "quant_state", None), "absmax", None))
        add(getattr(t, "SCB", None))
    return total


def tokens_per_second(model: nn.Module, prompt: Sequence[int], new_tokens: int) -> float:
    """Greedy decoding speed of one run through generate_ids (KV cache): new_tokens ids, the end-of-text id
    not stopping it, prompt processing included. On CPU that is the default serving path, engine/fastpath.py's
    compiled or lean step, for fp32 and int8-cpu alike."""
    t0 = time.perf_counter()
    n = sum(1 for _ in generate_ids(model, prompt, GenerationConfig(max_new_tokens=new_tokens, temperature=0.0),
                                    eos_id=-1))
    return n / (time.perf_counter() - t0)


def _speeds(models: dict, prompt: Sequence[int], new_tokens: int) -> dict:
    """Fastest of SPEED_REPEATS runs per model after a warm-up, the models taking turns so that a disturbance
    from other jobs hits all of them alike."""
    for m in models.values():
        tokens_per_second(m, prompt, min(4, new_tokens))
    runs = [{k: tokens_per_second(m, prompt, new_tokens) for k, m in models.items()} for _ in range(SPEED_REPEATS)]
    return {k: max(r[k] for r in runs) for k in models}


@torch.no_grad()
def perplexity(model: nn.Module, tok, texts: Sequence[str]) -> dict:
    """Perplexity over one window per text: <|endoftext|> (what every training document follows) then the
    text's first tokens, n_positions + 1 tokens at most, every next token scored."""
    ctx, eot = model_context(model), tok.backend_tokenizer.token_to_id(EOT)
    eot = tok.eos_token_id if eot is None else eot
    nll, n, docs = 0.0, 0, 0
    for text in texts:
        ids = ([eot] + encode_prompt(tok, text))[:ctx + 1]
        if len(ids) < 2:
            continue
        x = torch.tensor([ids[:-1]], device=model.device)
        logits = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits[0].float()
        nll += F.cross_entropy(logits, torch.tensor(ids[1:], device=logits.device), reduction="sum").item()
        n, docs = n + len(ids) - 1, docs + 1
    if not n:
        raise QuantizeError("eval_texts gave no tokens to score (all empty)")
    return {"ppl": math.exp(nll / n), "documents": docs, "tokens": n}


def _measure(model, tok, eval_texts) -> dict:
    return {"weight_bytes": weight_bytes(model), **({"ppl": perplexity(model, tok, eval_texts)} if eval_texts else {})}


# ---------------------------------------------------------------------------------------------- API


def load_any(path: str | Path) -> nn.Module:
    """Load a model folder in eval mode: fp32 (no quantization.json) or any of METHODS."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"no model folder at {p} (config.json missing)")
    if not (p / QUANT_FILE).is_file():
        return load_hf_model(p)
    info = json.loads((p / QUANT_FILE).read_text(encoding="utf-8"))
    _check_method(info.get("method"))
    return _load_int8_cpu(p, info["recipe"]) if info["method"] == "int8-cpu" else _load_bnb(p)


def _bnb_recipe(model, method: str) -> dict:
    import bitsandbytes

    recipe = {"quantization_config": model.config.quantization_config.to_dict(), "device": _bnb_device(),
              "bitsandbytes": bitsandbytes.__version__,
              "not_quantized": "lm_head (tied to wte), embeddings, LayerNorms: transformers' bnb defaults"}
    if recipe["device"] == "cpu":  # what bitsandbytes 0.50.2's CPU backend does (backends/cpu/ops.py)
        recipe["cpu_note"] = {"bnb-int8": "int8 matmul inputs are cast to float16",
                              "bnb-nf4": "4-bit matmuls compute in bfloat16 on AVX512-bf16 CPUs"}[method]
    return recipe


def _report(method, recipe, src, base, quant, disk, speed) -> dict:
    info = {
        "format": FORMAT, "method": method, "source": str(src), "recipe": recipe,
        "weights_on_disk_bytes": {"quantized": disk[1], "fp32": disk[0]},
        "memory_bytes": {"quantized": quant["weight_bytes"], "fp32": base["weight_bytes"],
                         "measure": "weight bytes held in memory (parameters, buffers, packed/quantized weights "
                                    "and their scales), counted from the tensors; not process RSS"},
        "speed": {"tok_s": round(quant["tok_s"], 2), "fp32_tok_s": round(base["tok_s"], 2),
                  "ratio": round(quant["tok_s"] / base["tok_s"], 3), "prompt": SPEED_PROMPT,
                  "prompt_tokens": speed[0], "new_tokens": speed[1], "decoding": "greedy, KV cache",
                  "threads": torch.get_num_threads(), "device": recipe.get("device", "cpu"),
                  "load_average_1min": round(os.getloadavg()[0], 2)},  # other jobs on the CPU slow it down
        "perplexity": None,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    if "ppl" in base:
        q, b = quant["ppl"], base["ppl"]
        info["perplexity"] = {"ppl": round(q["ppl"], 4), "fp32_ppl": round(b["ppl"], 4), "documents": b["documents"],
                              "delta_pct": round(100 * (q["ppl"] / b["ppl"] - 1), 3), "tokens": b["tokens"],
                              "window": "<|endoftext|> + each text's first tokens, n_positions + 1 at most"}
    return info


def quantize(model_path: str | Path, method: str, out: str | Path, eval_texts: Sequence[str] = (),
             log: Callable[[str], None] = print) -> dict:
    """Quantize the fp32 model at model_path (a model or run folder) with `method` into the folder `out`
    (written atomically: config, tokenizer files, weights, quantization.json) and return quantization.json's
    content: the fp32 and quantized models' weight bytes, greedy tok/s (SPEED_PROMPT, SPEED_NEW_TOKENS new
    tokens) and, with eval_texts, perplexity."""
    from engine.loading import resolve_model_path

    _check_method(method)
    if not Path(model_path).is_dir():
        raise FileNotFoundError(f"model_path={str(model_path)!r}: no such folder (give a run folder or a model folder)")
    src = resolve_model_path(model_path)
    if (src / QUANT_FILE).is_file():
        raise QuantizeError(f"{src} is already quantized ({QUANT_FILE} present): quantize its fp32 source")
    if method != "int8-cpu" and (reason := bnb_status()):
        raise QuantizeError(f"method={method!r} needs bitsandbytes: {reason}")
    tok = load_tokenizer(src)
    # timed on the device the quantized model will run on: bitsandbytes' is CUDA when there is one
    fp32 = load_hf_model(src).to("cpu" if method == "int8-cpu" else _bnb_device())
    ctx, eval_texts = model_context(fp32), list(eval_texts)
    prompt = encode_prompt(tok, SPEED_PROMPT)[:max(1, ctx // 2)]  # small test contexts keep room to generate
    new_tokens = min(SPEED_NEW_TOKENS, ctx - len(prompt) + 1)
    log(f"fp32: perplexity on {len(eval_texts)} texts" if eval_texts else "fp32: no eval_texts, no perplexity")
    base = _measure(fp32, tok, eval_texts)
    with atomic_dir(out) as tmp:
        for f in (f for f in _FOLDER_FILES if (src / f).is_file()):
            shutil.copy2(src / f, tmp / f)
        if method == "int8-cpu":
            op_ready(build=True)  # its kernels, ~15 s once per machine; without a compiler, F.linear (fp32 speed)
            recipe = save_int8_cpu(int8_cpu(load_hf_model(src)), tmp)
        else:
            qmodel = _load_bnb(src, method)
            # Saved before any forward pass: on AVX512-bf16 CPUs bitsandbytes 0.50.2 repacks 4-bit weights at
            # the first forward and its state_dict inverse leaves absmax transposed, in bf16 -- measured: saved
            # after one forward, reloaded logits were off by up to 0.29; saved before it, bit-identical.
            qmodel.save_pretrained(tmp)
            recipe = _bnb_recipe(qmodel, method)
            del qmodel
            write_json_atomic(tmp / QUANT_FILE, {"format": FORMAT, "method": method, "recipe": recipe})
        log(f"{method}: saved; reloading it, measuring, timing {new_tokens} greedy tokens against fp32")
        quant = _measure(qmodel := load_any(tmp), tok, eval_texts)
        base["tok_s"], quant["tok_s"] = _speeds({0: fp32, 1: qmodel}, prompt, new_tokens).values()
        disk = [sum(f.stat().st_size for f in d.glob("*.safetensors")) for d in (src, tmp)]
        info = _report(method, recipe, src, base, quant, disk, (len(prompt), new_tokens))
        write_json_atomic(tmp / QUANT_FILE, info)
    ppl = info["perplexity"]
    log(f"{method}: {info['speed']['tok_s']} tok/s (fp32 {info['speed']['fp32_tok_s']})"
        + (f", perplexity {ppl['ppl']} (fp32 {ppl['fp32_ppl']}, {ppl['delta_pct']:+}%)" if ppl else ""))
    return info

"""Generation speed on CPU, every variant measured in the same run on the same prompt:

  (a) transformers `model.generate` fp32, greedy       (baseline)
  (b) Anno `stream` fp32, greedy
  (c) int8-cpu (PyTorch dynamic int8)
  (d) bnb-int8 and bnb-nf4 (bitsandbytes; its GPU path, here on its CPU backend)
  (e) 1 vs 4 concurrent streams through the continuous batcher (aggregate tok/s)
  and the memory-bandwidth bound: fp32 weight bytes read per token / copy bandwidth measured now.

Shapes: "slm" (12x768, ctx 1024, vocab 8000, random init) and the trained demo model runs/tiny/model when
present. TTFT = time to the first token; TPOT = (total - TTFT) / (new tokens - 1); median of --repeats.
The last line printed is one JSON object; its `ratios` are for the slm shape.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine.batching import Batcher  # noqa: E402
from engine.checkpoint import load_hf_model, save_hf_model  # noqa: E402
from engine.generate import GenerationConfig, TextDelta, stream  # noqa: E402
from engine.model import build_model, model_config  # noqa: E402
from engine.tokenizer import load_tokenizer  # noqa: E402

PROMPT = "It was the yeare of our Lord 1665, and in the Citie of London the sicknesse grew"


def _median(xs):
    return statistics.median(xs)


def time_hf(model, ids: list[int], n: int, repeats: int) -> dict:
    x = torch.tensor([ids])
    kw = dict(do_sample=False, pad_token_id=model.config.eos_token_id, eos_token_id=None)
    ttft, total = [], []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            model.generate(x, max_new_tokens=1, min_new_tokens=1, **kw)
            ttft.append(time.perf_counter() - t)
            t = time.perf_counter()
            model.generate(x, max_new_tokens=n, min_new_tokens=n, **kw)
            total.append(time.perf_counter() - t)
    return _figures(_median(ttft), _median(total), n)


def time_stream(model, tok, n: int, repeats: int) -> dict:
    cfg = GenerationConfig(max_new_tokens=n, temperature=0, top_k=0, top_p=1.0)
    ttft, total, count = [], [], n
    for _ in range(repeats):
        t, first = time.perf_counter(), None
        for ev in stream(model, tok, PROMPT, cfg):
            if first is None and isinstance(ev, TextDelta):
                first = time.perf_counter() - t
            count = getattr(ev, "generated_tokens", count)
        total.append(time.perf_counter() - t)
        ttft.append(first)
    return _figures(_median(ttft), _median(total), count)


def _figures(ttft: float, total: float, n: int) -> dict:
    return {"ttft_ms": round(ttft * 1e3, 2), "tpot_ms": round((total - ttft) / max(n - 1, 1) * 1e3, 3),
            "tok_per_s": round(n / total, 2), "new_tokens": n}


def concurrent(model, tok, n: int, streams: int) -> dict:
    cfg = GenerationConfig(max_new_tokens=n, temperature=0, top_k=0, top_p=1.0)
    prompts = [PROMPT, "The King came to Whitehall and", "In the Citie there was great", "Upon the Thames the"]
    with Batcher(model, tok, max_batch=8) as b:
        list(b.submit(PROMPT, cfg))  # warm-up
        t = time.perf_counter()
        outs = [b.submit(prompts[i % 4], cfg) for i in range(streams)]
        done = []
        threads = [threading.Thread(target=lambda o=o: done.append(list(o)[-1].generated_tokens)) for o in outs]
        [th.start() for th in threads]
        [th.join() for th in threads]
        dt = time.perf_counter() - t
    return {"streams": streams, "tokens": sum(done), "seconds": round(dt, 3), "aggregate_tok_per_s": round(sum(done) / dt, 2)}


def copy_bandwidth(mb: int = 256, repeats: int = 5) -> float:
    """Bytes per second read+written by a large tensor copy (the STREAM 'copy' convention)."""
    a = torch.ones(mb * (1 << 20) // 4)
    b = torch.empty_like(a)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        b.copy_(a)
        times.append(time.perf_counter() - t)
    return 2 * a.numel() * 4 / min(times)


def weight_bytes(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def quantized(model_dir: Path, method: str):
    from engine.quantize import load_any, quantize

    with tempfile.TemporaryDirectory() as d:
        quantize(model_dir, method, Path(d) / method, eval_texts=(), log=lambda m: None)
        return load_any(Path(d) / method)


def bench_shape(name: str, model_dir: Path, n: int, repeats: int, bandwidth: float) -> dict:
    tok = load_tokenizer(model_dir)
    model = load_hf_model(model_dir)
    ids = tok.backend_tokenizer.encode(PROMPT, add_special_tokens=False).ids
    out = {"shape": name, "params": sum(p.numel() for p in model.parameters())}
    out["hf_generate_fp32"] = time_hf(model, ids, n, repeats)
    out["anno_stream_fp32"] = time_stream(model, tok, n, repeats)
    for method in ("int8-cpu", "bnb-int8", "bnb-nf4"):
        try:
            q = quantized(model_dir, method)
            out[method] = time_stream(q, tok, n, repeats)
        except Exception as e:  # a backend that cannot run here is reported, not hidden
            out[method] = {"error": f"{type(e).__name__}: {e}"}
    out["concurrent_1"] = concurrent(model, tok, n, 1)
    out["concurrent_4"] = concurrent(model, tok, n, 4)
    wb = weight_bytes(model)
    out["bandwidth"] = {"weight_bytes_per_token": wb, "copy_bytes_per_s": round(bandwidth),
                        "bound_tok_per_s": round(bandwidth / wb, 2)}
    hf, st = out["hf_generate_fp32"], out["anno_stream_fp32"]
    out["ratios"] = {
        "stream_tpot_vs_hf": round(st["tpot_ms"] / hf["tpot_ms"], 3),
        "int8_cpu_vs_hf": round(out["int8-cpu"].get("tok_per_s", 0) / hf["tok_per_s"], 3),
        "c4_vs_c1": round(out["concurrent_4"]["aggregate_tok_per_s"] / out["concurrent_1"]["aggregate_tok_per_s"], 3),
        "fp32_vs_bandwidth_bound": round(st["tok_per_s"] / out["bandwidth"]["bound_tok_per_s"], 3),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiny", default=str(ROOT / "runs/tiny/model"))
    args = ap.parse_args()
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    results = {"benchmark": "generate", "cpus": os.cpu_count(), "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as d:
        tok_dir = Path(args.tiny)
        if not (tok_dir / "tokenizer.json").exists():
            sys.exit(f"need a tokenizer: {tok_dir} (run `make model` first, or pass --tiny)")
        tok = load_tokenizer(tok_dir)
        slm = build_model(model_config("slm", len(tok)), 0, 0, 0)
        save_hf_model(slm, Path(d) / "slm", extra_files=[tok_dir / f for f in ("tokenizer.json", "tokenizer_config.json")])
        del slm
        results["slm"] = bench_shape("slm 12x768 random init", Path(d) / "slm", args.new_tokens, args.repeats, bandwidth)
        print(json.dumps(results["slm"]), flush=True)
        results["tiny"] = bench_shape("tiny (trained)", tok_dir, args.new_tokens, args.repeats, bandwidth)
        print(json.dumps(results["tiny"]), flush=True)
    results["ratios"] = results["slm"]["ratios"]
    print(json.dumps(results))


if __name__ == "__main__":
    main()

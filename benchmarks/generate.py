"""Generation speed on CPU, every variant measured in the same run, on the same prompt ids, alternating
variants within each round (so a noisy neighbour slows them all alike), medians over rounds. Each variant
runs in its own worker process (see `alternate`: libraries loaded by one, CTranslate2's OpenMP runtime
above all, slowed the others by up to a quarter when they shared a process):

  hf          transformers `model.generate` fp32, greedy                          (baseline)
  stream      Anno `stream` fp32, greedy: the default path (engine/compiled_step.py's compiled step, whose
              packages are built first and timed, where it compiles the model; else engine/fastpath.py's)
  stream_proc the same `stream` with one Python logits processor (what the time lock adds per token: its
              call, the id history's view, a torch op); it bans the end of text instead of min_new_tokens
  lean        (where the step compiles) the same `stream` with the compiled step turned off
  aten_mm     (where the step uses engine/blas.py's op) the same `stream` on a compiled step whose matrix
              products are at::addmm (MKL), as before that op (its packages built first too)
  ob_gemv     (where the op has its own one-row kernels) the same `stream` and packages, with the op's
              one-row products on OpenBLAS's sgemv and its thread pool instead (blas.gemv_kernel(False))
  ids_model   Anno `generate_ids(fast=False)`: the same loop over the model's own forward
  int8        Anno `stream` on the int8-cpu model (engine/int8.py's weight-only int8; the compiled step, whose
              packages are built first, where the op builds; else the lean step)
  ct2_fp32 / ct2_int8   CTranslate2 4.8.5 Generator, float32 / int8, greedy (skipped, with the reason,
              when ctranslate2 is not installed: `pip install ctranslate2==4.8.5`)
  ct2_float32_b4  CTranslate2 float32 given the 4 prompts of the concurrent runs as one batch (its best case
              for 4 users: one static batch, no arrivals); its aggregate tok/s is the peer's figure beside
              Anno's 4 concurrent streams (ratios `ct2_b4_vs_b1`, `c4_vs_ct2_b4`)
  and once each: bnb-int8 / bnb-nf4 (bitsandbytes' CPU backend) and the memory-bandwidth bound (fp32 weight
  bytes per token / copy bandwidth); 1 vs 4 concurrent streams through the Batcher (aggregate tok/s),
  alternated over the rounds, medians.

Every variant is forced to write exactly --new-tokens tokens, each through its own means of banning the end of
text (min_new_tokens for generate and Anno's stream, min_length for CTranslate2, a logits processor for
stream_proc; ids_model has no end id), and its greedy ids are compared with `generate`'s (`same_tokens`).
TTFT = median time of a 1-token run; TPOT = (median total - TTFT) / (new tokens - 1).
Shapes: "slm" (12x768, ctx 1024, vocab 8000, random init) and the trained demo model runs/tiny/model (or,
when absent, a random-init 4x128 with the same vocabulary). The last line printed is one JSON object whose
`ratios` are the slm shape's.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import LogitsProcessor  # noqa: E402

from engine import blas, compiled_step  # noqa: E402
from engine.batching import Batcher  # noqa: E402
from engine.serving import MAX_BATCH  # noqa: E402
from engine.checkpoint import load_hf_model, save_hf_model  # noqa: E402
from engine.generate import GenerationConfig, generate_ids, stream  # noqa: E402
from engine.quantize import int8_cpu, perplexity  # noqa: E402
from engine.model import build_model, model_config  # noqa: E402
from engine.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer  # noqa: E402

PROMPT = "It was the yeare of our Lord 1665, and in the Citie of London the sicknesse grew"
GREEDY = dict(temperature=0, top_k=0, top_p=1.0)
# int8's perplexity change, next to fp32's on the same texts (period prose; on a random-init shape it still
# measures how far int8 moves the model's predictions)
PPL_TEXTS = [PROMPT + " in every parish, and the Lord Mayor ordered the houses to be shut up.",
             "Upon the Thames the watermen plied their boats from Westminster to the Bridge, and the merchants "
             "of the Exchange sent their goods by water.",
             "The King came to Whitehall and the Parliament sat, while in the Citie there was great talk of the "
             "war with the Dutch and of the price of bread."]
# Before each timed call, so the threads a variant leaves spinning (OpenBLAS's pool spins ~2^28 cycles, ~0.1 s,
# after its last call; libgomp's a little) have gone to sleep and do not take a core from the next variant.
PAUSE_S = 0.3
# The 4 prompts of the concurrent runs (Anno's batcher) and of CTranslate2's batch of 4.
BATCH_PROMPTS = [PROMPT, "The King came to Whitehall and", "In the Citie there was great", "Upon the Thames the"]
ROWS = {"ct2_float32_b4": 4}  # rows a variant generates per call (its tok/s counts every row's tokens)


class NoEnd(LogitsProcessor):
    """Bans the end-of-text id (the stream_proc variant: min_new_tokens done as a caller's processor)."""

    def __init__(self, eot: int):
        self.eot, self.index = eot, torch.tensor([eot])  # made once: a new tensor a token cost ~5 us

    def __call__(self, input_ids, scores):
        return scores.index_fill(1, self.index, float("-inf"))


def convert_ct2(model_dir: Path, out: Path, vocab: int) -> str | None:
    """Convert the model for CTranslate2 (float32 and int8) into out; None, or why not. The vocabulary is
    synthetic ("<id>"), so prompts go in as ids and any model (and tokenizer) converts."""
    try:
        from ctranslate2.converters import TransformersConverter
    except ImportError as e:
        return f"ctranslate2 not installed ({e}); pip install ctranslate2==4.8.5 for these rows"

    class Vocab:
        bos_token = eos_token = unk_token = "<0>"

        def get_vocab(self):
            return {f"<{i}>": i for i in range(vocab)}

    class Converter(TransformersConverter):
        def load_tokenizer(self, *args, **kwargs):
            return Vocab()

    for ct in ("float32", "int8"):
        Converter(str(model_dir)).convert(str(out / ct), quantization=ct, force=True)
    return None


def _call(conn, fn, args) -> None:
    conn.send(fn(*args))


def in_child(fn, *args):
    """fn(*args) in a fresh (spawned) process; its result."""
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    proc = ctx.Process(target=_call, args=(theirs, fn, args))
    proc.start()
    try:
        return mine.recv()
    finally:
        proc.join()


def variant(name: str, model_dir: Path, ct2_dir: Path):
    """run(n) -> the n new ids, for one variant, built in the process that runs it."""
    tok = load_tokenizer(model_dir)
    ids = tok.backend_tokenizer.encode(PROMPT, add_special_tokens=False).ids
    eot = tok.backend_tokenizer.token_to_id("<|endoftext|>")
    eot = eot if eot is not None else 0
    if name.startswith("ct2_"):
        import ctranslate2

        ct = name[4:].removesuffix("_b4")
        gen = ctranslate2.Generator(str(ct2_dir / ct), device="cpu", compute_type=ct,
                                    intra_threads=torch.get_num_threads(), inter_threads=1)

        prompts = [ids]
        if name.endswith("_b4"):
            prompts = [tok.backend_tokenizer.encode(p, add_special_tokens=False).ids for p in BATCH_PROMPTS]

        def ct2(n):
            r = gen.generate_batch([[f"<{i}>" for i in p] for p in prompts], max_length=n, min_length=n,
                                   sampling_topk=1, include_prompt_in_result=False, end_token=f"<{eot}>")
            return r[0].sequences_ids[0]  # the first prompt is PROMPT: compared with generate's ids
        return ct2
    model = quantized(model_dir, "int8-cpu") if name == "int8" else load_hf_model(model_dir)
    if name == "lean":
        compiled_step.MAX_WEIGHTS = 0  # engine_for: too large, so the lean step
    if name == "aten_mm":
        compiled_step.openblas = lambda build=False: False  # compiled, with at::addmm (packages built first)
    if name == "ob_gemv" and compiled_step.openblas():  # loads the op's library
        blas.gemv_kernel(False)

    def hf(n):
        x = torch.tensor([ids])
        with torch.inference_mode():
            out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
                                 min_new_tokens=n, pad_token_id=eot, eos_token_id=eot)
        return out[0, len(ids):].tolist()

    def streamed(n):
        if name == "stream_proc":
            cfg, procs = GenerationConfig(max_new_tokens=n, **GREEDY), [NoEnd(eot)]
        else:
            cfg, procs = GenerationConfig(max_new_tokens=n, min_new_tokens=n, **GREEDY), []
        return list(list(stream(model, tok, PROMPT, cfg, processors=procs))[-1].generated_ids)

    def ids_model(n):
        return list(generate_ids(model, ids, GenerationConfig(max_new_tokens=n, **GREEDY), eos_id=-1, fast=False))

    return {"hf": hf, "ids_model": ids_model}.get(name, streamed)


def _serve(conn, name: str, model_dir: str, ct2_dir: str, threads: int) -> None:
    """A variant's worker process: build it, then answer each n with (seconds, ids) until None."""
    torch.set_num_threads(threads)
    run = variant(name, Path(model_dir), Path(ct2_dir))
    conn.send("ready")
    while (n := conn.recv()) is not None:
        t = time.perf_counter()
        got = run(n)
        conn.send((time.perf_counter() - t, list(got)))


def alternate(names: list[str], model_dir: Path, ct2_dir: Path, n: int, rounds: int) -> dict:
    """Each variant runs in its own process, so no library one loads changes another's speed (measured
    2026-11-30: in one process, after CTranslate2 -- which brings its own OpenMP runtime -- had run once, the
    compiled step's 12x768 speed fell from 45.2 to 34.6-38.6 tok/s and stayed there; after the int8 model
    had run, 52.8 -> 41.8). Each round asks every variant, in turn, for 1 token and then n (timed inside
    the worker, so the pipe is not counted), after a pause of PAUSE_S; medians over rounds."""
    ctx = multiprocessing.get_context("spawn")
    workers = {}
    for name in names:
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(theirs, name, str(model_dir), str(ct2_dir), torch.get_num_threads()),
                           daemon=True)
        proc.start()
        workers[name] = (proc, mine)
    try:
        for name, (_, conn) in workers.items():
            if conn.recv() != "ready":
                raise RuntimeError(f"variant {name} did not start")
        ids, ttft, total = {}, {k: [] for k in names}, {k: [] for k in names}
        for name, (_, conn) in workers.items():  # warm-up (first-call allocations, lazy init), not timed
            conn.send(n)
            ids[name] = conn.recv()[1]
        for _ in range(rounds):
            for name, (_, conn) in workers.items():
                time.sleep(PAUSE_S)
                conn.send(1)
                ttft[name].append(conn.recv()[0])
                conn.send(n)
                total[name].append(conn.recv()[0])
    finally:
        for proc, conn in workers.values():
            try:
                conn.send(None)
            except OSError:
                pass
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    res = {}
    for name in names:
        f, tot = statistics.median(ttft[name]), statistics.median(total[name])
        res[name] = {"ttft_ms": round(f * 1e3, 2), "tpot_ms": round((tot - f) / max(n - 1, 1) * 1e3, 3),
                     "tok_per_s": round(ROWS.get(name, 1) * n / tot, 2),
                     "tok_per_s_rounds": [round(ROWS.get(name, 1) * n / t, 1) for t in total[name]],
                     "same_tokens": sum(a == b for a, b in zip(ids[name], ids["hf"])), "new_tokens": n}
    return res


def concurrent(model, tok, n: int, streams: int) -> dict:
    cfg = GenerationConfig(max_new_tokens=n, min_new_tokens=n, **GREEDY)
    prompts = BATCH_PROMPTS
    with Batcher(model, tok, max_batch=MAX_BATCH) as b:
        list(b.submit(PROMPT, cfg))  # warm-up
        t = time.perf_counter()
        outs = [b.submit(prompts[i % 4], cfg) for i in range(streams)]
        done = []
        threads = [threading.Thread(target=lambda o=o: done.append(list(o)[-1].generated_tokens)) for o in outs]
        [th.start() for th in threads]
        [th.join() for th in threads]
        dt = time.perf_counter() - t
        fast = b.fast
    return {"streams": streams, "tokens": sum(done), "seconds": round(dt, 3),
            "aggregate_tok_per_s": round(sum(done) / dt, 2), "lean_path": fast}


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


def bench_shape(name: str, model_dir: Path, n: int, rounds: int, bandwidth: float, bnb: bool) -> dict:
    tok = load_tokenizer(model_dir)
    model = load_hf_model(model_dir)
    ids = tok.backend_tokenizer.encode(PROMPT, add_special_tokens=False).ids
    out = {"shape": name, "params": sum(p.numel() for p in model.parameters()), "prompt_tokens": len(ids),
           "threads": torch.get_num_threads()}
    if (why := compiled_step.unsupported(model)) is None:  # the default path for it: build its packages first
        shapes, batch = [], compiled_step.batch_shape(model, MAX_BATCH)  # the ones this benchmark runs
        use_op = compiled_step.openblas(build=True)
        # the n-token runs' width and the 1-token (TTFT) runs' width: the app builds every width (cli.py
        # compile-step), and a missing one would time the eager prefill instead (until 2026-11-30 the TTFT runs
        # did: their 64-wide cache had no package)
        ctx = model.config.n_positions
        widths = sorted({compiled_step.width_for(len(ids) + n - 1, ctx), compiled_step.width_for(len(ids), ctx)})
        q8 = int8_cpu(load_hf_model(model_dir))  # the int8 variant's packages (its layers are int8)
        several = [batch] if batch else [(MAX_BATCH, w) for w in widths]  # the batcher's (compiled_step.serving_shapes)
        todo = [(model, 1, w, use_op) for w in widths] + [(model, *shape, use_op) for shape in several]
        todo += [(model, 1, w, False) for w in widths] if use_op else []  # the aten_mm variant's
        todo += [(q8, 1, w, True) for w in widths] if use_op and compiled_step.unsupported(q8) is None else []
        for m, slots, width, use in todo:
            t = time.perf_counter()
            built = not compiled_step.package_path(m, slots, width, use).is_file()
            compiled_step.compile_runner(m, slots, width, use)
            shapes.append({"slots": slots, "width": width, "openblas": use, "built": built,
                           "seconds": round(time.perf_counter() - t, 1), **({"int8": True} if m is q8 else {})})
        out["compiled_step"] = {"openblas": use_op, "own_gemv": use_op and blas.gemv_kernel() == "own",
                                "shapes": shapes}
    else:
        out["compiled_step"] = {"not_used": why}
    names = ["hf", "stream", "stream_proc", "ids_model", "int8"]
    if why is None:
        names += ["lean"] + (["aten_mm"] if out["compiled_step"]["openblas"] else [])
        names += ["ob_gemv"] if out["compiled_step"]["own_gemv"] else []
    with tempfile.TemporaryDirectory() as d:
        err = in_child(convert_ct2, model_dir, Path(d), model.config.vocab_size)  # CTranslate2 never loads here
        if err:
            out["ct2"] = err
        else:
            names += ["ct2_float32", "ct2_int8", "ct2_float32_b4"]
        out.update(alternate(names, model_dir, Path(d), n, rounds))
    for method in ("bnb-int8", "bnb-nf4") if bnb else ():
        try:
            q = quantized(model_dir, method)
            cfg = GenerationConfig(max_new_tokens=n, **GREEDY)
            t = time.perf_counter()
            k = list(stream(q, tok, PROMPT, cfg))[-1].generated_tokens
            out[method] = {"tok_per_s": round(k / (time.perf_counter() - t), 2)}
        except Exception as e:  # a backend that cannot run here is reported, not hidden
            out[method] = {"error": f"{type(e).__name__}: {e}"}
    q8 = int8_cpu(load_hf_model(model_dir))
    fp, qp = (perplexity(m, tok, PPL_TEXTS)["ppl"] for m in (model, q8))
    out["int8_perplexity"] = {"fp32": round(fp, 4), "int8": round(qp, 4), "delta_pct": round(100 * (qp / fp - 1), 3),
                              "texts": len(PPL_TEXTS)}
    runs = {1: [], 4: []}  # alternated over rounds, medians: one run each moved 47-94 tok/s for 1 stream (12x768)
    for _ in range(rounds):
        for streams in runs:
            time.sleep(PAUSE_S)
            runs[streams].append(concurrent(model, tok, n, streams))
    for streams, got in runs.items():
        mid = sorted(got, key=lambda r: r["aggregate_tok_per_s"])[len(got) // 2]
        out[f"concurrent_{streams}"] = {**mid, "aggregate_tok_per_s_rounds": [r["aggregate_tok_per_s"] for r in got]}
    wb = weight_bytes(model)
    out["bandwidth"] = {"weight_bytes_per_token": wb, "copy_bytes_per_s": round(bandwidth),
                        "bound_tok_per_s": round(bandwidth / wb, 2)}
    hf, st, q8 = out["hf"], out["stream"], out["int8"]

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    out["ratios"] = {
        "fp32_vs_ct2_fp32": ratio(st["tok_per_s"], out.get("ct2_float32", {}).get("tok_per_s")),
        "int8_vs_ct2_int8": ratio(q8["tok_per_s"], out.get("ct2_int8", {}).get("tok_per_s")),
        "int8_perplexity_change_pct": out["int8_perplexity"]["delta_pct"],
        "c4_vs_c1": ratio(out["concurrent_4"]["aggregate_tok_per_s"], out["concurrent_1"]["aggregate_tok_per_s"]),
        # the peer's own 4-vs-1 on the same model (a static batch of 4 against one prompt), and Anno's 4
        # concurrent streams against that batch: what 4 users can get here, not only Anno's own scaling
        "ct2_b4_vs_b1": ratio(out.get("ct2_float32_b4", {}).get("tok_per_s"),
                              out.get("ct2_float32", {}).get("tok_per_s")),
        "c4_vs_ct2_b4": ratio(out["concurrent_4"]["aggregate_tok_per_s"],
                              out.get("ct2_float32_b4", {}).get("tok_per_s")),
        "stream_tpot_vs_hf": ratio(st["tpot_ms"], hf["tpot_ms"]),
        "fp32_vs_bandwidth_bound": ratio(st["tok_per_s"], out["bandwidth"]["bound_tok_per_s"]),
        "stream_vs_hf": ratio(st["tok_per_s"], hf["tok_per_s"]),
        "stream_proc_vs_stream": ratio(out["stream_proc"]["tok_per_s"], st["tok_per_s"]),
        "lean_vs_model_forward": ratio(out.get("lean", st)["tok_per_s"], out["ids_model"]["tok_per_s"]),
        "int8_vs_hf": ratio(q8["tok_per_s"], hf["tok_per_s"]),
        "compiled_vs_lean": ratio(st["tok_per_s"], out.get("lean", {}).get("tok_per_s")),
        "openblas_vs_aten_mm": ratio(st["tok_per_s"], out.get("aten_mm", {}).get("tok_per_s")),
        "own_gemv_vs_openblas_gemv": ratio(st["tok_per_s"], out.get("ob_gemv", {}).get("tok_per_s")),
    }
    return out


def tokenizer_dir(tiny: Path, work: Path) -> tuple[Path, str]:
    """A tokenizer folder: the demo model's, else runs/tok8k, else one trained here on generated text."""
    for d in (tiny, ROOT / "runs" / "tok8k"):
        if (d / "tokenizer.json").exists():
            return d, str(d)
    rng = random.Random(0)
    words = ("the and of to that is it with for was his he be not by but which this they shall will from have "
             "king towne church bread wine horse cloth silver market sermon law house street river bridge ship "
             "merchant widow servant letter money plague fire winter summer harvest parish court London").split()
    texts = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(200)]
    out = work / "tok"
    train_tokenizer(texts, TokenizerConfig(vocab_size=600), out)
    return out, "trained here on generated text (no runs/tiny/model or runs/tok8k)"


def random_model(preset: str, tok_dir: Path, out: Path, vocab: int) -> Path:
    model = build_model(model_config(preset, vocab), 0, 0, 0)
    return save_hf_model(model, out, extra_files=[tok_dir / f for f in ("tokenizer.json", "tokenizer_config.json")])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiny", default=str(ROOT / "runs/tiny/model"))
    ap.add_argument("--no-bnb", action="store_true", help="skip the bitsandbytes rows (slow on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch (and CTranslate2) threads; default torch's")
    ap.add_argument("--shapes", nargs="+", choices=("slm", "tiny"), default=["slm", "tiny"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bandwidth = copy_bandwidth()
    results = {"benchmark": "generate", "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
               "load_average_1min_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as d:
        tok_dir, results["tokenizer"] = tokenizer_dir(Path(args.tiny), Path(d))
        vocab = max(8000, len(load_tokenizer(tok_dir)))
        if "slm" in args.shapes:
            slm = random_model("slm", tok_dir, Path(d) / "slm", vocab)
            results["slm"] = bench_shape("slm 12x768 random init", slm, args.new_tokens, args.rounds, bandwidth,
                                         not args.no_bnb)
            print(json.dumps(results["slm"]), flush=True)
        if "tiny" in args.shapes:
            if (Path(args.tiny) / "config.json").exists():
                tiny, tiny_name = Path(args.tiny), "tiny (trained)"
            else:
                tiny, tiny_name = random_model("tiny", tok_dir, Path(d) / "tiny", vocab), "tiny 4x128 random init"
            results["tiny"] = bench_shape(tiny_name, tiny, args.new_tokens, args.rounds, bandwidth, not args.no_bnb)
            print(json.dumps(results["tiny"]), flush=True)
    results["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    results["ratios"] = results.get("slm", {}).get("ratios")
    results["ratios_tiny"] = results.get("tiny", {}).get("ratios")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

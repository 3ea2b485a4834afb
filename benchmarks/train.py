"""Training throughput: Anno's loop (accelerate + transformers GPT2LMHeadModel, SDPA) against a nanoGPT-style
reference loop (tests/nanogpt_reference.py GPT, plain PyTorch AdamW) on identical shapes, batches and
optimizer settings, in the same run. Prints one JSON object: tokens/s of each, their ratio, and MFU when
a GPU is present.

  python benchmarks/train.py [--preset tiny] [--steps 40] [--batch-size 8] [--corpus data/corpus --tokenizer runs/tok8k]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import torch  # noqa: E402

from engine.model import flops_per_token, model_config  # noqa: E402
from training.checkpoints import read_metrics  # noqa: E402
from training.loop import PEAK_FLOPS, train  # noqa: E402
from training.tokens import batch_generator, load_tokens, prepare_tokens, sample_batch  # noqa: E402
from training.train_config import TrainConfig  # noqa: E402


def reference_tokens_per_s(cfg: TrainConfig, mcfg, data, steps: int, warmup: int) -> float:
    """nanoGPT's train.py inner loop: same model shape (bias on, tied embeddings), AdamW, clip 1.0."""
    from nanogpt_reference import GPT, GPTConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = GPT(GPTConfig(block_size=mcfg.n_ctx, vocab_size=mcfg.vocab_size, n_layer=mcfg.n_layer,
                          n_head=mcfg.n_head, n_embd=mcfg.n_embd, dropout=0.0, bias=True)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            weight_decay=cfg.weight_decay)
    ctx = torch.autocast(device, dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    t0 = None
    for step in range(steps):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = sample_batch(data, cfg.batch_size, mcfg.n_ctx, batch_generator(cfg.seed, step, 0, 0))
        with ctx:
            _, loss = model(x.to(device), y.to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    return (steps - warmup) * cfg.batch_size * mcfg.n_ctx / (time.perf_counter() - t0)


def anno_tokens_per_s(cfg: TrainConfig, warmup: int) -> float:
    """Anno's own loop; tokens/s between the log after the warmup steps and the last step."""
    train(cfg, log=lambda m: None)
    logs = [m for m in read_metrics(cfg.out) if m["kind"] == "train"]
    after = [m for m in logs if m["step"] > warmup]
    return sum(m["tokens_per_s"] for m in after) / len(after)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n-ctx", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--corpus", help="a built corpus (default: a generated one)")
    ap.add_argument("--tokenizer", help="its tokenizer folder (with --corpus)")
    args = ap.parse_args()
    from fixtures import make_corpus
    from training.tok_train import train_corpus_tokenizer

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if args.corpus:
            corpus, tokenizer = Path(args.corpus), Path(args.tokenizer)
        else:
            corpus, tokenizer = make_corpus(d / "c", n_sources=24), d / "tok"
            train_corpus_tokenizer(corpus, tokenizer, 2000, compare_seed=False, log=lambda m: None)
        cfg = TrainConfig(preset=args.preset, corpus=str(corpus), tokenizer=str(tokenizer), out=str(d / "run"),
                          tokens_cache=str(d / "tokens"), batch_size=args.batch_size, max_steps=args.steps,
                          n_ctx=args.n_ctx, log_every=args.warmup, eval_every=10 ** 6, eval_tokens=256,
                          checkpoint_every=10 ** 6).resolve()
        data = load_tokens(prepare_tokens(cfg.corpus, cfg.tokenizer, cfg.tokens_cache, log=lambda m: None))
        mcfg = model_config(cfg.preset, data.vocab_size, n_ctx=cfg.n_ctx)
        # alternate the two loops and take medians: on a shared 2-core machine one run can be disturbed
        refs, oursl = [], []
        for r in range(args.rounds):
            refs.append(reference_tokens_per_s(cfg, mcfg, data, args.steps, args.warmup))
            oursl.append(anno_tokens_per_s(replace(cfg, out=str(d / f"run{r}")), args.warmup))
        ref, ours = statistics.median(refs), statistics.median(oursl)
    out = {"benchmark": "train", "preset": args.preset, "shape": {"n_layer": mcfg.n_layer, "n_embd": mcfg.n_embd,
           "n_ctx": mcfg.n_ctx, "vocab": mcfg.vocab_size, "batch": args.batch_size},
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{os.cpu_count()}",
           "anno_tokens_per_s": round(ours, 1), "reference_tokens_per_s": round(ref, 1),
           "rounds": {"anno": [round(v) for v in oursl], "reference": [round(v) for v in refs]},
           "ratios": {"anno_vs_reference": round(ours / ref, 3)}}
    if torch.cuda.is_available():
        peak = next((v for k, v in PEAK_FLOPS.items() if k in torch.cuda.get_device_name()), None)
        out["mfu"] = round(flops_per_token(mcfg) * ours / peak, 4) if peak else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()

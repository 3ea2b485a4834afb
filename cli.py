"""Anno command line: one subcommand per user action, each a thin call to the library function that the
web UI and the API call too. Errors print one clear line and exit with status 2."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def _corpus_build(a) -> int:
    from training.corpus import CorpusConfig, build_corpus
    from training.manifest import Selection

    cfg = CorpusConfig(
        manifest=a.manifest, out=a.out, mirror=a.mirror, cache_dir=a.cache_dir, workers=a.workers, tasks=a.tasks,
        strict=a.strict, val_fraction=a.val_fraction,
        selection=Selection(year_from=a.year_from, year_to=a.year_to, london_only=a.london_only,
                            sources=tuple(a.sources or ())),
    )
    report = build_corpus(cfg)
    t = report["totals"]
    print(json.dumps({"out": a.out, **t, "errors": len(report["errors"]), "seconds": report["timings_s"]["total"]}))
    return 0


def _corpus_report(a) -> int:
    from training.corpus import load_report
    from training.report import render_markdown

    report = load_report(a.corpus)
    print(json.dumps(report, indent=1, ensure_ascii=False) if a.json else render_markdown(report))
    return 0


def _tokenizer_train(a) -> int:
    from training.tok_train import train_corpus_tokenizer

    report = train_corpus_tokenizer(a.corpus, a.out, a.vocab_size, compare_seed=not a.no_compare,
                                    log=lambda m: print(m, file=sys.stderr))
    report = {k: v for k, v in report.items() if k != "comparison"} | {
        "seed_recipe": {k: report["comparison"]["seed"][k] for k in ("fertility", "bytes_per_token",
                                                                    "round_trip_failures")}
        if "seed" in report["comparison"] else None}
    print(json.dumps(report, indent=1))
    return 0


def _train(a) -> int:
    from training.loop import train
    from training.train_config import TrainConfig

    if a.resume:
        info = train(resume=a.resume, max_steps_this_call=a.max_steps_this_call,
                     log=lambda m: print(m, file=sys.stderr))
    else:
        fields = {k: getattr(a, k) for k in ("preset", "corpus", "tokenizer", "out", "max_steps", "batch_size",
                                             "grad_accum", "lr", "n_ctx", "eval_every", "eval_tokens", "log_every",
                                             "checkpoint_every", "keep_last", "seed", "compile", "tracker",
                                             "warmup_steps", "dropout") if getattr(a, k) is not None}
        info = train(TrainConfig(**fields), max_steps_this_call=a.max_steps_this_call,
                     log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: info.get(k) for k in ("status", "step", "params", "initial_eval", "final_eval",
                                               "bpb_ratio_vs_untrained")}, indent=1))
    return 0


def _import_checkpoint(a) -> int:
    from engine.checkpoint import import_nanogpt

    out = import_nanogpt(a.file, a.out, tokenizer_dir=a.tokenizer, n_head=a.n_head)
    print(json.dumps({"out": str(out)}))
    return 0


def _generate(a) -> int:
    from engine.generate import Finished, GenerationConfig, stream
    from engine.loading import load

    cfg = GenerationConfig(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_k=a.top_k, top_p=a.top_p,
                           repetition_penalty=a.repetition_penalty, no_repeat_ngram_size=a.no_repeat_ngram_size,
                           seed=a.seed, stop=tuple(a.stop or ()), year=a.year, lock_year=a.lock_year)
    m = load(a.model, a.revision)
    final = None
    for ev in stream(m.model, m.tokenizer, a.prompt, cfg):
        if isinstance(ev, Finished):
            final = ev
        elif a.stream:
            print(ev.text, end="", flush=True)
    if a.stream:
        print()
    else:
        print(a.prompt + final.text)
    info = {"finish_reason": final.finish_reason, "prompt_tokens": final.prompt_tokens,
            "generated_tokens": final.generated_tokens, "prompt_truncated": final.prompt_truncated}
    print(json.dumps(info), file=sys.stderr)
    return 0


def _quantize(a) -> int:
    from itertools import islice
    from pathlib import Path

    from engine.corpus_io import iter_documents
    from engine.quantize import quantize

    if not Path(a.model).is_dir():  # the first thing to say, before any --corpus complaint
        raise FileNotFoundError(f"--model {a.model}: no such folder (give a run folder or a model folder)")
    corpus, run_json = a.corpus, Path(a.model) / "run.json"
    if corpus is None and run_json.is_file():
        corpus = json.loads(run_json.read_text(encoding="utf-8")).get("corpus", {}).get("dir")
    if corpus is None and a.eval_docs > 0:
        raise ValueError("--corpus is required when --model is not a run folder (a run's run.json names its corpus)")
    texts = [d["text"] for d in islice(iter_documents(corpus, "validation"), a.eval_docs)] if a.eval_docs > 0 else []
    info = quantize(a.model, a.method, a.out, texts, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: info[k] for k in ("method", "weights_on_disk_bytes", "memory_bytes", "speed", "perplexity")},
                     indent=1))
    return 0


def _one_or_jsonl(a, name: str, batch, one, needs: tuple[str, ...]) -> int:
    """Shared shape of `check` and `date`: a JSONL file in, a JSONL file out; or one text, JSON to stdout."""
    if a.jsonl:
        if not a.out:
            raise ValueError(f"{name} --jsonl IN needs --out OUT")
        print(json.dumps({"out": a.out, "lines": batch(a.jsonl, a.out)}))
        return 0
    missing = [f"--{n}" for n in needs if getattr(a, n) is None]
    if missing:
        raise ValueError(f"{name} needs {' and '.join(missing)} (or --jsonl IN --out OUT)")
    print(json.dumps(one(), ensure_ascii=False, indent=1))
    return 0


def _check(a) -> int:
    from dataclasses import asdict

    from evals.anachronism import check, check_jsonl

    return _one_or_jsonl(a, "check", check_jsonl, lambda: [asdict(f) for f in check(a.text, a.year)],
                         ("text", "year"))


def _date(a) -> int:
    from evals.dating import date, date_jsonl

    return _one_or_jsonl(a, "date", date_jsonl, lambda: date(a.text), ("text",))


def _eval(a) -> int:
    from evals.suite import run_suite

    report = run_suite(a.model, a.suite, corpus_dir=a.corpus, out=a.out, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(report["summary"], indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cli.py", description="Anno: period language models, London 1500-1850.")
    sub = p.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="build and inspect the dated corpus").add_subparsers(dest="action",
                                                                                              required=True)
    b = corpus.add_parser("build", help="fetch, extract, clean, dedup and split dated sources")
    b.add_argument("--manifest", default="training/sources.jsonl", help="sources manifest (JSONL)")
    b.add_argument("--mirror", default=None, help="local mirror of the raw files (e.g. ../shared/corpus)")
    b.add_argument("--out", default="data/corpus", help="output folder (replaced atomically)")
    b.add_argument("--cache-dir", default="data/cache/sources", help="download cache (content-addressed)")
    b.add_argument("--from", dest="year_from", type=int, default=None, metavar="YEAR")
    b.add_argument("--to", dest="year_to", type=int, default=None, metavar="YEAR")
    b.add_argument("--london-only", action="store_true", help="only texts printed in London")
    b.add_argument("--sources", nargs="+", metavar="NAME", help="source names (EEBO-TCP, ELTeC-eng, ...) or ids")
    b.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    b.add_argument("--tasks", type=int, default=0, help="datatrove tasks (0: four per worker)")
    b.add_argument("--val-fraction", type=float, default=0.05, help="validation share per decade")
    b.add_argument("--strict", action="store_true", help="fail on any per-source error")
    b.set_defaults(func=_corpus_build)
    r = corpus.add_parser("report", help="print a built corpus's report")
    r.add_argument("corpus", help="corpus folder")
    r.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    r.set_defaults(func=_corpus_report)

    tok = sub.add_parser("tokenizer", help="train the byte-level BPE tokenizer").add_subparsers(dest="action",
                                                                                              required=True)
    t = tok.add_parser("train", help="train on a built corpus and report on its validation split")
    t.add_argument("--corpus", default="data/corpus")
    t.add_argument("--vocab-size", type=int, default=32_000)
    t.add_argument("--out", default="runs/tok")
    t.add_argument("--no-compare", action="store_true", help="skip training the seed recipe for comparison")
    t.set_defaults(func=_tokenizer_train)

    tr = sub.add_parser("train", help="train a GPT model (fresh with --preset, or --resume RUN)")
    tr.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    tr.add_argument("--preset", help="tiny | small | slm | regular")
    tr.add_argument("--corpus")
    tr.add_argument("--tokenizer")
    tr.add_argument("--out")
    tr.add_argument("--max-steps", type=int)
    tr.add_argument("--max-steps-this-call", type=int, help="train this many steps, checkpoint and return")
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--grad-accum", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--warmup-steps", type=int)
    tr.add_argument("--dropout", type=float)
    tr.add_argument("--n-ctx", type=int)
    tr.add_argument("--eval-every", type=int)
    tr.add_argument("--eval-tokens", type=int)
    tr.add_argument("--log-every", type=int)
    tr.add_argument("--checkpoint-every", type=int)
    tr.add_argument("--keep-last", type=int)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--compile", action="store_true", default=None)
    tr.add_argument("--tracker", choices=["none", "auto", "trackio", "tensorboard"])
    tr.set_defaults(func=_train)

    g = sub.add_parser("generate", help="generate text from a model (run folder, model folder or Hub id)")
    g.add_argument("--model", required=True)
    g.add_argument("--revision", help="Hub revision (branch, tag or commit) for a Hub id")
    g.add_argument("--prompt", default="")
    g.add_argument("--year", type=int, help="era conditioning: the decade token of this year goes first")
    g.add_argument("--lock-year", type=int, help="time lock: forbid words first attested after this year")
    g.add_argument("--max-new-tokens", type=int, default=100)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=50)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--no-repeat-ngram-size", type=int, default=0)
    g.add_argument("--seed", type=int)
    g.add_argument("--stop", nargs="*", help="stop strings")
    g.add_argument("--stream", action="store_true", help="print text as it is generated")
    g.set_defaults(func=_generate)

    c = sub.add_parser("check", help="anachronism findings for a text and its year (JSON)")
    c.add_argument("--text")
    c.add_argument("--year", type=int)
    c.add_argument("--jsonl", help='input lines {"id", "text", "year"}')
    c.add_argument("--out", help='output lines {"id", "findings": [...]} (with --jsonl)')
    c.set_defaults(func=_check)
    d = sub.add_parser("date", help="estimate the year of a passage, with an interval (JSON)")
    d.add_argument("--text")
    d.add_argument("--jsonl", help='input lines {"id", "text"}')
    d.add_argument("--out", help='output lines {"id", "year", "low", "high"} (with --jsonl)')
    d.set_defaults(func=_date)
    e = sub.add_parser("eval", help="run an evaluation suite on a model; JSON + Markdown report")
    e.add_argument("--model", required=True)
    e.add_argument("--suite", choices=["quick", "full"], default="quick")
    e.add_argument("--corpus", help="corpus folder (default: the run's corpus)")
    e.add_argument("--out", default="report.json")
    e.set_defaults(func=_eval)

    imp = sub.add_parser("import-checkpoint", help="convert a nanoGPT/helloLondon .pt checkpoint to Hub format")
    imp.add_argument("file")
    imp.add_argument("--out", required=True)
    imp.add_argument("--tokenizer", help="tokenizer folder whose special-token ids the model must use")
    imp.add_argument("--n-head", type=int, help="heads, for bare state dicts that do not record it")
    imp.set_defaults(func=_import_checkpoint)

    q = sub.add_parser("quantize", help="quantize a model folder and measure size, speed and perplexity vs fp32")
    q.add_argument("--model", required=True, help="fp32 run folder or model folder")
    q.add_argument("--method", required=True, help="int8-cpu | bnb-int8 | bnb-nf4")
    q.add_argument("--out", required=True, help="quantized model folder (replaced atomically)")
    q.add_argument("--corpus", help="corpus whose validation documents score perplexity (default: the run's)")
    q.add_argument("--eval-docs", type=int, default=20, help="validation documents for perplexity (0: skip)")
    q.set_defaults(func=_quantize)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # per-file weight-loading bars are noise here
    if args.command != "corpus":
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # our own error types carry a clear message; anything else is a bug: show it
        if type(e).__module__.split(".")[0] in ("training", "engine", "evals"):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

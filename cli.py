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
        strict=a.strict, val_fraction=a.val_fraction, test_fraction=a.test_fraction,
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


TRAIN_FLAGS = ("preset", "corpus", "tokenizer", "out", "max_steps", "batch_size", "grad_accum", "lr", "n_ctx",
               "eval_every", "eval_tokens", "log_every", "checkpoint_every", "keep_last", "seed", "compile", "tracker",
               "warmup_steps", "dropout", "decade_power")


def train_bar(file=None, disable=None):
    """(log, progress, close) for training.loop.train: a tqdm bar on stderr (step/total, tokens/s, ETA; off
    when stderr is not a terminal, as tqdm decides with disable=None) with log lines printed above it."""
    from tqdm import tqdm

    file, bar = file or sys.stderr, []

    def progress(p: dict) -> None:
        if not bar:
            bar.append(tqdm(total=p["total"], initial=p["step"] - 1, unit="step", file=file, disable=disable,
                            dynamic_ncols=True, mininterval=0.5, desc="train"))
        bar[0].total = p["total"]
        bar[0].set_postfix_str(f"{p['tokens_per_s']:,.0f} tok/s", refresh=False)
        bar[0].update(p["step"] - bar[0].n)

    def log(msg: str) -> None:
        (bar[0].write if bar else print)(msg, file=file)

    return log, progress, lambda: bar and bar[0].close()


def _train(a) -> int:
    from training.loop import train
    from training.train_config import TrainConfig

    if a.extend_to is not None and not a.resume:
        raise ValueError("--extend-to N needs --resume RUN (it continues an existing run to N steps in all)")
    log, progress, close = train_bar()
    try:
        if a.resume:
            given = [f"--{k.replace('_', '-')}" for k in TRAIN_FLAGS if getattr(a, k) is not None]
            if given:  # they used to be dropped silently: the run's own run.json settings apply on resume
                raise ValueError(f"--resume continues the run with its own settings; {', '.join(given)} cannot be "
                                 f"given with it (train more steps with --extend-to N)")
            info = train(resume=a.resume, max_steps_this_call=a.max_steps_this_call, extend_to=a.extend_to, log=log,
                         progress=progress)
        else:
            fields = {k: getattr(a, k) for k in TRAIN_FLAGS if getattr(a, k) is not None}
            info = train(TrainConfig(**fields), max_steps_this_call=a.max_steps_this_call, log=log, progress=progress)
    finally:
        close()
    print(json.dumps({k: info.get(k) for k in ("status", "step", "params", "initial_eval", "final_eval",
                                               "bpb_ratio_vs_untrained")}, indent=1))
    return 0


def _jobs(a) -> int:
    from training import jobs

    if a.action == "list":
        rows = jobs.list_jobs(a.root)
        if a.json:
            print(json.dumps(rows, indent=1))
        for r in rows if not a.json else ():
            frac = "" if r["progress"] is None else f" {r['progress']:.0%}"
            print(f"{r['id']}  {r['state']:<11}{frac:>5}  {r['out']}" + (f"  ({r['error']})" if r["error"] else ""))
        return 0
    if a.action == "extend":
        print(json.dumps({"id": jobs.extend(a.id, a.to, a.root)}))
        return 0
    act = {"status": jobs.status, "stop": jobs.stop, "resume": jobs.resume}[a.action]
    print(json.dumps(act(a.id, a.root), indent=1, ensure_ascii=False))
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
                           seed=a.seed, stop=tuple(a.stop or ()), year=a.year, lock_year=a.lock_year,
                           lock_corpus=a.corpus, min_new_tokens=a.min_new_tokens)
    m = load(a.model, a.revision)
    if a.lock_year is not None:
        from engine.timelock import TimeLock  # its tables are cached per (tokenizer, year, corpus): stream() reuses them

        against = f"the first-seen words of {a.corpus}" if a.corpus else "nothing else (no --corpus)"
        _prepared(f"time lock {a.lock_year}: classifying the vocabulary against the dated lexicon and {against}",
                  lambda: TimeLock(m.tokenizer, a.lock_year, corpus_dir=a.corpus))
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


def _threads_arg(value: str) -> int:
    from engine.serving import threads_arg  # imported here: the parser must not load torch

    return threads_arg(value)


def _compile_step(a) -> int:
    import torch

    from engine.compiled_step import precompile
    from engine.loading import load
    from engine.serving import MAX_BATCH

    if a.threads is not None:
        torch.set_num_threads(a.threads)  # packages are per thread count: match the server's --threads
    max_batch = MAX_BATCH if a.max_batch is None else a.max_batch
    precompile(load(a.model, a.revision).model, max_batch, progress=lambda line: print(line, flush=True))
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


def _prepared(what: str, build) -> None:
    """Run a first-use table build with a stderr line saying what is built and how long it took (it used to
    be silent: the first `check` on the full corpus sat for seconds with no output)."""
    import time

    print(f"{what} ...", file=sys.stderr, flush=True)
    t0 = time.time()
    build()
    print(f"{what}: ready in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)


def _check(a) -> int:
    from dataclasses import asdict

    from evals.anachronism import CheckConfig, check, check_jsonl

    cfg = CheckConfig(corpus_dir=a.corpus)
    if (a.jsonl and a.out) or (not a.jsonl and a.text is not None and a.year is not None):  # " " loads every table
        if a.corpus is None:
            print("check: no --corpus given: lexicon evidence only (no corpus first-seen years)", file=sys.stderr)
        _prepared("check: loading the dated lexicon" + (f" and the first-seen words of {a.corpus}'s train split "
                  "(built and cached on first use)" if a.corpus else ""), lambda: check(" ", 1600, cfg))
    return _one_or_jsonl(a, "check", lambda i, o: check_jsonl(i, o, cfg),
                         lambda: [asdict(f) for f in check(a.text, a.year, cfg)], ("text", "year"))


def _date(a) -> int:
    from evals.dating import date, date_jsonl

    if a.corpus is None and (a.cv or a.test or a.jsonl or a.text is not None):
        raise ValueError("date needs --corpus DIR (a built corpus: the dating model is fitted on its train split)")
    if a.cv:
        from evals.dating_cv import cross_validate

        print(json.dumps(cross_validate(a.corpus, folds=a.folds), indent=1))
        return 0
    if a.test:
        from evals.dating_cv import held_out_split

        print(json.dumps(held_out_split(a.corpus, "test"), indent=1))
        return 0
    if (a.jsonl and a.out) or (not a.jsonl and a.text is not None):
        _prepared(f"date: loading the dating model of {a.corpus} (fitted on its train split and cached on first use)",
                  lambda: date(" ", a.corpus))
    return _one_or_jsonl(a, "date", lambda i, o: date_jsonl(i, o, a.corpus), lambda: date(a.text, a.corpus),
                         ("text",))


def _eval(a) -> int:
    from evals.suite import run_suite

    report = run_suite(a.model, a.suite, corpus_dir=a.corpus, out=a.out, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(report["summary"], indent=1))
    return 0


def _era_fidelity(a) -> int:
    from engine.loading import load
    from evals.probes import era_fidelity
    from evals.suite import corpus_of

    corpus = a.corpus or corpus_of(a.model)
    m = load(a.model)
    r = era_fidelity(m.model, m.tokenizer, a.years, samples=a.samples, max_new_tokens=a.max_new_tokens, seed=a.seed,
                     corpus_dir=corpus)
    print(json.dumps(r, indent=1, ensure_ascii=False))
    return 0


def _publish(a) -> int:
    from engine.publish import publish

    # the token comes from HF_TOKEN (never a command-line flag: it would show in `ps` and shell history)
    r = publish(a.model, a.repo_id, private=a.private, dry_run_dir=a.dry_run, revision=a.revision, parent=a.parent,
                eval_report=a.report, corpus_report=a.corpus_report)
    print(json.dumps({"repo_id": r.repo_id, "revision": r.revision, "files": list(r.files),
                      "staged_dir": r.staged_dir, "commit_url": r.commit_url}, indent=1))
    return 0


def _space_export(a) -> int:
    from engine.space import SpaceConfig, export_space

    r = export_space(SpaceConfig(out=a.out, model=a.model, corpus=a.corpus or None, repo_id=a.repo_id))
    print(json.dumps({k: r[k] for k in ("out", "model", "corpus", "files", "bytes")}))
    return 0


def _space_deploy(a) -> int:
    from engine.space import deploy_space

    # the token comes from HF_TOKEN, as for publish (a flag would show in `ps` and shell history)
    print(json.dumps(deploy_space(a.folder, a.repo_id, private=a.private, hardware=a.hardware), indent=1))
    return 0


def _export(a) -> int:
    from engine.export import export

    out = export(a.model, a.format, a.out, dtype=a.dtype)
    print(json.dumps({"format": a.format, "out": str(out)}))
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
    b.add_argument("--val-fraction", type=float, default=0.05,
                   help="share of whole sources held out for validation (tuning, early stopping), by decade")
    b.add_argument("--test-fraction", type=float, default=0.05,
                   help="share of whole sources held out for test (reported figures only), by decade")
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
    tr.add_argument("--decade-power", type=float, help="era share of windows ~ tokens^p; 1 uniform (default), 0 equal")
    tr.add_argument("--compile", action="store_true", default=None)
    tr.add_argument("--tracker", choices=["none", "auto", "trackio", "tensorboard"])
    tr.add_argument("--extend-to", type=int, metavar="N", help="with --resume: continue the run to N steps in all")
    tr.set_defaults(func=_train)

    jb = sub.add_parser("jobs", help="background jobs (the web app's Start/Stop/Resume): list, status, stop, resume")
    jb.add_argument("--root", help="job registry folder (default: $ANNO_JOBS_DIR or runs/jobs)")
    ja = jb.add_subparsers(dest="action", required=True)
    ja.add_parser("list", help="every job, newest first").add_argument("--json", action="store_true")
    for name, text in (("status", "state, progress, metrics, log tail (JSON)"), ("stop", "stop a job (training "
                       "checkpoints first)"), ("resume", "resume a stopped, interrupted or failed job")):
        ja.add_parser(name, help=text).add_argument("id", help="job id")
    je = ja.add_parser("extend", help="continue a training job or run folder to more steps")
    je.add_argument("id", help="job id or run folder")
    je.add_argument("--to", type=int, required=True, metavar="N", help="steps in all")
    jb.set_defaults(func=_jobs)

    g = sub.add_parser("generate", help="generate text from a model (run folder, model folder or Hub id)")
    g.add_argument("--model", required=True)
    g.add_argument("--revision", help="Hub revision (branch, tag or commit) for a Hub id")
    g.add_argument("--prompt", default="")
    g.add_argument("--year", type=int, help="era conditioning: the decade token of this year goes first")
    g.add_argument("--lock-year", type=int, help="time lock: forbid words first attested after this year")
    g.add_argument("--corpus", help="built corpus whose first-seen words the time lock bans too (default: lexicon only)")
    g.add_argument("--max-new-tokens", type=int, default=100)
    g.add_argument("--min-new-tokens", type=int, default=0, help="no end of text before this many new tokens")
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
    c.add_argument("--corpus", help="built corpus whose train split gives first-seen evidence (default: lexicon only)")
    c.set_defaults(func=_check)
    d = sub.add_parser("date", help="estimate the year of a passage, with an interval (JSON)")
    d.add_argument("--text")
    d.add_argument("--jsonl", help='input lines {"id", "text"}')
    d.add_argument("--out", help='output lines {"id", "year", "low", "high"} (with --jsonl)')
    d.add_argument("--corpus", help="built corpus the dating model is fitted on (required)")
    d.add_argument("--cv", action="store_true", help="cross-validate the dater on --corpus (author-disjoint folds)")
    d.add_argument("--test", action="store_true", help="date --corpus's test split by the served (train) model")
    d.add_argument("--folds", type=int, default=10, help="folds for --cv")
    d.set_defaults(func=_date)
    e = sub.add_parser("eval", help="run an evaluation suite on a model; JSON + Markdown report")
    e.add_argument("--model", required=True)
    e.add_argument("--suite", choices=["quick", "full"], default="quick")
    e.add_argument("--corpus", help="corpus folder (default: the run's corpus)")
    e.add_argument("--out", default="report.json")
    e.set_defaults(func=_eval)
    ef = sub.add_parser("era-fidelity", help="generate from era tokens alone and date the text (JSON: mae_years)")
    ef.add_argument("--model", required=True, help="run folder, model folder or Hub id")
    ef.add_argument("--years", type=int, nargs="+", default=[1550, 1650, 1750, 1840], metavar="YEAR")
    # 24, not 6: with 6 samples per era the same model scored 29.1 or 39.8 years (seeds 0 and 100, demo model,
    # 2026-11-30); 4x as many samples halve the standard error. 6 is the floor the era-conditioning target names.
    ef.add_argument("--samples", type=int, default=24, help="generations per year (default 24)")
    ef.add_argument("--max-new-tokens", type=int, default=150)
    ef.add_argument("--seed", type=int, default=0, help="sample i of every year uses seed + i")
    ef.add_argument("--corpus", help="corpus whose dating model judges the text (default: the run's corpus)")
    ef.set_defaults(func=_era_fidelity)

    imp = sub.add_parser("import-checkpoint", help="convert a nanoGPT/helloLondon .pt checkpoint to Hub format")
    imp.add_argument("file")
    imp.add_argument("--out", required=True)
    imp.add_argument("--tokenizer", help="tokenizer folder whose special-token ids the model must use")
    imp.add_argument("--n-head", type=int, help="heads, for bare state dicts that do not record it")
    imp.set_defaults(func=_import_checkpoint)

    cs = sub.add_parser("compile-step", help="build the compiled decode step of a GPT-2 model (AOTInductor, "
                        "with the matrix-product op of engine/blas.py when it builds; app.py starts this "
                        "in the background)")
    cs.add_argument("--model", required=True)
    cs.add_argument("--revision", default=None)
    cs.add_argument("--threads", type=_threads_arg, default=None, help="the server's --threads (default torch's)")
    cs.add_argument("--max-batch", type=int, default=None, help="the batcher's rows (default engine/serving.MAX_BATCH)")
    cs.set_defaults(func=_compile_step)

    q = sub.add_parser("quantize", help="quantize a model folder and measure size, speed and perplexity vs fp32")
    q.add_argument("--model", required=True, help="fp32 run folder or model folder")
    q.add_argument("--method", required=True, help="int8-cpu | bnb-int8 | bnb-nf4")
    q.add_argument("--out", required=True, help="quantized model folder (replaced atomically)")
    q.add_argument("--corpus", help="corpus whose validation documents score perplexity (default: the run's)")
    q.add_argument("--eval-docs", type=int, default=20, help="validation documents for perplexity (0: skip)")
    q.set_defaults(func=_quantize)

    pub = sub.add_parser("publish", help="publish a run/model/quantized folder to the Hub with its model card "
                                         "(token: HF_TOKEN)")
    pub.add_argument("--model", required=True, help="run folder, model folder or quantized folder")
    pub.add_argument("--repo-id", required=True, help="owner/name of the Hub model repo")
    pub.add_argument("--private", action="store_true", help="create the repo private")
    pub.add_argument("--revision", help="push to this branch (created if needed) instead of main")
    pub.add_argument("--parent", help="repo id of the fp32 model a quantized folder comes from (linked on the card)")
    pub.add_argument("--report", help="evaluation report (default: report.json in the run folder, if any)")
    pub.add_argument("--corpus-report", help="corpus report.json (default: the run's corpus)")
    pub.add_argument("--dry-run", metavar="STAGE_DIR", help="write the staged files here; upload nothing")
    pub.set_defaults(func=_publish)

    sp = sub.add_parser("space", help="the app as a Hugging Face Space: export a folder, deploy it (token: HF_TOKEN)"
                        ).add_subparsers(dest="action", required=True)
    se = sp.add_parser("export", help="write a deployable Space folder (front matter, requirements, app, model)")
    se.add_argument("--out", required=True, help="Space folder to write (replaced atomically)")
    se.add_argument("--model", default="runs/tiny", help="run/model folder to bundle, or a Hub id to preload "
                                                         "(default runs/tiny, the demo model)")
    se.add_argument("--corpus", help="built corpus to bundle for checks and dating (default: none, lexicon-only)")
    se.add_argument("--repo-id", help="the Space's id, if known (names the bundled model's card)")
    se.set_defaults(func=_space_export)
    sd = sp.add_parser("deploy", help="upload an exported Space folder as a gradio Space repo")
    sd.add_argument("--repo-id", required=True, help="owner/name of the Space")
    sd.add_argument("--folder", default="data/space", help="the exported folder (default data/space)")
    sd.add_argument("--private", action="store_true", help="create the Space private")
    sd.add_argument("--hardware", help="also request this hardware, e.g. zero-a10g (ZeroGPU: PRO/Enterprise only)")
    sd.set_defaults(func=_space_deploy)

    ex = sub.add_parser("export", help="export a model for other runtimes: GGUF (llama.cpp) or CTranslate2")
    ex.add_argument("--model", required=True, help="fp32 run folder or model folder")
    ex.add_argument("--format", required=True, choices=["gguf", "ct2"])
    ex.add_argument("--out", required=True, help="output folder (replaced atomically)")
    ex.add_argument("--dtype", default="f32", help="gguf: f32 | f16; ct2: f32 | int8")
    ex.set_defaults(func=_export)
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

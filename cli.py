"""Anno command line: one subcommand per user action, each a thin call to the library function that the
web UI and the API call too. Errors print one clear line and exit with status 2."""
from __future__ import annotations

import argparse
import json
import logging
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
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

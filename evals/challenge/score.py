"""Scoring of the anachronism detector on a challenge set (JSONL records with text, year and an answer key
of planted spans): recall over planted answers, precision over all findings, and the misses and false
findings themselves. A finding hits an answer when their character spans overlap.
Also false findings per 1,000 words on REAL text of a named corpus split (every document checked against its
own year), with the first-seen table built from the train split only, so that no figure reads its own text.
Run: python -m evals.challenge.score [SET ...] [--corpus DIR --real-split test]   (prints JSON; SET is a
path or dev/tune/test, default dev; see evals/challenge/README.md)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Iterable

DEV = Path(__file__).with_name("dev.jsonl")


def load(path: str | Path = DEV) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score(records: Iterable[dict], check: Callable) -> dict:
    """check(text, year) -> findings with .start/.end/.word (evals.anachronism.check)."""
    answers = hits = findings = true_findings = 0
    misses, false = [], []
    for r in records:
        found = check(r["text"], r["year"])
        findings += len(found)
        spans = [(a["start"], a["end"]) for a in r["answers"]]
        answers += len(spans)
        for a in r["answers"]:
            if any(f.start < a["end"] and a["start"] < f.end for f in found):
                hits += 1
            else:
                misses.append({"id": r["id"], "word": a["word"], "term": a["term"], "term_year": a["year"],
                               "basis": a["basis"], "text_year": r["year"]})
        for f in found:
            if any(f.start < e and s < f.end for s, e in spans):
                true_findings += 1
            else:
                false.append({"id": r["id"], "word": f.word, "year": f.year, "basis": f.basis, "text_year": r["year"]})
    return {"answers": answers, "findings": findings,
            "recall": round(hits / answers, 4) if answers else 1.0,
            "precision": round(true_findings / findings, 4) if findings else 1.0,
            "misses": misses, "false_findings": false}


def false_findings(corpus_dir: str | Path, split: str, check: Callable) -> dict:
    """Findings on the real text of `split` (each document at its own year: every finding is false as far as
    the corpus dates go), per 1,000 words, with the flagged words and their counts."""
    from collections import Counter

    from engine.corpus_io import iter_documents

    words = n = 0
    flagged: Counter = Counter()
    for doc in iter_documents(corpus_dir, split):
        found = check(doc["text"], int(doc["year"]))
        words += len(doc["text"].split())
        n += len(found)
        flagged.update(f"{f.word.lower()} ({f.basis}, {f.year} vs {doc['year']})" for f in found)
    return {"split": split, "words": words, "findings": n,
            "per_1k_words": round(1000 * n / words, 4) if words else 0.0, "flagged": dict(flagged.most_common())}


def main() -> None:
    import argparse
    from dataclasses import replace
    from functools import partial

    from evals.anachronism import CheckConfig, check

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=["dev"], help="challenge files, or dev / tune / test")
    ap.add_argument("--corpus", default=None, help="built corpus: first-seen evidence (train split) and real text")
    ap.add_argument("--real-split", default=None, help="split whose real text is checked for false findings")
    args = ap.parse_args()
    config = CheckConfig(corpus_dir=None)
    if args.corpus:
        config = replace(config, corpus_dir=str(args.corpus), corpus_splits=("train",))
    run = partial(check, config=config)
    out = {}
    for name in args.sets:
        path = Path(name) if Path(name).suffix else DEV.with_name(f"{name}.jsonl")
        out[path.stem] = score(load(path), run)
    if args.real_split:
        if not args.corpus:
            ap.error("--real-split needs --corpus")
        out["real_text"] = false_findings(args.corpus, args.real_split, run)
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

"""Scoring of the anachronism detector on a challenge set (JSONL records with text, year and an answer key
of planted spans): recall over planted answers, precision over all findings, and the misses and false
findings themselves. A finding hits an answer when their character spans overlap.
Run: python -m evals.challenge.score [path]   (prints JSON; default evals/challenge/dev.jsonl)
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


def main() -> None:
    from evals.anachronism import check

    path = sys.argv[1] if len(sys.argv) > 1 else DEV
    print(json.dumps(score(load(path), check), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

"""Tuning of the detector's free settings on the DEVELOPMENT split only: the margin of `approximate` lexicon
dates (evals/anachronism.py MARGINS) and the sense-cue window (evals/anachronism_cues.py CUE_WINDOW).
Each setting is scored on evals/challenge/tune.jsonl (planted terms NOT held out for the test set) and on the
real text of the corpus's validation split (false findings per 1,000 words); the test split and test.jsonl
are never read here. Rule: the highest tune recall among settings with precision >= MIN_PRECISION and at most
MAX_FALSE_PER_1K false findings per 1,000 validation words; ties go to the smaller margin, then window.
Run: python -m evals.challenge.tune --corpus data/corpus   (prints JSON: every setting and the choice)
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import evals.anachronism as A
from evals.anachronism_cues import cue_near
from evals.challenge.score import false_findings, load, score

MARGINS_TRIED = (5, 10, 15)
WINDOWS_TRIED = (6, 12, 20)
MIN_PRECISION, MAX_FALSE_PER_1K = 0.98, 0.05


def run(corpus_dir: str, margins=MARGINS_TRIED, windows=WINDOWS_TRIED) -> dict:
    tune = load(Path(__file__).with_name("tune.jsonl"))
    config = replace(A.CheckConfig(), corpus_dir=corpus_dir, corpus_splits=("train",))
    base_margin, base_cue = A._MARGIN["approximate"], A.cue_near
    rows = []
    try:
        for m in margins:
            A._MARGIN["approximate"] = m
            A._resources.cache_clear()  # the matcher's thresholds include the margins
            for w in windows:
                A.cue_near = partial(cue_near, window=w)
                check = partial(A.check, config=config)
                s = score(tune, check)
                real = false_findings(corpus_dir, "validation", check)
                rows.append({"approximate_margin": m, "cue_window": w, "recall": s["recall"],
                             "precision": s["precision"], "validation_false_per_1k": real["per_1k_words"],
                             "validation_flagged": real["flagged"]})
    finally:
        A._MARGIN["approximate"], A.cue_near = base_margin, base_cue
        A._resources.cache_clear()
    ok = [r for r in rows if r["precision"] >= MIN_PRECISION and r["validation_false_per_1k"] <= MAX_FALSE_PER_1K]
    best = max(ok, key=lambda r: (r["recall"], -r["approximate_margin"], -r["cue_window"])) if ok else None
    return {"rule": {"min_precision": MIN_PRECISION, "max_false_per_1k": MAX_FALSE_PER_1K}, "settings": rows,
            "chosen": None if best is None else {k: best[k] for k in ("approximate_margin", "cue_window")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    args = ap.parse_args()
    print(json.dumps(run(args.corpus), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

"""Corpus audit of the dated lexicon: every lexicon form (with the endings the detector matches) that a
built corpus already attests in a text dated BEFORE the entry's year, no margin, with the text and a
context line. Such an entry is wrongly dated (re-date it), polysemous (give it sense cues, or drop it), or
attested only through a known artefact of the corpus (Pepys's diary is dated 1659 but written 1660-69 with
19th-century editorial notes). A cued entry counts only where one of its cues stands near the form, exactly
as the detector reads it (evals/anachronism_cues.py).
Run: python -m evals.challenge.audit --corpus data/corpus [--splits train validation] [--out audit.json]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from engine.corpus_io import iter_documents
from engine.lexicon import BASES
from evals.anachronism import CheckConfig
from evals.anachronism_cues import cue_near
from evals.anachronism_forms import CORPUS, SEP_RE, build_matcher, fold

ARTEFACT_SOURCES = ("SE-samuel-pepys",)  # editorial notes of a later century inside a text dated by its writing


def audit(corpus_dir: str, splits: tuple[str, ...] = ("train", "validation"),
          lexicon_path: str | None = None, context: int = 80) -> dict[str, dict]:
    """{entry term: {"year", "basis", "cues", "texts": [{"year", "source_id", "form", "context"}...]}} for every
    entry attested before its year; texts sorted by year, at most the 5 earliest."""
    config = CheckConfig(corpus_dir=None, corpus_evidence=False)
    if lexicon_path:
        config = replace(config, lexicon_path=lexicon_path)
    matcher = build_matcher(config, None, {**{b: 0 for b in BASES}, CORPUS: 0})
    hits: dict[str, dict] = {}
    seen: dict[str, set] = defaultdict(set)
    for split in splits:
        for doc in iter_documents(corpus_dir, split):
            year, text = int(doc["year"]), doc["text"]
            low = fold(text)  # length-preserving; ligature/soft-hyphen words are left to the detector's slow path
            for m in matcher.regex.finditer(low):
                g = m.group()
                hit = matcher.surfaces.get(g) or matcher.surfaces.get(SEP_RE.sub(" ", g))
                if hit is None or hit[1] != "lexicon":
                    continue
                entry = hit[2]
                if year >= entry.year or entry.category == "polysemous":
                    continue
                if entry.cues and cue_near(low, m.start(), m.end(), entry.cues) is None:
                    continue
                rec = hits.setdefault(entry.term, {"year": entry.year, "basis": entry.basis,
                                                   "cues": list(entry.cues), "texts": []})
                key = doc["source_id"]
                if key in seen[entry.term]:
                    continue
                seen[entry.term].add(key)
                s, e = m.span()
                rec["texts"].append({"year": year, "source_id": key, "form": text[s:e],
                                     "context": " ".join(text[max(0, s - context):e + context].split())})
    for rec in hits.values():
        rec["texts"].sort(key=lambda t: t["year"])
        rec["artefact_only"] = all(t["source_id"].startswith(ARTEFACT_SOURCES) for t in rec["texts"])
        rec["n_texts"] = len(rec["texts"])
        rec["texts"] = rec["texts"][:5]
    return dict(sorted(hits.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--splits", nargs="+", default=["train", "validation"])
    ap.add_argument("--lexicon", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = audit(args.corpus, tuple(args.splits), args.lexicon)
    text = json.dumps(result, ensure_ascii=False, indent=1)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    summary = {"attested_early": len(result), "artefact_only": sum(r["artefact_only"] for r in result.values())}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""Generator of the held-out challenge sets of the anachronism detector: evals/challenge/tune.jsonl (the
development split: tuning may look at it) and evals/challenge/test.jsonl (the test split: written only from
lexicon entries HELD OUT of tuning, planted into passages that no tuning set uses).

Held-out rule (fixed, recorded in evals/challenge/README.md): an entry is held out when
sha256("anno-lexicon-holdout-v1:" + term) read as an integer is 0 mod 5, about one entry in five. Neither set
plants polysemous entries (never flagged by design). Cued entries are planted with one of their cues in the
same clause ("He wrote of the train and the railway."), appended after the passage, because the detector
reports them only with a cue nearby (evals/anachronism_cues.py).

Passages and planting are those of evals/challenge/make_dev.py (real text, 60-180 words, 1-3 terms dated
after the passage, varied written forms). Passages come from the corpus's `test` split when it has one, else
from `validation` (the README says which was used); test passages never share a document with tune.jsonl or
dev.jsonl. Run: python -m evals.challenge.make_test --corpus data/corpus [--split test]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter
from pathlib import Path

from engine.corpus_io import iter_documents
from engine.lexicon import Entry, load_lexicon
from evals.challenge import make_dev

HERE = Path(__file__).parent
SEEDS = {"tune": 20261129, "test": 20261130}
N_PLANTED, N_CLEAN = 200, 60
# A source-disjoint split holds about 10 texts (data/corpus: validation 10, test 10), so up to 30 passages
# come from one text (make_dev's dev set, from a chapter-level split of 74 texts, allowed 8).
MAX_PER_TEXT = 30
HOLDOUT_SALT, HOLDOUT_MOD = "anno-lexicon-holdout-v1:", 5
CUE_CLAUSES = ("He wrote of the {t} and the {c}.", "There was talk of the {t} near the {c}.",
               "They spoke of the {t}, and of the {c}.")


def held_out(entry: Entry) -> bool:
    """The fixed, seeded rule that keeps an entry out of every tuning set."""
    h = int(hashlib.sha256((HOLDOUT_SALT + entry.term).encode("utf-8")).hexdigest(), 16)
    return h % HOLDOUT_MOD == 0


def default_split(corpus_dir: str) -> str:
    """`test` when the corpus has a non-empty test split, else `validation`."""
    try:
        next(iter_documents(corpus_dir, "test"))
        return "test"
    except (StopIteration, ValueError, FileNotFoundError):
        return "validation"


def plant_cued(rec: dict, entry: Entry, rng: random.Random, lexicon) -> dict:
    """Append a clause with the cued term and one of its cues (one that is no anachronism itself when there
    is one, else the cue is a second answer); the answer covers the term."""
    clause = rng.choice(CUE_CLAUSES)
    word = make_dev.realise(entry, rng, rec["year"], False)
    # a cue that is itself a later word ("railway" for "train" in 1626) would be a second, unlisted anachronism
    safe = [c for c in entry.cues if (hit := lexicon.lookup(c)) is None or hit.year <= rec["year"]
            or hit.cues or hit.category == "polysemous"]
    cue = rng.choice(safe or list(entry.cues))
    head, tail = clause.split("{t}")
    text = rec["text"].rstrip() + " " + head
    answer = {"start": len(text), "end": len(text) + len(word), "word": word, "term": entry.term,
              "year": entry.year, "basis": entry.basis, "category": entry.category, "cue": cue}
    cue_start = len(text) + len(word) + tail.index("{c}")
    extra = [] if safe else [{"start": cue_start, "end": cue_start + len(cue), "word": cue, "term": hit.term,
                              "year": hit.year, "basis": hit.basis, "category": hit.category}
                             for hit in [lexicon.lookup(cue)]]
    return {**rec, "text": text + word + tail.replace("{c}", cue), "answers": rec["answers"] + [answer] + extra}


def make(corpus_dir: str, which: str, split: str | None = None) -> tuple[list[dict], str]:
    if which not in SEEDS:
        raise ValueError(f"which={which!r} must be one of {sorted(SEEDS)}")
    rng = random.Random(SEEDS[which])
    split = split or (default_split(corpus_dir) if which == "test" else "validation")
    lexicon = load_lexicon()
    lex = [e for e in lexicon.entries if e.category != "polysemous" and held_out(e) == (which == "test")]
    exclude = set()  # documents of the other sets: a test passage never comes from a tuning document
    for name in ("dev.jsonl", "tune.jsonl") if which == "test" else ("dev.jsonl",):
        if (HERE / name).exists():
            with open(HERE / name, encoding="utf-8") as f:
                exclude |= {json.loads(x)["doc_id"] for x in f if x.strip()}
    used: Counter = Counter()
    records = []
    for i, p in enumerate(make_dev.passages(corpus_dir, rng, N_PLANTED + N_CLEAN, split, frozenset(exclude),
                                                   MAX_PER_TEXT)):
        if i < N_PLANTED:
            chosen = make_dev.choose_entries(p, lex, used, rng)
            plain = [e for e in chosen if not e.cues]
            rec = make_dev.plant(p, plain, rng) if plain else {**p, "answers": []}
            for e in (e for e in chosen if e.cues):
                rec = plant_cued(rec, e, rng, lexicon)
        else:
            rec = {**p, "answers": []}
        records.append({"id": f"{which}-{i:04d}", **rec})
    rng.shuffle(records)
    return records, split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[2] / "data" / "corpus"))
    ap.add_argument("--which", choices=sorted(SEEDS), nargs="+", default=["tune", "test"])
    ap.add_argument("--split", default=None, help="corpus split for the passages (default: test if present)")
    args = ap.parse_args()
    for which in args.which:
        records, split = make(args.corpus, which, args.split)
        make_dev.write(records, HERE / f"{which}.jsonl")
        answers = [a for r in records for a in r["answers"]]
        print(json.dumps({"set": which, "split": split, "passages": len(records),
                          "clean": sum(not r["answers"] for r in records), "planted": len(answers),
                          "cued": sum("cue" in a for a in answers), "distinct_terms": len({a["term"] for a in answers}),
                          "categories": dict(Counter(a["category"] for a in answers).most_common())}))


if __name__ == "__main__":
    main()

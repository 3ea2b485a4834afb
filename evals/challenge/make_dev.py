"""Generator of the development challenge set evals/challenge/dev.jsonl for the anachronism detector.

Passages are real text from the VALIDATION split of a built corpus (read with engine.corpus_io, never
training/), each dated by its document's year. Most get 1-3 planted lexicon terms dated after the passage
(the answer key records their character spans); the rest are left unaltered (clean). Planting spreads over
categories (a category is drawn first, then its least-used term) and varies the written form: listed
variants, plurals and possessives, early-modern spellings before 1700 (all from engine/wordforms.py, the
forms the detector and the time lock share), hyphen/space joins, capitalisation (Title, UPPER,
sentence-initial), long s and curly apostrophes; terms either replace the noun after a determiner ("the horse" -> "the
telegraph") or come in a short clause at a sentence boundary. Fixed seed: the same corpus gives the same
file. Run: python -m evals.challenge.make_dev [--corpus data/corpus] [--out evals/challenge/dev.jsonl]
"""
from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

from engine.atomic import atomic_file
from engine.corpus_io import iter_documents
from engine.firstseen import WORD_RE, is_latin
from engine import wordforms
from engine.lexicon import load_lexicon, normalize

SEED = 20261123
N_PLANTED, N_CLEAN = 200, 80
MAX_PER_TEXT = 8  # passages per source text, so that no single book dominates
OUT = Path(__file__).with_name("dev.jsonl")
DETERMINER = re.compile(r"\b(?:the|a|an|his|her|their|my|our|your|some|every)\s+([a-z]{3,})\b",
                        re.IGNORECASE)
CLAUSES = ("{T} was much talked of.", "There was great talk of the {t}.", "Of the {t} I say no more.",
           "Men spoke then of the {t}.", "{T}, they said, was the wonder of the age.",
           "He wrote of the {t} to his brother.", "And all the while the {t} was in every mouth.")
PLURAL_CATS = {"technology", "transport", "instrument", "commodity", "food", "clothing", "medicine", "science",
               "word", "print", "finance"}
NAME_CATS = {"institution", "building", "street", "event", "polity"}


def passages(corpus_dir: str, rng: random.Random, n: int, split: str = "validation",
             exclude_docs: frozenset[str] = frozenset(), max_per_text: int = MAX_PER_TEXT) -> list[dict]:
    """n passages of 60-180 words from documents of `split` (not in exclude_docs), cut at line and sentence ends."""
    docs = [d for d in iter_documents(corpus_dir, split) if d.get("words", 0) >= 200 and d["id"] not in exclude_docs]
    texts = len({d["source_id"] for d in docs})
    if n > texts * max_per_text:  # a source-disjoint split holds ~10 texts: say so instead of looping forever
        raise ValueError(f"n={n} passages need more than {texts} texts x max_per_text={max_per_text} in {split!r}")
    per_text: Counter = Counter()
    out = []
    while len(out) < n:
        d = rng.choice(docs)
        if per_text[d["source_id"]] >= max_per_text:
            continue
        text = d["text"]
        starts = [0] + [m.end() for m in re.finditer(r"\n+", text)]
        s = rng.choice(starts[:-1] or starts)
        target = rng.randint(60, 180)
        chunk = text[s:s + 12 * target]
        words = list(re.finditer(r"\S+", chunk))
        if len(words) < 40:
            continue
        end = words[min(target, len(words)) - 1].end()
        dot = max(chunk.rfind(". ", 0, end + 1), chunk.rfind("\n", 0, end + 1))
        if dot > len(chunk[:end]) // 2:
            end = dot + 1
        passage = chunk[:end].strip()
        toks = WORD_RE.findall(passage.lower())
        if len(toks) < 40 or is_latin(toks) or passage in {p["text"] for p in out}:
            continue
        per_text[d["source_id"]] += 1
        out.append({"text": passage, "year": int(d["year"]), "source_id": d["source_id"], "doc_id": d["id"],
                    "source": d.get("source", ""), "license": d.get("license", "")})
    return out


def plural(form: str) -> str | None:
    """The plural engine.wordforms gives the form's normalised spelling, written on the form as listed
    (case kept: "Steam Engine" -> "Steam Engines"); None where wordforms has none ("guineas", "o.k.")."""
    n = normalize(form)
    p = wordforms.plural(n)
    if p is None or len(n) != len(form) or not form.split(" ")[-1].isalpha():  # "semi-detached": no plural
        return None
    cut = len(n) - 1 if p.endswith("ies") and not n.endswith("ies") else len(n)
    return form[:cut] + p[cut:]


def old_spelling(word: str, rng: random.Random) -> str:
    """One early-modern spelling of a one-word form (engine.wordforms.spelling_variants), else the word."""
    variants = wordforms.spelling_variants(word.lower()) if word.isalpha() and word.islower() else []
    return rng.choice(variants) if variants else word


def realise(entry, rng: random.Random, year: int, sentence_start: bool) -> str:
    """One written form of a lexicon entry with random but valid variation. Old spellings draw from their own
    stream, seeded by the entry and year, so the main stream (and every other choice) is as before them."""
    spell_rng = random.Random(f"{SEED}:{entry.term}:{year}")
    w = rng.choice((entry.term,) + entry.variants)
    if entry.category in PLURAL_CATS and rng.random() < 0.3:
        w = plural(w) or w
    elif entry.category in NAME_CATS and rng.random() < 0.2 and w[-1].isalpha():
        w += "'s"
    if w.count(" ") == 1 and entry.category not in NAME_CATS and rng.random() < 0.3:
        w = w.replace(" ", "-")
    elif "-" in w and rng.random() < 0.3:
        w = w.replace("-", " ")
    r = rng.random()
    if r < 0.1:
        w = w.upper()
    elif r < 0.25:
        w = " ".join(p[:1].upper() + p[1:] for p in w.split(" "))
    if sentence_start:
        w = w[:1].upper() + w[1:]
    if year < 1700 and spell_rng.random() < 0.2:  # vmbrella, iournal, telegraphe: the detector must see them
        w = old_spelling(w, spell_rng)
    if year < 1750 and rng.random() < 0.15:  # long s in initial/medial position, as period type set it
        w = re.sub(r"s(?=[a-z])", "\u017f", w)
    if "'" in w and rng.random() < 0.5:
        w = w.replace("'", "\u2019")
    return w


def pick_entries(eligible: dict[str, list], used: Counter, rng: random.Random, k: int) -> list:
    cats = [c for c in eligible if eligible[c]]
    chosen = []
    for cat in rng.sample(cats, min(k, len(cats))):
        least = min(used[e.term] for e in eligible[cat])
        entry = rng.choice([e for e in eligible[cat] if used[e.term] == least])
        used[entry.term] += 1
        chosen.append(entry)
    return chosen


def plant(p: dict, entries: list, rng: random.Random) -> dict:
    text, edits = p["text"], []  # edits: (start, end, before, term_text, after, entry)
    for entry in entries:
        taken = [(s, e) for s, e, *_ in edits]
        free = lambda s, e: all(e <= a or s >= b for a, b in taken)  # noqa: E731
        slots = [m for m in DETERMINER.finditer(text) if free(*m.span(1))]
        if slots and rng.random() < 0.7:
            m = rng.choice(slots)
            edits.append((m.start(1), m.end(1), "", realise(entry, rng, p["year"], False), "", entry))
            continue
        bounds = [m.end() for m in re.finditer(r"[.!?]\s+", text) if free(m.end(), m.end())] or [len(text)]
        at = rng.choice(bounds)
        clause = rng.choice(CLAUSES)
        word = realise(entry, rng, p["year"], clause.startswith("{T}"))
        head, tail = re.split(r"\{[Tt]\}", clause)
        sep = "" if at < len(text) else " "
        edits.append((at, at, sep + head, word, tail + (" " if at < len(text) else ""), entry))
    edits.sort(key=lambda x: x[0])
    out, answers, pos = [], [], 0
    length = 0
    for s, e, before, word, after, entry in edits:
        out.append(text[pos:s] + before)
        length += len(out[-1])
        answers.append({"start": length, "end": length + len(word), "word": word, "term": entry.term,
                        "year": entry.year, "basis": entry.basis, "category": entry.category})
        out.append(word + after)
        length += len(out[-1])
        pos = e
    out.append(text[pos:])
    return {**p, "text": "".join(out), "answers": answers}


def choose_entries(p: dict, lex: list, used: Counter, rng: random.Random) -> list:
    """1-3 entries (weights 5:3:2) first attested after the passage's year, spread over categories."""
    eligible = defaultdict(list)
    for e in lex:
        if e.year > p["year"]:
            eligible[e.category].append(e)
    k = rng.choices((1, 2, 3), weights=(5, 3, 2))[0]
    return pick_entries(eligible, used, rng, k)


def make(corpus_dir: str, seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    lex = [e for e in load_lexicon().entries if e.category != "polysemous" and not e.cues]  # cued: make_test
    used: Counter = Counter()
    records = []
    for i, p in enumerate(passages(corpus_dir, rng, N_PLANTED + N_CLEAN)):
        if i < N_PLANTED:
            rec = plant(p, choose_entries(p, lex, used, rng), rng)
        else:
            rec = {**p, "answers": []}
        records.append({"id": f"dev-{i:04d}", **rec})
    rng.shuffle(records)
    return records


def write(records: list[dict], out: Path) -> None:
    with atomic_file(out) as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[2] / "data" / "corpus"))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    records = make(args.corpus, args.seed)
    write(records, Path(args.out))
    answers = [a for r in records for a in r["answers"]]
    print(json.dumps({"passages": len(records), "clean": sum(not r["answers"] for r in records),
                      "planted": len(answers), "distinct_terms": len({a["term"] for a in answers}),
                      "categories": dict(Counter(a["category"] for a in answers).most_common())}))


if __name__ == "__main__":
    main()

"""Corpus-derived first-seen years: for every word form of a built dated corpus (after early-modern spelling
normalisation), the year of the earliest text that uses it, how many texts and occurrences, and the
earliest few texts' (year, count). Owns the spelling key, the Latin-line rule, building the table from a
corpus (engine.corpus_io, never training/), and its cache file keyed by the corpus fingerprint.

Lives in engine/ (data + lookup) so that time-locked decoding can use it as well as evals/anachronism.py.
A word missing from the table is no evidence of anything: the corpus is 11.5M words, about 5 texts a decade.

The corpus is always an argument (no default folder), and the table is built from the train split only by
default, so no validation or test text, on which held-out figures are measured, shapes a finding or the lock.
"""
from __future__ import annotations

import bisect
import gzip
import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from engine.atomic import atomic_file
from engine.corpus_io import iter_documents, load_report

VERSION = 2
TRAIN_ONLY = ("train",)  # the default splits: held-out text never feeds the table (issue 13)
EARLY_TEXTS = 5  # earliest texts kept per word: attestation thresholds below use at most 3 texts

# A word: letters with internal apostrophes ("o'clock", "call'd"); digits and hyphens split words, so
# "tea-pot" counts "tea" and "pot" (the detector matches hyphenated lexicon compounds itself). Counted
# with case kept, keyed lowercased (spelling_key).
WORD_RE = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")

# Latin lines are left out of the counts: a Latin "radio" or "video" in a 1600 sermon says nothing about
# the English word. Rule (per line): >= 2 Latin function words and more Latin than English ones. On the
# train split this drops 260 lines (13,893 words: mass rubrics, "Cum priuilegio", quoted verse) and, read
# by eye on 30 sampled lines, no English ones. "in", "a", "de" are shared with English/French: not listed.
LATIN = frozenset("et est non ad cum quod qui quae ut sed per enim autem atque vel sunt esse nec ab ex quam "
                  "quia hoc eius etiam aut nisi tamen ergo igitur inter sicut super apud sine pro quoque ac "
                  "ita".split())
ENGLISH = frozenset("the and of to is that it with for which was his he be not this they shall will from have "
                    "but by are".split())
# The table counts case-preserved tokens (to record how often a word is capitalised, i.e. a name); the
# Latin rule then needs the capitalised function words too ("Cum priuilegio").
_LATIN_ANY = LATIN | {w.capitalize() for w in LATIN}
_ENGLISH_ANY = ENGLISH | {w.capitalize() for w in ENGLISH}

_KEY_TRANS = str.maketrans({"v": "u", "j": "i", "\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def spelling_key(word: str) -> str:
    """Normalised spelling of one word, so that early-modern and modern spellings meet.

    NFKC + lowercase (long s and ligatures: "ſ" -> "s", "ﬁ" -> "fi"); "vv" -> "w" (type cases short of w);
    u/v and i/j merged (interchangeable in print before ~1630: "vpon", "iudge"); possessive "'s" / "s'"
    dropped; "-'d" -> "-ed" ("call'd"); final "-ie" -> "-y" ("citie") and "-ick" -> "-ic" ("publick").
    Keys may merge distinct words (that only makes a word look older, the safe direction for a detector).
    """
    w = unicodedata.normalize("NFKC", word).lower().replace("vv", "w").translate(_KEY_TRANS)
    if w.endswith("'s"):
        w = w[:-2]
    elif w.endswith("'"):
        w = w[:-1]
    if w.endswith("'d"):
        w = w[:-2] + "ed"
    if w.endswith("ie") and len(w) > 3:
        w = w[:-2] + "y"
    elif w.endswith("ick") and len(w) > 4:
        w = w[:-1]
    return w


def is_latin(tokens: Iterable[str]) -> bool:
    """True for a line of tokens (lower- or capitalised) that reads as Latin by the function-word rule above."""
    toks = tokens if isinstance(tokens, list) else list(tokens)
    lat = sum(map(_LATIN_ANY.__contains__, toks))
    return lat >= 2 and lat > sum(map(_ENGLISH_ANY.__contains__, toks))


@dataclass(frozen=True)
class Row:
    year: int                                # earliest dated text using the word
    texts: int                               # distinct texts (source_id) using it
    count: int                               # occurrences in all texts
    caps: int                                # occurrences written with a capital initial (names score ~100%)
    early: tuple[tuple[int, int], ...]       # (year, count) of its earliest EARLY_TEXTS texts, oldest first
    forms: tuple[str, ...] = ()              # raw lowercased spellings seen, where they differ from the key


def _format_row(r: Row) -> str:
    early = ",".join(f"{y}:{c}" for y, c in r.early)
    return f"{r.year}\t{r.texts}\t{r.count}\t{r.caps}\t{early}\t{'|'.join(r.forms)}"


def _parse_row(raw: str) -> Row:
    year, texts, count, caps, early, forms = raw.split("\t")
    pairs = tuple(tuple(map(int, p.split(":"))) for p in early.split(","))
    return Row(int(year), int(texts), int(count), int(caps), pairs, tuple(forms.split("|")) if forms else ())


@dataclass(frozen=True)
class FirstSeenTable:
    # key -> the row still in its file form, parsed on lookup: parsing all 141K rows up front took 1.5 s
    rows: Mapping[str, str]
    year_words: tuple[tuple[int, int], ...]  # (year, English words in texts of that year), ascending
    fingerprint: str
    splits: tuple[str, ...]
    _cum: tuple[int, ...] = field(default=(), repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, word: str) -> Row | None:
        raw = self.rows.get(spelling_key(word))
        return None if raw is None else _parse_row(raw)

    def counts(self):
        """(key, first year, texts, occurrences, capitalised occurrences) for every row, without parsing
        the rest."""
        for key, raw in self.rows.items():
            year, texts, count, caps, _ = raw.split("\t", 4)
            yield key, int(year), int(texts), int(count), int(caps)

    def first_seen(self, word: str) -> tuple[int, int, int] | None:
        """(earliest year, texts, occurrences) of a word's spelling key; None if the corpus never has it."""
        r = self.row(word)
        return None if r is None else (r.year, r.texts, r.count)

    def attested_by(self, word: str, year: int) -> tuple[int, int]:
        """(texts, occurrences) dated <= year, counted over the earliest EARLY_TEXTS texts (exact below that)."""
        r = self.row(word)
        if r is None:
            return 0, 0
        hits = [c for y, c in r.early if y <= year]
        return len(hits), sum(hits)

    def words_before(self, year: int) -> int:
        """English words in corpus texts dated strictly before `year`."""
        i = bisect.bisect_left(self.year_words, (year, -1))
        return self._cum[i]

    @property
    def total_words(self) -> int:
        return self._cum[-1]


def _make_table(rows: dict, year_words: Iterable[tuple[int, int]], fingerprint: str,
                splits: tuple[str, ...]) -> FirstSeenTable:
    yw = tuple(sorted(year_words))
    cum = [0]
    for _, n in yw:
        cum.append(cum[-1] + n)
    return FirstSeenTable(MappingProxyType(rows), yw, fingerprint, splits, tuple(cum))


def corpus_fingerprint(corpus_dir: str | Path) -> str:
    report = load_report(corpus_dir)
    fp = report.get("fingerprint")
    if fp:
        return str(fp)
    return hashlib.sha256((Path(corpus_dir) / "report.json").read_bytes()).hexdigest()


def _latin_lines(text: str, toks: list[str]) -> list[list[str]]:
    """Tokens of the Latin lines of a document whose tokens are `toks`. A line needs two Latin function
    words, so a document with fewer has none and is not split into lines (73% of the train split's words:
    one findall per document instead of one per line)."""
    if sum(map(_LATIN_ANY.__contains__, toks)) < 2:
        return []
    out = []
    for line in text.split("\n"):
        line_toks = WORD_RE.findall(line)
        if is_latin(line_toks):
            out.append(line_toks)
    return out


def build_table(corpus_dir: str | Path, splits: tuple[str, ...] = TRAIN_ONLY) -> FirstSeenTable:
    """Count every word of the chosen splits per text (source_id), skipping Latin lines. About 10 s CPU for
    the 10.9M-word train split on this shared 2-core machine: C-level findall and Counter per document,
    Python work per distinct (text, word) pair only (a per-line findall and a per-pair row update took 20 s)."""
    per_text: dict[str, Counter] = defaultdict(Counter)
    text_year: dict[str, int] = {}
    year_words: Counter = Counter()
    for split in splits:
        for doc in iter_documents(corpus_dir, split):
            sid, year, text = doc["source_id"], int(doc["year"]), doc["text"]
            text_year[sid] = year
            toks = WORD_RE.findall(text)
            per_text[sid].update(toks)
            n = len(toks)
            for latin in _latin_lines(text, toks):
                per_text[sid].subtract(latin)
                n -= len(latin)
            year_words[year] += n
    key_of: dict[str, str] = {}
    raw_total: dict[str, int] = defaultdict(int)
    early: dict[str, list] = defaultdict(list)
    for sid, counts in per_text.items():
        merged: dict[str, int] = defaultdict(int)
        for raw, n in counts.items():
            if n > 0:
                key = key_of.get(raw)
                if key is None:
                    key = key_of[raw] = spelling_key(raw)
                merged[key] += n
                raw_total[raw] += n
        year = text_year[sid]
        for key, n in merged.items():
            early[key].append((year, n))
    caps: Counter = Counter()
    forms: dict[str, set] = defaultdict(set)
    for raw, n in raw_total.items():
        key = key_of[raw]
        if raw[0].isupper():
            caps[key] += n
        low = raw.lower()
        if low != key:
            forms[key].add(low)
    rows = {}
    for key, pairs in early.items():
        pairs.sort()
        rows[key] = _format_row(Row(pairs[0][0], len(pairs), sum(n for _, n in pairs), caps[key],
                                    tuple(pairs[:EARLY_TEXTS]), tuple(sorted(forms[key]))))
    return _make_table(rows, year_words.items(), corpus_fingerprint(corpus_dir), tuple(splits))


def _cache_path(corpus_dir: str | Path, splits: tuple[str, ...], cache_dir: str | Path | None) -> Path:
    base = Path(cache_dir) if cache_dir is not None else Path(corpus_dir).resolve().parent / "cache"
    fp = corpus_fingerprint(corpus_dir)[:16]
    return base / "firstseen" / f"{fp}-{'+'.join(splits)}-v{VERSION}.tsv.gz"


def save_table(table: FirstSeenTable, path: str | Path) -> None:
    """Gzipped TSV, written atomically: '#' header lines (version, fingerprint, splits, year word totals),
    then key, year, texts, count, caps, early ("year:count,..."), forms ("|"-separated)."""
    with atomic_file(path, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8", compresslevel=6) as f:
        f.write(f"#version\t{VERSION}\n#fingerprint\t{table.fingerprint}\n#splits\t{'+'.join(table.splits)}\n")
        f.write("#year_words\t" + ",".join(f"{y}:{n}" for y, n in table.year_words) + "\n")
        for key in sorted(table.rows):
            f.write(f"{key}\t{table.rows[key]}\n")


def read_table(path: str | Path) -> FirstSeenTable:
    meta: dict[str, str] = {}
    rows: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line.startswith("#"):
                k, _, v = line[1:].partition("\t")
                meta[k] = v
            elif line:
                key, _, rest = line.partition("\t")
                rows[key] = rest
    if meta.get("version") != str(VERSION):
        raise ValueError(f"{path}: first-seen table version {meta.get('version')!r}, expected {VERSION}")
    yw = [tuple(map(int, p.split(":"))) for p in meta["year_words"].split(",") if p]
    return _make_table(rows, yw, meta["fingerprint"], tuple(meta["splits"].split("+")))


@lru_cache(maxsize=4)
def _load_cached(corpus_dir: str, splits: tuple[str, ...], cache_dir: str | None, fp: str) -> FirstSeenTable:
    path = _cache_path(corpus_dir, splits, cache_dir)
    if path.exists():
        try:
            return read_table(path)
        except (ValueError, OSError, EOFError):
            pass  # a stale or truncated cache is rebuilt below
    table = build_table(corpus_dir, splits)
    save_table(table, path)
    return table


def load_table(corpus_dir: str | Path, splits: tuple[str, ...] = TRAIN_ONLY,
               cache_dir: str | Path | None = None) -> FirstSeenTable:
    """The table of a built corpus, from <cache_dir>/firstseen/<fingerprint>-<splits>-v<VERSION>.tsv.gz when
    present, else built and cached (cache_dir defaults to the corpus folder's sibling "cache", i.e.
    data/cache for data/corpus). Memoised per process. Raises engine.corpus_io.CorpusError when
    corpus_dir is not a built corpus."""
    fp = corpus_fingerprint(corpus_dir)
    return _load_cached(str(Path(corpus_dir).resolve()), tuple(splits),
                        None if cache_dir is None else str(cache_dir), fp)


def first_seen(word: str, corpus_dir: str | Path) -> tuple[int, int, int] | None:
    """(earliest year, texts, occurrences) of `word` in the train split of a built corpus; None when absent."""
    return load_table(corpus_dir).first_seen(word)


# One-step early-modern spelling alternations (OED spelling histories, e.g. drery/dreary, sociall/social,
# sanke/sank, aukward/awkward), applied at every position; final -e, -ll, doubled consonants separately.
_ALTERNATIONS = (("y", "i"), ("i", "y"), ("ea", "e"), ("e", "ea"), ("ee", "e"), ("e", "ee"), ("ou", "ow"),
                 ("ow", "ou"), ("w", "u"), ("u", "w"), ("ck", "c"), ("c", "ck"), ("k", "c"), ("c", "k"),
                 ("s", "z"), ("z", "s"), ("ph", "f"), ("f", "ph"), ("au", "a"), ("a", "au"), ("oo", "o"),
                 ("o", "oo"), ("ai", "ay"), ("ay", "ai"), ("t", "ed"), ("ed", "t"), ("ed", "d"))
_CONSONANTS = "bcdfghklmnprstz"


def spelling_variants(word: str, steps: int = 2) -> set[str]:
    """Keys reachable from `word` by up to `steps` early-modern spelling alternations (see above). Used
    to refuse corpus-only evidence for a word whose older spelling the corpus does have; over-generating
    is safe there (it only withholds findings)."""
    seen = {spelling_key(word)}
    frontier = set(seen)
    for _ in range(steps):
        nxt = set()
        for w in frontier:
            cands = [w + "e", w[:-1] if w.endswith("e") else w]
            for a, b in _ALTERNATIONS:
                i = w.find(a)
                while i >= 0:
                    cands.append(w[:i] + b + w[i + len(a):])
                    i = w.find(a, i + 1)
            for i, ch in enumerate(w):
                if ch in _CONSONANTS:
                    cands.append(w[:i] + ch + w[i:])  # doubled
                    if i and w[i - 1] == ch:
                        cands.append(w[:i] + w[i + 1:])  # undoubled
            nxt.update(spelling_key(c) for c in cands if c)
        nxt -= seen
        seen |= nxt
        frontier = nxt
    return seen


@dataclass(frozen=True)
class StrongRule:
    """When a corpus first-seen year alone is strong evidence that a word is later than a text (the reasons
    for each threshold are stated with CheckConfig in evals/anachronism.py, which uses this rule, as does
    engine/timelock.py): first text dated >= from_year, >= texts texts and >= uses uses, capitalised in
    fewer than half its uses, >= expected uses predicted for the earlier corpus at its later rate, and no
    early-modern spelling of it earlier. Such a word is flagged for texts dated before first - margin."""

    from_year: int = 1700
    texts: int = 10
    uses: int = 40
    expected: float = 100.0
    margin: int = 100


def strong_words(table: FirstSeenTable, rule: StrongRule = StrongRule()):
    """(key, first year, texts, uses, written forms) of every word the rule calls strongly dated."""
    total = table.total_words
    for key, first, texts, uses, caps in table.counts():
        if first < rule.from_year or texts < rule.texts or uses < rule.uses or len(key) < 4 or 2 * caps >= uses:
            continue
        before = table.words_before(first)
        if uses / max(1, total - before) * before < rule.expected:
            continue
        if any(v != key and v in table.rows and table.row(v).year < first for v in spelling_variants(key)):
            continue
        yield key, first, texts, uses, table.row(key).forms

"""What the dater (evals/dating.py) reads: its text normalisation, the passages it cuts from the corpus and from
an input text, its two feature views of a passage, and who wrote what (author groups, so that folds never
split an author). `cfg` below is evals.dating.DatingConfig.

Two views, each hashed into 2^hash_bits buckets of (bucket, count) pairs, each fitted as its own ridge model:
- "spelling": character 2-4-grams inside word boundaries (case kept: 18th-century capitalised Nouns date
  text) plus lower-cased word unigrams and bigrams. Spelling dates text finely (haue/have, publick/public),
  but a modernised edition (NLTK Shakespeare, Standard Ebooks' Pepys) reads as 1750+ by its spelling alone.
- "lexis": word unigrams and bigrams of `skeleton(word)`, a key on which early-modern and modern spellings of
  one word meet (engine/firstseen.py's spelling_key, then y=i, ck=c, z=s, doubled letters single, final e
  dropped, than=then, ay=i). What is left is vocabulary and grammar (thou, hath, doth, -eth), which a
  modernising editor keeps. Alone it dates the corpus worse (author-disjoint 10-fold CV, whole texts: MAE 15.1
  vs 16.0 for spelling, 13.3 vs 10.8 without the 8 modern-spelling Shakespeare plays) but the Shakespeare plays
  at 60 years late instead of 139; evals/dating.py uses it only where the two views disagree (see there).
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.corpus_io import SPLITS, iter_documents
from engine.firstseen import spelling_key
from engine.normalize import normalize as normalize_text

_FNV, _GOLD = np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15)
_GAP = re.compile(r"\u3008[^\u3009]*\u3009")  # the corpus's gap marker for illegible text: not language
_DASH = re.compile(r"[\u2010-\u2015\u2212\u2e3a\u2e3b]|-{2,}")  # SE "—" vs NLTK "--": a typesetting habit
# ELTeC prints apostrophes as U+00B4 (7,031 of them): a source habit the model must not learn as a date.
_PUNCT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'", "\u02bc": "'",
                        "\u201c": '"', "\u201d": '"', "\u00ad": None})
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_DOUBLE = re.compile(r"(.)\1+")
# Words that modern editions split but early printers spelled alike ("then" for than, "I" for ay).
_MERGE = {"than": "then", "ay": "i"}
VIEWS = ("spelling", "lexis")


def normalize(text: str) -> str:
    """NFKC (long s -> s, ligatures), straight quotes, one dash, no gap markers."""
    return _DASH.sub("-", _GAP.sub(" ", unicodedata.normalize("NFKC", text).translate(_PUNCT)))


@lru_cache(maxsize=1 << 17)  # bounded: graders pass arbitrary text
def _word_hash(word: str) -> int:
    return zlib.crc32(word.encode("utf-8", "replace"))


@lru_cache(maxsize=1 << 17)
def skeleton(word: str) -> str:
    """The spelling-blind key of one word: "haue", "have" -> "hau"; "sayde", "said" -> "said";
    "beene", "been" -> "ben"; "publick", "public" -> "public"; "Than", "then" -> "then"."""
    k = spelling_key(word).replace("y", "i").replace("ck", "c").replace("z", "s")
    k = _DOUBLE.sub(r"\1", _MERGE.get(k, k))
    return k[:-1] if len(k) > 2 and k.endswith("e") else k


def _unique(parts: list[np.ndarray], bits: int) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(over="ignore"):
        buckets = np.sort(((np.concatenate(parts) * _GOLD) >> np.uint64(64 - bits)).astype(np.int64))
    starts = np.flatnonzero(np.diff(buckets, prepend=-1))  # sort-based unique: 3x np.unique's time here
    return buckets[starts], np.diff(starts, append=len(buckets))


def _word_grams(words: list[str]) -> list[np.ndarray]:
    wh = np.array([_word_hash(w) for w in words], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return [(wh + np.uint64(1)) * _FNV * _FNV, ((wh[:-1] * _FNV) ^ wh[1:]) * _FNV + np.uint64(12345)]


def hash_passage(tokens: list[str], char_ngram_max: int = 4, hash_bits: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """The spelling view: whitespace tokens -> (sorted hash buckets, counts). Character n-grams stay inside
    " token " as in scikit-learn's char_wb; the hashes are FNV-style on code points, stable across runs and
    machines."""
    s = " " + "  ".join(tokens) + " "
    codes = np.frombuffer(s.encode("utf-32-le", "replace"), dtype=np.uint32).astype(np.uint64)
    space = codes == 32
    spaces_before = np.concatenate([[0], np.cumsum(space)])
    parts = []
    with np.errstate(over="ignore"):
        for n in range(2, char_ngram_max + 1):
            m = len(codes) - n + 1
            if m <= 0:
                continue
            ok = spaces_before[n - 1:n - 1 + m] == spaces_before[1:1 + m]  # no space inside the n-gram
            if n == 2:
                ok &= ~(space[:m] & space[1:1 + m])  # the gap between two padded tokens
            h = np.full(m, np.uint64(7919 * n), dtype=np.uint64)
            for k in range(n):
                h = (h ^ codes[k:k + m]) * _FNV
            parts.append(h[ok])
    return _unique(parts + _word_grams(_WORD.findall(" ".join(tokens).lower())), hash_bits)


def hash_lexis(tokens: list[str], hash_bits: int = 18) -> tuple[np.ndarray, np.ndarray]:
    """The lexis view: skeleton word unigrams and bigrams -> (sorted hash buckets, counts)."""
    return _unique(_word_grams([skeleton(w) for w in _WORD.findall(" ".join(tokens))]), hash_bits)


def hash_views(tokens: list[str], char_ngram_max: int = 4, hash_bits: int = 18) -> dict[str, tuple]:
    """{view name: (buckets, counts)} of one passage, for every view in VIEWS."""
    return {"spelling": hash_passage(tokens, char_ngram_max, hash_bits), "lexis": hash_lexis(tokens, hash_bits)}


# ---------------------------------------------------------------------------------------------- passages


def _windows(tokens: list[str], cfg) -> list[list[str]]:
    w = cfg.passage_words
    return [tokens[i:i + w] for i in range(0, len(tokens), w) if len(tokens[i:i + w]) >= cfg.min_passage_words]


def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int)) if n else np.zeros(0, int)


def corpus_passages(corpus_dir: str | Path, cfg, splits: tuple[str, ...] = SPLITS) -> list[dict]:
    """Up to max_passages_per_source evenly spaced passages per source of the given splits, each with its
    source_id, year, archive ("source") and author. Two passes over the shards so only the chosen passages
    are held."""
    counts: dict[str, list[int]] = {}
    for split in splits:
        for d in iter_documents(corpus_dir, split):
            counts.setdefault(d["source_id"], []).append(len(_windows(d["text"].split(), cfg)))
    chosen = {sid: set(_evenly(sum(c), cfg.max_passages_per_source).tolist()) for sid, c in counts.items()}
    seen = {sid: 0 for sid in counts}
    out = []
    for split in splits:
        for d in iter_documents(corpus_dir, split):
            sid = d["source_id"]
            for win in _windows(d["text"].split(), cfg):
                if seen[sid] in chosen[sid]:
                    out.append({"source_id": sid, "year": int(d["year"]), "source": d.get("source"),
                                "author": d.get("author"), "tokens": normalize(" ".join(win)).split()})
                seen[sid] += 1
    return out


def text_passages(text: str, cfg) -> tuple[list[list[str]], int]:
    """(passages, words) of an input text; past max_text_passages passages, evenly spaced character slices
    are taken (their cut first/last tokens dropped) so memory does not grow with the text."""
    span = cfg.passage_words * 12  # chars per slice: ~6 chars a word in the corpus, with room to spare
    if len(text) > span * cfg.max_text_passages * 2:
        starts = np.linspace(0, len(text) - span, cfg.max_text_passages).astype(int)
        passages = [p for s in starts  # engine/normalize.py per slice: memory stays flat
                    if (p := normalize(normalize_text(text[s:s + span])).split()[1:-1][:cfg.passage_words])]
        return passages, sum(map(len, passages))
    tokens = normalize(normalize_text(text)).split()  # read as the corpus was (vv, long s, mojibake)
    wins = [tokens[i:i + cfg.passage_words] for i in range(0, len(tokens), cfg.passage_words)]
    if len(wins) > 1 and len(wins[-1]) < cfg.min_passage_words:
        wins = wins[:-1]
    return [wins[i] for i in _evenly(len(wins), cfg.max_text_passages)], len(tokens)


# ---------------------------------------------------------------------------------------------- authors


# Words of a catalogue author field that do not name the person: titles, roles and date qualifiers.
_NOT_NAME = frozenset("sir saint st mr mrs dr lord lady earl duke the of de ca fl b d active approximately "
                      "grammarian translator editor author anon anonymous".split())
_NAME_WORD = re.compile(r"[^\W\d_]+")


def author_keys(author: str | None) -> list[frozenset[str]]:
    """One key per person named in a catalogue author field (';'-separated): the set of lowercased name words,
    so that "Surname, Forename, dates." and "Forename Surname" meet. Empty for an anonymous text."""
    keys = []
    for person in (author or "").split(";"):
        words = frozenset(w for w in _NAME_WORD.findall(person.lower()) if len(w) > 1 and w not in _NOT_NAME)
        if words:
            keys.append(words)
    return keys


def author_groups(authors: dict[str, str | None]) -> dict[str, str]:
    """{source id: group id}: sources sharing any author key are one group (union-find); an anonymous source
    is its own group. The group id is its smallest source id, so groups do not depend on input order."""
    parent = {s: s for s in authors}

    def find(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    owner: dict[frozenset, str] = {}
    for sid in sorted(authors):
        for key in author_keys(authors[sid]):
            if key in owner:
                a, b = sorted((find(sid), find(owner[key])))
                parent[b] = a
            else:
                owner[key] = sid
    return {s: find(s) for s in authors}

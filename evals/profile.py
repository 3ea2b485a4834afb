"""Linguistic profile of a text: archaic forms, lexical diversity, repetition, readability and sentence shape,
each also as a percentile against real corpus passages of the same period. Owns the metric definitions, the
reference distributions (built once per corpus, cached by its fingerprint) and their lookup.

Reads the built corpus through engine.corpus_io only (evals/ never imports training/). Definitions, stated
once here and relied on by the tests and the `evaluate` metrics in evals/metrics/:
- word: a run of letters with internal apostrophes (engine.firstseen.WORD_RE); digits are not words.
- sentence: text up to . ! or ? followed by white space, or up to a blank line; "Mr." "St." etc. do not end one.
- passage: consecutive sentences closed once they reach `passage_words` (300) words; a tail under half that
  joins the previous passage. Distinct-n and repeated 4-grams depend on length, so a text longer than one
  passage reports their mean over its passages, which is what the reference measured.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import numbers
import re
import statistics
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from engine.atomic import write_json_atomic
from engine.corpus_io import CorpusError, iter_documents, load_report
from engine.firstseen import WORD_RE
from engine.normalize import normalize as normalize_text

VERSION = 1
_FORMS = json.loads((Path(__file__).with_name("profile_forms.json")).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class ProfileConfig:
    passage_words: int = 300          # passage size for the reference and the length-dependent metrics
    mattr_window: int = 100           # MATTR window: 100 leaves 201 windows in a 300-word passage
    long_sentence: int = 40           # a sentence over this many words counts as long
    max_chars: int = 200_000          # longer texts are sampled: ~35k words; a 9 MB text profiles in 0.3 s
    sample_windows: int = 8           # ... in this many evenly spaced windows
    splits: tuple[str, ...] = ("validation", "train")
    per_doc: int = 4                  # reference: at most this many passages per document (evenly spaced) ...
    per_period: int = 500             # ... and per half-century (a stable hash picks which)
    min_passages: int = 30            # a half-century with fewer passages is pooled into its century

    def __post_init__(self):
        for name in ("passage_words", "mattr_window", "long_sentence", "max_chars", "sample_windows", "per_doc",
                     "per_period", "min_passages"):
            if getattr(self, name) < 1:
                raise ValueError(f"ProfileConfig.{name}={getattr(self, name)} must be >= 1")


DEFAULT = ProfileConfig()
# Metrics that get a percentile; the sentence count and word totals depend on length and get none.
METRICS = ("archaic_per_1000", "mattr", "distinct_1", "distinct_2", "distinct_3", "repeated_4gram_share",
           "flesch_reading_ease", "flesch_kincaid_grade", "words_per_sentence_mean", "words_per_sentence_sd",
           "long_sentence_share")

_L = r"[^\W\d_]"  # one letter
_VARIANT = {v: form for form, vs in _FORMS["forms"].items() for v in vs}
_ARCHAIC_RE = re.compile(rf"(?<!{_L})(" + "|".join(map(re.escape, sorted(_VARIANT, key=len, reverse=True)))
                         + rf")(?!{_L})")
_ART_RE = re.compile(rf"(?<!{_L})(?:thou\s+art|art\s+thou)(?!{_L})")
_ETH_RE = re.compile(rf"(?<!{_L})({_L}{{{_FORMS['eth_min_letters'] - 3},}}eth)(?!{_L})")
_ETH_STOP = frozenset(_FORMS["eth_stoplist"])
_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"'\u2019\u201d)\]]*\s+|\n[ \t]*\n\s*")
_ABBREV = re.compile(r"(?<!{0})(?:mr|mrs|dr|st|sr|viz|mt)\.$".format(_L), re.IGNORECASE)


def normalise(text: str) -> str:
    """NFKC (long s -> s, ligatures split) and lowercase: what every count below sees."""
    return unicodedata.normalize("NFKC", text).lower()


def count_words(text: str) -> int:
    """Words by the module's definition (the denominator of every per-1,000-words figure in evals/)."""
    return len(WORD_RE.findall(text))


def split_sentences(norm_text: str) -> list[tuple[str, list[str]]]:
    """(sentence text, its words) for each sentence of normalised text; pieces without a word are dropped."""
    out: list[tuple[str, list[str]]] = []
    carry = ""
    for piece in _SENT_SPLIT.split(norm_text):
        piece = carry + piece
        if _ABBREV.search(piece.rstrip()):
            carry = piece + " "
            continue
        carry = ""
        if ws := WORD_RE.findall(piece):
            out.append((piece, ws))
    if carry and (ws := WORD_RE.findall(carry)):
        out.append((carry, ws))
    return out


def sentences(text: str) -> list[list[str]]:
    """Sentences of a text as lists of lowercased words."""
    return [ws for _, ws in split_sentences(normalise(text))]


def passages(sents: list, size: int) -> list[list]:
    """Group split_sentences() pairs into passages of >= size words; a last one under size/2 joins the one
    before."""
    out: list[list] = []
    cur: list = []
    n = 0
    for s in sents:
        cur.append(s)
        n += len(s[1])
        if n >= size:
            out.append(cur)
            cur, n = [], 0
    if cur:
        if out and n < size / 2:
            out[-1].extend(cur)
        else:
            out.append(cur)
    return out


def syllables(word: str) -> int:
    """Syllable heuristic: groups of vowels (a e i o u y), less a silent final -e (not after a consonant in
    -le: "table" = 2), at least 1. Exact on the test words (the, over, lazy, table, make, people); it
    over-counts silent -ed ("walked" = 2). Percentiles compare texts scored by this same heuristic."""
    w = word.lower().replace("'", "").replace("\u2019", "")
    n = len(re.findall(r"[aeiouy]+", w))
    if n > 1 and w.endswith("e") and not (w.endswith("le") and len(w) > 2 and w[-3] not in "aeiouy"):
        n -= 1
    return max(n, 1)


_syll = lru_cache(maxsize=200_000)(syllables)


def mattr(words: list[str], window: int) -> float:
    """Moving-average type-token ratio: mean distinct/window over every window of `window` words; the plain
    type-token ratio when the text is shorter than one window. 1.0 when no word repeats within a window."""
    n = len(words)
    if n == 0:
        return 0.0
    if n <= window:
        return len(set(words)) / n
    counts = Counter(words[:window])
    total = len(counts)
    for i in range(window, n):
        new, old = words[i], words[i - window]
        counts[new] += 1
        counts[old] -= 1
        if counts[old] == 0:
            del counts[old]
        total += len(counts)
    return total / ((n - window + 1) * window)


def distinct_n(words: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams (Li et al. 2016); 0.0 when the text has fewer than n words."""
    grams = list(zip(*(words[i:] for i in range(n))))
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_share(words: list[str], n: int = 4) -> float:
    """Share of n-gram positions whose n-gram occurs more than once ("a b c d a b c d": 2 of 5 = 0.4)."""
    counts = Counter(zip(*(words[i:] for i in range(n))))
    total = sum(counts.values())
    return sum(c for c in counts.values() if c > 1) / total if total else 0.0


def archaic_counts(norm_text: str) -> Counter:
    """Counts of the forms in profile_forms.json, "art" after/before "thou", and "-eth" verbs, in normalised text."""
    c = Counter(_VARIANT[m] for m in _ARCHAIC_RE.findall(norm_text))
    if arts := len(_ART_RE.findall(norm_text)):
        c["art"] = arts
    if eth := sum(1 for w in _ETH_RE.findall(norm_text) if w not in _ETH_STOP):
        c["-eth"] = eth
    return c


def _length_dependent(words: list[str]) -> dict:
    return {"distinct_1": distinct_n(words, 1), "distinct_2": distinct_n(words, 2),
            "distinct_3": distinct_n(words, 3), "repeated_4gram_share": repeated_share(words, 4)}


def measure(sents: list[tuple[str, list[str]]], cfg: ProfileConfig = DEFAULT) -> tuple[dict, Counter]:
    """Every metric of one stretch of text given as split_sentences() pairs."""
    words = [w for _, ws in sents for w in ws]
    arch = archaic_counts(" ".join(t for t, _ in sents))
    n = len(words)
    if n == 0:
        return {m: 0.0 for m in METRICS} | {"sentences": 0, "words": 0}, arch
    lens = [len(ws) for _, ws in sents]
    wps, spw = n / len(sents), sum(map(_syll, words)) / n
    m = {
        "archaic_per_1000": 1000 * sum(arch.values()) / n,
        "mattr": mattr(words, cfg.mattr_window),
        **_length_dependent(words),
        # Flesch (1948) and Kincaid et al. (1975) with the syllable heuristic above.
        "flesch_reading_ease": 206.835 - 1.015 * wps - 84.6 * spw,
        "flesch_kincaid_grade": 0.39 * wps + 11.8 * spw - 15.59,
        "words_per_sentence_mean": wps,
        "words_per_sentence_sd": statistics.pstdev(lens) if len(lens) > 1 else 0.0,
        "long_sentence_share": sum(x > cfg.long_sentence for x in lens) / len(lens),
        "sentences": len(sents), "words": n,
    }
    return m, arch


def _sample(text: str, cfg: ProfileConfig) -> str:
    """`sample_windows` evenly spaced slices of a long text, each trimmed to whole paragraphs/sentences."""
    k = cfg.sample_windows
    size = cfg.max_chars // k
    step = (len(text) - size) / max(k - 1, 1)
    parts = []
    for i in range(k):
        chunk = text[int(i * step): int(i * step) + size]
        lo = min((j for j in (chunk.find("\n\n"), chunk.find(". ")) if j >= 0), default=0)
        hi = max(chunk.rfind("\n\n"), chunk.rfind(". ") + 1)
        parts.append(chunk[lo:hi if hi > lo else len(chunk)].strip(" .\n"))
    return "\n\n".join(parts)


def profile(text: str, year: int | None = None, *, corpus_dir: str | Path | None = None,
            reference_data: dict | None = None, cfg: ProfileConfig = DEFAULT) -> dict:
    """Profile `text`; `percentiles` against corpus passages of `year`'s period (all periods when year is None).

    Returns {"metrics": {name: value}, "archaic_counts": {form: n}, "percentiles": {name: 0..100},
    "period": str|None, "reference_passages": int, "words": int, "sentences": int, "passages": int,
    "sampled": bool, "notes": [str]}. Percentiles are mid-ranks: 100 * (below + equal/2) / n. No percentiles
    (and a note) when corpus_dir is None (no default folder is read) or not a built corpus; pass
    reference_data to skip the lookup.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if year is not None and (not isinstance(year, numbers.Integral) or isinstance(year, bool)):
        raise TypeError(f"year must be an int or None, got {type(year).__name__}")
    year = None if year is None else int(year)
    notes: list[str] = []
    sampled = len(text) > cfg.max_chars
    if sampled:
        notes.append(f"sampled {cfg.max_chars:,} of {len(text):,} chars in {cfg.sample_windows} windows")
        text = _sample(text, cfg)
    sents = split_sentences(normalise(normalize_text(text)))  # input read as the corpus was (engine/normalize.py)
    metrics, arch = measure(sents, cfg)
    parts = passages(sents, cfg.passage_words)
    if len(parts) > 1:  # length-dependent metrics: mean over passages, as measured in the reference
        per = [_length_dependent([w for _, ws in p for w in ws]) for p in parts]
        for name in per[0]:
            metrics[name] = statistics.fmean(p[name] for p in per)
    out = {"metrics": {k: round(float(metrics[k]), 6) for k in METRICS}, "archaic_counts": dict(arch),
           "percentiles": {}, "period": None, "reference_passages": 0, "words": metrics["words"],
           "sentences": metrics["sentences"], "passages": len(parts), "sampled": sampled, "notes": notes}
    if metrics["words"] == 0:
        notes.append("empty text: no words, all metrics 0 and no percentiles")
        return out
    ref = reference_data
    if ref is None and corpus_dir is not None:
        try:
            ref = reference(corpus_dir, cfg=cfg)
        except (CorpusError, OSError, ValueError) as e:  # no built corpus: profile anyway, say why
            notes.append(f"no percentiles: reference unavailable ({type(e).__name__}: {e})")
    elif ref is None:
        notes.append("no percentiles: no corpus given (corpus_dir) to compare with")
    if ref is not None:
        key, group = period_group(ref, year)
        if key != period_key(year) and year is not None:
            notes.append(f"year {year}: reference period {key} (its half-century is sparse or absent)")
        out["period"], out["reference_passages"] = key, group["passages"]
        out["percentiles"] = {k: percentile(out["metrics"][k], group["values"][k]) for k in METRICS}
    return out


# ---- reference distributions --------------------------------------------------------------------------

def period_key(year: int | None, span: int = 50) -> str:
    if year is None:
        return "all"
    lo = year // span * span
    return f"{lo}-{lo + span - 1}"


def period_group(ref: dict, year: int | None) -> tuple[str, dict]:
    """(key, group) for a year: its half-century, else its century (pooled when sparse), else all periods."""
    for key in (period_key(year, 50), period_key(year, 100)) if year is not None else ():
        if key in ref["periods"]:
            return key, ref["periods"][key]
    return "all", ref["all"]


def percentile(value: float, sorted_values: list[float]) -> float | None:
    """Mid-rank percentile of value among sorted_values (ties count half): non-decreasing in value, 0..100."""
    n = len(sorted_values)
    if n == 0:
        return None
    lo, hi = bisect.bisect_left(sorted_values, value), bisect.bisect_right(sorted_values, value)
    return round(100.0 * (lo + (hi - lo) / 2) / n, 2)


def _spread(items: list, k: int) -> list:
    """k evenly spaced items (all when there are at most k)."""
    if len(items) <= k:
        return items
    return [items[int(i * len(items) / k)] for i in range(k)]


def build_reference(corpus_dir: str | Path, cfg: ProfileConfig = DEFAULT) -> dict:
    """Metric values of up to cfg.per_period passages per half-century of the corpus (cfg.splits), pooled
    into centuries where a half-century has fewer than cfg.min_passages; values sorted per metric."""
    report = load_report(corpus_dir)
    chosen: dict[int, list[tuple[str, str]]] = {}  # half-century -> [(hash, passage text)]
    for split in cfg.splits:
        for doc in iter_documents(corpus_dir, split):
            year = doc.get("year")
            if not isinstance(year, int):
                continue
            parts = passages(split_sentences(normalise(doc["text"])), cfg.passage_words)
            for i, p in enumerate(_spread(parts, cfg.per_doc)):
                h = hashlib.sha1(f"{doc['id']}#{i}".encode()).hexdigest()
                chosen.setdefault(year // 50 * 50, []).append((h, "\n\n".join(t for t, _ in p)))
    halves: dict[int, list[dict]] = {}
    for half, items in chosen.items():
        items.sort(key=lambda hp: hp[0])
        # passages are kept as text (a blank line between sentences re-splits them identically): ~30 MB for
        # 14k candidate passages, where word lists would take ~250 MB
        halves[half] = [measure(split_sentences(t), cfg)[0] for _, t in items[:cfg.per_period]]
    groups: dict[str, list[dict]] = {}
    for half, rows in halves.items():
        if len(rows) >= cfg.min_passages:
            groups[period_key(half, 50)] = rows
        else:  # pool both halves of the century; a rich other half keeps its own group as well
            c = half // 100 * 100
            groups[period_key(c, 100)] = halves.get(c, []) + halves.get(c + 50, [])
    every = [r for rows in halves.values() for r in rows]
    pack = lambda rows: {"passages": len(rows),  # noqa: E731
                         "values": {m: sorted(round(r[m], 6) for r in rows) for m in METRICS}}
    return {"version": VERSION, "fingerprint": _fingerprint(corpus_dir, report), "config": _cfg_json(cfg),
            "periods": {k: pack(v) for k, v in sorted(groups.items())}, "all": pack(every)}


def _fingerprint(corpus_dir: str | Path, report: dict | None = None) -> str:
    report = report if report is not None else load_report(corpus_dir)
    fp = report.get("fingerprint")
    return str(fp) if fp else hashlib.sha256((Path(corpus_dir) / "report.json").read_bytes()).hexdigest()


def _cfg_json(cfg: ProfileConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def cache_path(corpus_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    """<cache_dir>/profile/<corpus fingerprint>.json; cache_dir defaults to the corpus folder's sibling "cache"."""
    base = Path(cache_dir) if cache_dir is not None else Path(corpus_dir).resolve().parent / "cache"
    return base / "profile" / f"{_fingerprint(corpus_dir)}.json"



@lru_cache(maxsize=4)
def _load(corpus_dir: str, fingerprint: str, cache_dir: str | None, cfg: ProfileConfig) -> dict:
    path = cache_path(corpus_dir, cache_dir)
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if (data.get("version"), data.get("fingerprint"), data.get("config")) == (
                    VERSION, fingerprint, _cfg_json(cfg)):
                return data
        except (OSError, ValueError):
            pass  # a truncated or foreign cache file is rebuilt below
    data = build_reference(corpus_dir, cfg)
    write_json_atomic(path, data, compact=True)
    return data


def reference(corpus_dir: str | Path, *, cache_dir: str | Path | None = None,
              cfg: ProfileConfig = DEFAULT) -> dict:
    """The reference distributions of a built corpus: read from cache_path() when it matches the corpus
    fingerprint, VERSION and cfg, else built (build_reference: 15 s for the 11.5M-word corpus here) and
    cached (0.66 MB JSON). Memoised per process.
    Raises engine.corpus_io.CorpusError when corpus_dir is not a built corpus."""
    return _load(str(Path(corpus_dir).resolve()), _fingerprint(corpus_dir),
                 None if cache_dir is None else str(cache_dir), cfg)

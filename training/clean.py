"""Text cleaning and quality rules for corpus documents: the document form of the one normalisation
(engine/normalize.py, shared with prompts, the tokenizer and the evaluators), word counts, and the explicit
reasons a document is rejected (too short, not English, illegible, garbage).

Plain functions; training/pipeline.py wraps them as datatrove steps.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.normalize import NormalizeConfig, normalize

GAP_MARKER = "\u3008\u2026\u3009"  # 〈…〉, same default as training/extract.py; holds no letter, so it is never a word
# A word is a run of letters, with inner apostrophes ('tis is one word, as is o'clock). Digits and the gap
# marker are not words.
WORD_RE = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)*")


@dataclass(frozen=True)
class CleanConfig:
    """Cleaning and filtering thresholds. Each threshold's evidence is in the comment beside it."""

    # Documents shorter than this are fragments (title pages, colophons, running heads that survived).
    min_words: int = 50
    # Language rule: counted over training/function_words.tsv. A document is rejected as foreign when
    # foreign function words outnumber English ones and there are at least `min_foreign_hits` of them;
    # English prose runs ~40% function-word tokens from that list, Latin quotations inside English
    # prose stay far below half, so only documents that are mostly Latin/French are dropped.
    min_foreign_hits: int = 5
    # Illegible: more than one gap marker per 10 words means the transcription is mostly gaps.
    max_gaps_per_word: float = 0.10
    # Garbage: letters must be at least this share of non-space characters; tables of figures and
    # OCR debris fall below it, while verse with heavy punctuation stays above 0.75.
    min_letter_share: float = 0.60


_WHITESPACE = re.compile(r"\s+")


def clean_text(text: str, keep_long_s: bool = False) -> str:
    """The one normalisation (engine/normalize.py: mojibake repair, line breaks, invisible characters,
    ligatures, long s, curly quotes, vv, spaces, blank lines, NFC) with the document's ends stripped."""
    return normalize(text, NormalizeConfig(keep_long_s=keep_long_s)).strip()


def words(text: str) -> list[str]:
    return WORD_RE.findall(text)


def count_words(text: str) -> int:
    return sum(1 for _ in WORD_RE.finditer(text))


@lru_cache(maxsize=1)
def function_words() -> dict[str, frozenset[str]]:
    langs: dict[str, set[str]] = {}
    for line in (Path(__file__).with_name("function_words.tsv")).read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            lang, word = line.split("\t")
            langs.setdefault(lang, set()).add(word)
    return {k: frozenset(v) for k, v in langs.items()}


def language_counts(tokens: list[str]) -> Counter:
    """Function-word hits per language ('en', 'la', 'fr'); a word in two foreign lists counts for both."""
    fw = function_words()
    counts: Counter = Counter()
    for w in tokens:
        w = w.lower()
        for lang, vocab in fw.items():
            if w in vocab:
                counts[lang] += 1
    return counts


def rejection_reason(text: str, cfg: CleanConfig = CleanConfig(), gap_marker: str = GAP_MARKER) -> str | None:
    """Why a cleaned document should be dropped, or None to keep it. Reasons are stable report keys."""
    tokens = words(text)
    n = len(tokens)
    if n < cfg.min_words:
        return "too_short"
    gaps = text.count(gap_marker) if gap_marker else 0
    if gaps / n > cfg.max_gaps_per_word:
        return "illegible"
    nonspace = len(_WHITESPACE.sub("", text)) - gaps * len(gap_marker)
    letters = sum(len(t) for t in tokens) - sum(t.count("'") + t.count("\u2019") for t in tokens)
    if nonspace and letters / nonspace < cfg.min_letter_share:
        return "garbage"
    counts = language_counts(tokens)
    foreign = max((lang for lang in counts if lang != "en"), key=lambda k: counts[k], default=None)
    if foreign and counts[foreign] >= cfg.min_foreign_hits and counts[foreign] > counts["en"]:
        return {"la": "latin", "fr": "french"}.get(foreign, "foreign")
    return None

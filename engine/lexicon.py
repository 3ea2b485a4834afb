"""Dated lexicon: loads engine/lexicon.tsv (terms with the earliest year a writer could have used them) and
looks words and phrases up by whole normalised form. Owns parsing, validation, normalisation and the
plural/possessive rule; the anachronism detector and time-locked decoding build on `Lexicon.lookup` and
`Lexicon.forms` and are not here.

Matching is on whole forms only, never substrings: the seed checker flagged "ye" inside "year" and "art"
inside "heart". Category "polysemous" marks forms that also have an older, undatable generic sense
("great fire", Latin "radio"); callers must not flag those on their own (see the TSV header).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

DEFAULT_PATH = Path(__file__).with_name("lexicon.tsv")
COLUMNS = ("term", "variants", "earliest_year", "basis", "category", "note")
YEAR_RANGE = (1000, 2100)
BASES = frozenset({"first_use", "invention", "founding", "event", "coinage", "building", "street"})
CATEGORIES = frozenset({
    "technology", "transport", "instrument", "science", "medicine", "food", "commodity", "clothing",
    "finance", "print", "institution", "building", "street", "event", "polity", "word", "polysemous",
})

# Hyphen-like marks joining compounds in print and OCR: ASCII hyphen, Unicode hyphen/non-breaking hyphen,
# figure/en/em dashes, horizontal bar and the double oblique hyphen of early type (U+2E17).
_HYPHENS = re.compile(r"[-\u2010\u2011\u2012\u2013\u2014\u2015\u2e17]")
# Curly and modifier apostrophes -> ASCII "'" so "Nelson’s Column" matches "Nelson's Column".
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u2032\u00b4`"})
_SPACES = re.compile(r"\s+")
# Punctuation a caller may leave on a token ("Telegraph,"); stripped only as a fallback so that listed
# forms with their own punctuation ("o.k.", "'bus") still match first.
_EDGE_PUNCT = ".,;:!?\"()[]{}'"
_ES_AFTER = ("s", "x", "z", "ch", "sh", "o")  # English plural -es follows sibilants and some -o nouns


@dataclass(frozen=True)
class Entry:
    term: str
    variants: tuple[str, ...]
    year: int
    basis: str
    category: str
    note: str


def normalize(form: str) -> str:
    """Lowercase; hyphens and runs of whitespace -> one space; curly apostrophes -> "'".

    NFKC first folds compatibility characters: long s (ſ -> s) and ligatures (ﬁ -> fi) of period print.
    A soft hyphen (U+00AD) marks a possible line break inside one word, so it is removed, not spaced.
    """
    s = unicodedata.normalize("NFKC", form).replace("\u00ad", "")
    s = _HYPHENS.sub(" ", s.translate(_APOSTROPHES)).lower()
    return _SPACES.sub(" ", s).strip()


def base_forms(normalized: str) -> list[str]:
    """Candidate dictionary forms of a normalised word or phrase, most specific first.

    Only the last word is inflected ("steam engines" -> "steam engine"). Rule: possessive 's / s', then
    plural -ies -> -y (after a consonant), -es after s/x/z/ch/sh/o, and -s (not after s: "glass" is no
    plural). A stem must keep 3 letters: the corpus mirror has split-word fragments such as "b oks" (1774)
    that would otherwise become "ok". Verb endings (-ed, -ing) are not stripped: "married" must not find
    "marry", and forms such as "vaccinated" are listed explicitly instead.
    """
    out = [normalized]
    head, _, last = normalized.rpartition(" ")
    prefix = head + " " if head else ""
    stems = []
    if last.endswith("'s") and len(last) > 2:
        stems.append(last[:-2])
    elif last.endswith("s'") and len(last) > 2:
        stems.append(last[:-1])
    for word in stems + [last]:
        if word.endswith("ies") and len(word) >= 5 and word[-4] not in "aeiou":
            stems.append(word[:-3] + "y")
        if word.endswith("es") and word[:-2].endswith(_ES_AFTER) and len(word) >= 5:
            stems.append(word[:-2])
        if word.endswith("s") and not word.endswith("ss") and len(word) >= 4:
            stems.append(word[:-1])
    for stem in stems:
        cand = prefix + stem
        if cand not in out:
            out.append(cand)
    return out


@dataclass(frozen=True)
class Lexicon:
    entries: tuple[Entry, ...]
    _forms: Mapping[str, Entry] = field(repr=False)

    def __len__(self) -> int:
        return len(self.entries)

    def forms(self) -> dict[str, Entry]:
        """Every listed surface form (term and variants), normalised -> its entry. Inflected forms are not
        expanded here; pass a candidate n-gram through `lookup` (or `base_forms`) for those."""
        return dict(self._forms)

    @property
    def max_words(self) -> int:
        """Longest listed form in words: the n-gram width a phrase matcher needs to scan."""
        return max(len(f.split(" ")) for f in self._forms)

    def lookup(self, word_or_phrase: str) -> Entry | None:
        """Entry whose listed form equals the whole normalised input, allowing plural/possessive endings on
        its last word; None otherwise (never a substring match)."""
        n = normalize(word_or_phrase)
        tries = [n]
        stripped = n.strip(_EDGE_PUNCT).strip()
        if stripped != n:
            tries.append(stripped)
        for t in tries:
            for cand in base_forms(t):
                hit = self._forms.get(cand)
                if hit is not None:
                    return hit
        return None


def _parse_row(cells: list[str], where: str) -> Entry:
    if len(cells) != len(COLUMNS):
        raise ValueError(f"{where}: expected {len(COLUMNS)} tab-separated columns {COLUMNS}, got {len(cells)}")
    term, variants, year_s, basis, category, note = (c.strip() for c in cells)
    if not term:
        raise ValueError(f"{where}: empty term")
    parts = tuple(v.strip() for v in variants.split("|")) if variants else ()
    if any(not v for v in parts):
        raise ValueError(f"{where}: empty variant in {variants!r} (variants are '|'-separated)")
    try:
        year = int(year_s)
    except ValueError:
        raise ValueError(f"{where}: earliest_year {year_s!r} is not an integer "
                         f"(allowed {YEAR_RANGE[0]}..{YEAR_RANGE[1]})") from None
    if not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        raise ValueError(f"{where}: earliest_year {year} out of range {YEAR_RANGE[0]}..{YEAR_RANGE[1]}")
    if basis not in BASES:
        raise ValueError(f"{where}: basis {basis!r} not one of {sorted(BASES)}")
    if category not in CATEGORIES:
        raise ValueError(f"{where}: category {category!r} not one of {sorted(CATEGORIES)}")
    if category == "polysemous" and not note:
        raise ValueError(f"{where}: a polysemous entry needs a note saying what the older sense is")
    return Entry(term, parts, year, basis, category, note)


def load_lexicon(path: str | Path = DEFAULT_PATH) -> Lexicon:
    """Parse and validate the TSV. Raises ValueError naming file and line for a bad column count, a
    non-integer or out-of-range year, an unknown basis or category, or a form (after `normalize`) that
    appears in two entries. Variants of one entry that normalise alike ("steam-engine", "steam engine")
    are allowed and collapse."""
    path = Path(path)
    entries: list[Entry] = []
    forms: dict[str, Entry] = {}
    form_line: dict[str, int] = {}
    header_seen = False
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            where = f"{path}:line {lineno}"
            cells = line.split("\t")
            if not header_seen:
                if tuple(c.strip() for c in cells) != COLUMNS:
                    raise ValueError(f"{where}: header must be {COLUMNS}, got {tuple(cells)}")
                header_seen = True
                continue
            entry = _parse_row(cells, where)
            for surface in (entry.term, *entry.variants):
                key = normalize(surface)
                if not key:
                    raise ValueError(f"{where}: form {surface!r} is empty after normalisation")
                other = forms.get(key)
                if other is not None and other is not entry:
                    raise ValueError(f"{where}: form {surface!r} (normalised {key!r}) duplicates "
                                     f"line {form_line[key]} ({other.term!r})")
                forms[key] = entry
                form_line.setdefault(key, lineno)
            entries.append(entry)
    if not header_seen:
        raise ValueError(f"{path}: no header row {COLUMNS}")
    return Lexicon(tuple(entries), MappingProxyType(forms))

"""Dated lexicon: loads engine/lexicon.tsv (terms with the earliest year a writer could have used them) and
looks words and phrases up by whole normalised form. Owns parsing, validation and the form key
(`normalize`); how a form may be written (plural/possessive, verb endings, compounds, early-modern
spellings) is engine/wordforms.py, shared with the anachronism detector and time-locked decoding.

Matching is on whole forms only, never substrings: the seed checker flagged "ye" inside "year" and "art"
inside "heart". Category "polysemous" marks forms that also have an older, undatable generic sense
("great fire", Latin "radio"); callers must not flag those on their own (see the TSV header).
Column "cues" (optional; '|'-separated context words) marks a form whose OLD sense is undatable but whose
LATER sense, dated by the entry, is selected by nearby words ("engine" near "locomotive" 1815): callers
flag such an entry only when a cue stands near it (evals/anachronism_cues.py says how near).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from engine.wordforms import base_forms  # noqa: F401  (re-exported: the plural/possessive rule lives there)

DEFAULT_PATH = Path(__file__).with_name("lexicon.tsv")
COLUMNS = ("term", "variants", "earliest_year", "basis", "category", "note", "cues")
LEGACY_COLUMNS = COLUMNS[:6]  # files without sense cues (older copies, test fixtures) still load
YEAR_RANGE = (1000, 2100)
BASES = frozenset({"first_use", "approximate", "invention", "founding", "event", "coinage", "building", "street"})
CATEGORIES = frozenset({
    "technology", "transport", "instrument", "science", "medicine", "food", "commodity", "clothing",
    "finance", "print", "institution", "building", "street", "event", "polity", "word", "polysemous",
    "drink", "sport", "slang", "trade", "politics",
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


@dataclass(frozen=True)
class Entry:
    term: str
    variants: tuple[str, ...]
    year: int
    basis: str
    category: str
    note: str
    cues: tuple[str, ...] = ()  # normalised context words selecting the dated (later) sense; () = none


def normalize(form: str) -> str:
    """Lowercase; hyphens and runs of whitespace -> one space; curly apostrophes -> "'".

    NFKC first folds compatibility characters: long s (ſ -> s) and ligatures (ﬁ -> fi) of period print.
    A soft hyphen (U+00AD) marks a possible line break inside one word, so it is removed, not spaced.
    """
    s = unicodedata.normalize("NFKC", form).replace("\u00ad", "")
    s = _HYPHENS.sub(" ", s.translate(_APOSTROPHES)).lower()
    return _SPACES.sub(" ", s).strip()


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


def _parse_row(cells: list[str], where: str, columns: tuple[str, ...] = COLUMNS) -> Entry:
    if len(cells) != len(columns):
        raise ValueError(f"{where}: expected {len(columns)} tab-separated columns {columns}, got {len(cells)}")
    term, variants, year_s, basis, category, note, cues_s = (*(c.strip() for c in cells), "")[:7]
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
    cues = tuple(normalize(c) for c in cues_s.split("|")) if cues_s else ()
    if any(not c for c in cues):
        raise ValueError(f"{where}: empty cue in {cues_s!r} (cues are '|'-separated context words)")
    if cues and (category == "polysemous" or not note):
        raise ValueError(f"{where}: a cued entry needs a real category (not 'polysemous') and a note "
                         f"saying what the older sense is")
    return Entry(term, parts, year, basis, category, note, cues)


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
    columns = COLUMNS
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            where = f"{path}:line {lineno}"
            cells = line.split("\t")
            if not header_seen:
                columns = tuple(c.strip() for c in cells)
                if columns not in (COLUMNS, LEGACY_COLUMNS):
                    raise ValueError(f"{where}: header must be {COLUMNS} (or without 'cues'), got {tuple(cells)}")
                header_seen = True
                continue
            entry = _parse_row(cells, where, columns)
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

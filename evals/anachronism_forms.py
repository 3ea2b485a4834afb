"""Surfaces and the compiled matcher of the anachronism detector: every written form it looks for (lexicon
forms with the written forms engine/wordforms.py derives - plural, possessive, verb endings, solid
compounds, early-modern spellings, the same set the time lock bans; strong corpus-only words), each with the year
threshold below which it is flagged, compiled into ONE trie-shaped regex. Owns the length-preserving
character fold. The margins and evidence thresholds themselves are stated in evals/anachronism.py.

Why one trie regex: scanning with a regex whose alternatives share prefixes costs one failed character
test at most positions, so Python does work only per hit (lexicon terms are rare in real text). On the
validation split (596K words, CPU time on this machine) the scan runs at 4.5M words/s with the word-boundary
lookbehind first (2.4M with the branch first), while merely tokenising every word (re.findall) runs at
2.2M words/s, before any per-word lookup.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from engine.firstseen import FirstSeenTable, StrongRule, spelling_key, strong_words
from engine.lexicon import load_lexicon
from engine.normalize import char_map
from engine.wordforms import inflections, surfaces as derived_forms  # noqa: F401  (inflections: re-export)

CORPUS = "corpus"  # basis of findings whose only evidence is the corpus first-seen table
NEVER = -10**9     # threshold of polysemous forms: no year is below it, so they are never flagged

# The one text normalisation (engine/normalize.py) cannot rewrite a text whose spans are reported, so the
# detector reads its character table as a fold. Length-preserving part, applied before lower(): every
# character the table maps to one character (long s, curly quotes, Unicode spaces), plus word-key folds of
# its own: prime/acute/backtick as apostrophes, hyphen-like dashes, and dotted capital I (the one character
# whose lower() is two characters long). Applied as a chain of str.replace, each skipped when its character
# is absent: str.translate with a dict took 0.65 s on the 3.3M-character validation split, the chain 0.01 s.
_TABLE = char_map()
FOLD = (*((c, r) for c, r in _TABLE.items() if len(r) == 1), *((c, "'") for c in "\u2032\u00b4`"),
        *((c, "-") for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2e17"), ("\u0130", "i"))


def fold(s: str) -> str:
    """Lowercased, length-preserving fold of `s` (same indices as the original)."""
    for c, r in FOLD:
        if c in s:
            s = s.replace(c, r)
    return s.lower()


# Characters the table removes or expands (slow path with an offset map): soft hyphen (it marks a line-break
# point inside one word), zero-width and control characters, and ligatures (ﬁ -> fi, ﬅ -> st), lowercased.
EXPAND = {c.lower(): r.lower() for c, r in _TABLE.items() if len(r) != 1}
SLOW_CHARS = re.compile("[" + "".join(map(re.escape, EXPAND)) + "]")
SEP = r"[\s\-]{1,10}"  # between words of a multiword form: spaces, a line break, a hyphen ("steam-engine")
SEP_RE = re.compile(r"[\s\-]+")
MAX_SEP = 10


@dataclass(frozen=True)
class Matcher:
    regex: re.Pattern
    # folded surface with single spaces -> (flag when year < this, kind, payload, base form)
    # kind "lexicon": payload is the lexicon Entry; kind CORPUS: payload is (first year, texts, uses)
    surfaces: Mapping[str, tuple]
    max_len: int  # longest possible match in characters: the overlap between scan windows


def _lexicon_surfaces(lexicon_path: str, margins: Mapping[str, int],
                      table: FirstSeenTable | None) -> dict[str, tuple]:
    """Listed forms, then derived ones (engine.wordforms.surfaces: endings, "lightningrod", "vmbrella"). A
    derived single word that the corpus attests before the entry's year is left out: "carboned" (Pepys 1659,
    from carbonado) is not "carbon" + -ed."""
    surfaces: dict[str, tuple] = {}
    forms = load_lexicon(lexicon_path).forms()
    for exact in (True, False):  # listed forms first: a derived surface never shadows a listed one
        for form, entry in forms.items():
            poly = entry.category == "polysemous"
            threshold = NEVER if poly else entry.year - margins[entry.basis]
            derived = derived_forms(form, polysemous=poly, cued=bool(entry.cues))  # "trained" is not a train
            for surf in ([form] if exact else derived):
                surf = fold(surf)
                if surf in surfaces:
                    continue
                if not exact and table is not None and " " not in surf and spelling_key(surf) != spelling_key(form):
                    row = table.row(surf)  # (a possessive shares its base's key: that is suppression's job)
                    if row is not None and row.year < entry.year:
                        continue
                surfaces[surf] = (threshold, "lexicon", entry, form)
    return surfaces


def _corpus_surfaces(table: FirstSeenTable, config, margin: int, taken: Mapping[str, tuple]) -> dict[str, tuple]:
    """Strong corpus-only words (engine.firstseen.strong_words; thresholds in CheckConfig)."""
    rule = StrongRule(config.strong_from, config.strong_texts, config.strong_uses, config.strong_expected, margin)
    out: dict[str, tuple] = {}
    for key, first, texts, uses, forms in strong_words(table, rule):
        for surf in {key, *forms}:
            surf = fold(surf)
            if surf not in taken and not SLOW_CHARS.search(surf):
                out[surf] = (first - margin, CORPUS, (first, texts, uses), key)
    return out


def trie_pattern(surfaces) -> str:
    """Regex alternation shaped as a prefix trie; an optional tail is greedy, so at any start position the
    LONGEST surface wins ("royal bank of scotland" over "bank of scotland" needs no ordering)."""
    trie: dict = {}
    for s in surfaces:
        node = trie
        for ch in s:
            node = node.setdefault(ch, {})
        node[""] = {}

    def emit(node: dict) -> str:
        alts = [(SEP if ch == " " else re.escape(ch)) + emit(node[ch]) for ch in sorted(k for k in node if k)]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return r"(?<!\w)" + emit(trie) + r"(?!\w)"


def build_matcher(config, table: FirstSeenTable | None, margins: Mapping[str, int]) -> Matcher:
    """`config` is evals.anachronism.CheckConfig; margins: basis -> years (MARGINS there)."""
    surfaces = _lexicon_surfaces(config.lexicon_path, margins, table)
    if table is not None and config.corpus_evidence:
        surfaces.update(_corpus_surfaces(table, config, margins[CORPUS], surfaces))
    max_len = max(len(s) + s.count(" ") * (MAX_SEP - 1) for s in surfaces)
    regex = re.compile(trie_pattern(surfaces))
    return Matcher(regex, surfaces, max_len)

"""The one text normalisation of Anno: what the corpus build, prompts, `check`, `date`, the linguistic profile,
scoring and the tokenizer's own normalizer all apply to raw text before reading it.

Two stages:
  1. `repair` (Python only): ftfy's context-dependent fixes - mojibake (UTF-8 read as cp1252/Latin-1), HTML
     entities (only when the text holds no "<"), C1 controls, full-width forms, terminal escapes. These are
     heuristics over whole runs of text and cannot be written as the `tokenizers` library's normalizers.
  2. `RULES` (Python and tokenizer.json alike): an ordered table of exact rewrites - line breaks, invisible
     and control characters, ligatures, long s, curly quotes, "vv" -> "w", runs of spaces, spaces at line
     edges, three or more newlines - then NFC. `tokenizer_normalizer` writes the same table as a
     `normalizers.Sequence` of Replace + NFC, so stock `transformers.AutoTokenizer` (and tools built on it,
     such as lm-evaluation-harness) read raw early-modern text as the model was trained to.
`normalize(text)` = NFC(RULES(repair(text))). It never strips the ends of a text (a prompt's trailing space
is meaningful); training/clean.py strips whole documents. On text where `repair` changes nothing,
`normalize` and the tokenizer's normalizer give the same string (tests/test_normalize.py checks this on
generated strings and on raw mirror passages), and normalize(normalize(x)) == normalize(x).
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import ftfy
from ftfy.chardata import CONTROL_CHARS, LIGATURES

# ftfy, with the steps that RULES carries switched off (so that the tokenizer can do exactly those). Its
# ligature step stays on for the Dutch/Serbian digraphs (ĳ, ǆ, ŉ ...) RULES leaves out: every Replace is one
# more pass of the tokenizer over the text (34 Replace + NFC took 3.6 s on 644K characters of Brontë, 17 took
# 2.0 s, NFC alone 0.2 s; shared, loaded CPU), and period English type has only the seven ligatures below.
_REPAIR = ftfy.TextFixerConfig(uncurl_quotes=False, fix_line_breaks=False, remove_control_chars=False,
                               normalization=None, explain=False)
_TYPE_LIGATURES = "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"  # ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ

# Invisible format characters dropped from text: soft hyphen (a possible line break inside one word), zero
# width space/joiners, word joiner (Standard Ebooks puts U+2060 around every dash: 15,687 in the mirror), BOM,
# the noncharacters U+FDD0-FDD5, and ftfy's "likely unintended" control characters (C0 except tab, line feed,
# form feed and carriage return; DEL; U+206A-206F; U+FFF9-FFFC).
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff" + "".join(map(chr, range(0xFDD0, 0xFDD6))) + "".join(
    chr(c) for c in sorted(CONTROL_CHARS) if chr(c) not in "\ufeff")
# ftfy's uncurl_quotes sets (chardata.SINGLE_QUOTE_RE, DOUBLE_QUOTE_RE).
_SINGLE_QUOTES = "\u02bc\u2018\u2019\u201a\u201b"
_DOUBLE_QUOTES = "\u201c\u201d\u201e\u201f"
# Space characters that become one ASCII space (runs of them, with tabs, become one space).
_SPACES = " \t\u00a0" + "".join(map(chr, range(0x2000, 0x200B))) + "\u202f\u205f\u3000"


# y and every precomposed y with a diacritic (ý ÿ ŷ ẏ ỳ ỵ ỷ ỹ ẙ), which NFC makes of y + combining mark.
_Y = "y\u00fd\u00ff\u0177\u1e8f\u1ef3\u1ef5\u1ef7\u1ef9\u1e99"


def _cls(chars: str) -> str:
    """A regex character class matching exactly `chars`, valid in Python re and in Oniguruma (tokenizers)."""
    return "[" + "".join(map(_esc, chars)) + "]"


def _esc(c: str) -> str:
    # Control characters as \xHH (both engines read it), other ASCII punctuation backslash-escaped; every
    # other character stands for itself.
    o = ord(c)
    if o < 0x20 or o == 0x7F:
        return "\\x%02X" % o
    if o < 0x80 and not c.isalnum():
        return "\\" + c
    return c


@dataclass(frozen=True)
class Rule:
    """One named rewrite: every (regex, replacement) pair in order. Counts are reported per rule name."""
    name: str
    what: str
    pairs: tuple[tuple[str, str], ...]


def _rules(keep_long_s: bool) -> tuple[Rule, ...]:
    rules = [
        Rule("line_breaks", "CR LF, CR, U+2028/2029, NEL -> LF", (("\r\n|" + _cls("\r\u2028\u2029\u0085"), "\n"),)),
        Rule("invisible", "soft hyphen, zero-width and control characters removed", ((_cls(_INVISIBLE), ""),)),
        # ftfy's Latin typographic ligatures (ﬅ -> ſt before long s below; ﬁ -> fi), one Replace each.
        Rule("ligatures", "typographic ligatures split (ﬁ -> fi, ﬅ -> ſt)",
             tuple((_cls(c), LIGATURES[ord(c)]) for c in _TYPE_LIGATURES)),
    ]
    if not keep_long_s:
        rules.append(Rule("long_s", "long s ſ -> s", (("\u017f", "s"),)))
    rules += [
        # Curly quotes become straight ones: ’tis and 'tis are then one form for tokenizer and lexicon.
        Rule("quotes", "curly/modifier quotes -> ' and \"",
             ((_cls(_SINGLE_QUOTES), "'"), (_cls(_DOUBLE_QUOTES), '"'))),
        # Type cases short of w set "vv" (1,932 words in the raw mirror: vvith 138, vvhich 137, novv 10 ...). No
        # mirror word has "vvy"; the lookahead keeps later savvy (1785), navvy (1832), divvy as they are. It also
        # skips the accented y's: "vvy" + U+0301 became "vvý" under the final NFC, and a second pass then made it
        # "wý", so normalize was not idempotent (found by tests/reliability/test_fuzz.py).
        Rule("vv", "vv -> w (vvhich -> which), not before y",
             ((f"vv(?![{_Y}])", "w"), (f"VV(?![{_Y.upper()}])|Vv(?![{_Y}])", "W"))),
        Rule("spaces", "runs of spaces, tabs and Unicode spaces -> one space",
             ((_cls(_SPACES) + "{2,}|" + _cls(_SPACES[1:]), " "),)),  # a lone " " is no match: counts stay honest
        Rule("line_edges", "spaces around a line break removed", (("\\ +\n\\ *|\n\\ +", "\n"),)),
        Rule("blank_lines", "three or more line breaks -> one blank line", (("\n\n\n+", "\n\n"),)),
    ]
    return tuple(rules)


@dataclass(frozen=True)
class NormalizeConfig:
    """keep_long_s: leave ſ as printed (a corpus built with --keep-long-s needs a tokenizer that keeps it)."""
    keep_long_s: bool = False

    def __post_init__(self):
        if not isinstance(self.keep_long_s, bool):
            raise ValueError(f"keep_long_s={self.keep_long_s!r} must be True or False")


@lru_cache(maxsize=4)
def rules(cfg: NormalizeConfig = NormalizeConfig()) -> tuple[Rule, ...]:
    return _rules(cfg.keep_long_s)


@lru_cache(maxsize=4)
def _compiled(cfg: NormalizeConfig) -> tuple[tuple[str, tuple[tuple[re.Pattern, str], ...]], ...]:
    return tuple((r.name, tuple((re.compile(p), s) for p, s in r.pairs)) for r in rules(cfg))


def repair(text: str) -> str:
    """ftfy's mojibake, HTML-entity, C1, width and escape fixes (stage 1); the identity on clean text. ASCII
    text with no "&" (an entity) and no ESC (a terminal escape) has nothing those fixes act on, and skips
    ftfy (0.15 ms of a prompt's 0.3 ms; tests/test_normalize.py checks the identity against ftfy)."""
    if text.isascii() and "&" not in text and "\x1b" not in text:
        return text
    return ftfy.fix_text(text, _REPAIR)


def apply_rules(text: str, cfg: NormalizeConfig = NormalizeConfig(), counts: Counter | None = None) -> str:
    """RULES then NFC (stage 2): exactly what tokenizer_normalizer(cfg) does. counts: +matches per rule."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    for name, pairs in _compiled(cfg):
        for rx, sub in pairs:
            if counts is None:
                text = rx.sub(sub, text)
            else:
                text, n = rx.subn(sub, text)
                if n:
                    counts[name] += n
    nfc = unicodedata.normalize("NFC", text)
    if counts is not None and nfc != text:
        counts["nfc"] += 1  # texts changed by NFC (characters composed), not characters
    return nfc


def normalize(text: str, cfg: NormalizeConfig = NormalizeConfig(), counts: Counter | None = None) -> str:
    """The one normalisation: NFC(RULES(repair(text))). Ends are not stripped. counts (optional) gets
    matches per rule name, "repair" (texts ftfy changed) and "nfc" (texts NFC changed)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    fixed = repair(text)
    if counts is not None and fixed != text:
        counts["repair"] += 1
    out = apply_rules(fixed, cfg, counts)
    # A rule can uncover mojibake that a removed character hid ("Â\x0b\x95" -> "Â\x95" -> "•", found by
    # tests/test_normalize.py): repeat until repair changes nothing, as ftfy itself does, so normalize is
    # idempotent. On clean text this costs one more repair scan.
    for _ in range(4):
        again = repair(out)
        if again == out:
            break
        out = apply_rules(again, cfg, counts)
    return out


def rule_counts(texts: Iterable[str], cfg: NormalizeConfig = NormalizeConfig()) -> dict:
    """What the normaliser maps in texts: {"texts", "changed", "rules": {name: matches}} (the tokenizer report)."""
    counts: Counter = Counter()
    n = changed = 0
    for t in texts:
        n += 1
        changed += normalize(t, cfg, counts) != t
    return {"texts": n, "changed": changed,
            "rules": {name: counts.get(name, 0) for name in ["repair", *(r.name for r in rules(cfg)), "nfc"]}}


def tokenizer_normalizer(cfg: NormalizeConfig = NormalizeConfig()):
    """RULES + NFC as a `tokenizers` normalizer, saved inside tokenizer.json."""
    from tokenizers import Regex, normalizers

    steps = [normalizers.Replace(Regex(p), s) for r in rules(cfg) for p, s in r.pairs]
    return normalizers.Sequence([*steps, normalizers.NFC()])


# ------------------------------------------------------------------------------------------ span-keeping fold
# The detector reports spans in the ORIGINAL text, so it cannot rewrite text the way `normalize` does; it reads
# a fold built from the same table: characters that RULES map one-to-one (long s, curly quotes) and those they
# remove or expand (soft hyphen, ligatures), plus its own word-key folds (dashes, dotted capital I).


def char_map(cfg: NormalizeConfig = NormalizeConfig()) -> dict[str, str]:
    """Single characters that RULES rewrite on their own -> what they become after every rule (ﬅ -> "st",
    soft hyphen -> ""). Multi-character rules (CR LF, vv, space runs, line edges) are not in it."""
    singles = {**{c: "\n" for c in "\u2028\u2029\u0085"}, **{c: "" for c in _INVISIBLE},
               **{c: LIGATURES[ord(c)] for c in _TYPE_LIGATURES}, **{c: "'" for c in _SINGLE_QUOTES},
               **{c: '"' for c in _DOUBLE_QUOTES}, **{c: " " for c in _SPACES if c != " "}}
    if not cfg.keep_long_s:
        singles["\u017f"] = "s"
    return {c: apply_rules(s, cfg) for c, s in singles.items()}

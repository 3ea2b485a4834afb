"""Markup walker shared by every XML format, the text finishing pass, and TEI (TCP, ELTeC) splitting.

Owns: `walk` (lxml element -> text pieces with structural markers), `finish` (pieces -> clean text:
EOL joins, abbreviation table, long s, gaps, line/paragraph breaks), `split` (leaf-most divisions), the
TEI element rules, and `tei_divisions`. Format entry points live in training/extract.py.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lxml import etree

T = "{http://www.tei-c.org/ns/1.0}"
TABLE = Path(__file__).with_name("abbreviations.tsv")

# Structural markers inside the piece stream. Unicode noncharacters (U+FDD0..) are never used for text
# interchange, unlike the private-use area, which MUFI medieval transcriptions do use.
PARA, LINE, GAP, JOIN, SUP_OPEN, SUP_CLOSE = "\ufdd0", "\ufdd1", "\ufdd2", "\ufdd3", "\ufdd4", "\ufdd5"

# Walker actions (values of a rules dict: element tag -> action; unknown tags are INLINE).
INLINE, SKIP, BLOCK, LINEBLK, P, LB, BREAK, GAPA, GA, CHOICE, EXPAN, HI, LABEL, CELL, MILESTONE, NOTEREF = range(16)
EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"
# A <p> inside these is one line of the speech/heading, not a paragraph of its own.
TIGHT_PARENTS = {T + "sp", "{http://www.w3.org/1999/xhtml}hgroup"}
_CHOICE_PREFER = {T + "expan", T + "corr", T + "reg"}
_NOTE_ANCHOR = re.compile(r"[\s\d().,;*†‡]*")  # superscripts like 1, (2), * mark marginal-note anchors


class ExtractFailure(Exception):
    """A problem with one file; training.extract turns it into SourceError(kind="extract")."""

    def __init__(self, message: str, file: str | None = None):
        super().__init__(message)
        self.message, self.file = message, file


@lru_cache(maxsize=1)
def tables() -> dict:
    """The abbreviation table (abbreviations.tsv) as lookup structures; see that file for the evidence."""
    char, word, g, sup_word, sup_suffix = {}, {}, {}, {}, []
    with TABLE.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader((ln for ln in f if not ln.startswith("#")), delimiter="\t", quoting=csv.QUOTE_NONE))
    for kind, src, exp, scope, *_ in rows[1:]:
        if kind == "char":
            if len(src) != 1:
                raise ValueError(f"{TABLE}: char source {src!r} must be one character")
            char[ord(src)] = exp
        elif kind == "word":
            word[src] = exp
        elif kind == "g":
            g[src] = JOIN if exp == "join" else exp
        elif kind == "sup":
            base, s = src.split("^")
            if scope == "word":
                sup_word[(base, s)] = exp
            else:
                sup_suffix.append((base, s, exp))
        else:
            raise ValueError(f"{TABLE}: unknown kind {kind!r} (allowed: char, word, g, sup)")
    word_re = re.compile(r"(?<![^\W\d_])(" + "|".join(map(re.escape, word)) + r")(?![^\W\d_])") if word else None
    char_re = re.compile("[" + "".join(map(re.escape, map(chr, char))) + "]")
    return {"char": char, "char_re": char_re, "word": word, "word_re": word_re, "g": g,
            "sup_word": sup_word, "sup_suffix": sup_suffix}


def walk(el, out: list, rules: dict) -> None:
    """Append the content of `el` (not its tail) to `out` as text pieces and markers."""
    act = rules.get(el.tag, INLINE)
    brk = ""
    if act == INLINE:
        pass
    elif act == SKIP:
        return
    elif act == BLOCK:
        brk = PARA
    elif act == LINEBLK:
        brk = LINE
    elif act == P:
        parent = el.getparent()
        brk = LINE if parent is not None and parent.tag in TIGHT_PARENTS else PARA
    elif act == LB:
        out.append(LINE)
        return
    elif act == BREAK:
        out.append(PARA)
        return
    elif act == GAPA:  # ELTeC <gap unit="graphic"/> is an omitted illustration, not omitted text
        if el.get("unit") != "graphic":
            out.append(GAP)
        return
    elif act == GA:
        exp = tables()["g"].get(el.get("ref"))
        out.append(exp if exp is not None else (el.text or ""))
        return
    elif act == CHOICE:  # <choice>: render the expansion/correction/regularisation only
        pick = next((c for c in el if c.tag in _CHOICE_PREFER), el[0] if len(el) else None)
        if pick is not None:
            _children(pick, out, rules, skip_ws=True)
        return
    elif act == EXPAN:  # pretty-printing puts newlines between <am>/<ex>: they are not word breaks
        _children(el, out, rules, skip_ws=True)
        return
    elif act == HI and el.get("rend") == "sup":
        _superscript(el, out, rules)
        return
    elif act == LABEL:  # <label type="milestone"> = marginal "Reas. 1", "Use 2" labels, like notes
        if el.get("type") != "milestone":
            _children(el, out, rules, skip_ws=False)
            out.append(" ")
        return
    elif act == CELL:
        out.append(" ")
        _children(el, out, rules, skip_ws=False)
        out.append(" ")
        return
    elif act == MILESTONE:  # ELTeC <milestone unit="structural" rend="stars"/> = section break
        if "struct" in (el.get("unit") or ""):
            out.append(PARA)
        return
    elif act == NOTEREF and "noteref" in (el.get(EPUB_TYPE) or ""):
        return
    if brk:
        out.append(brk)
    _children(el, out, rules, skip_ws=False)
    if brk:
        out.append(brk)


def _children(el, out: list, rules: dict, skip_ws: bool) -> None:
    t = el.text
    if t and not (skip_ws and t.isspace()):
        out.append(t)
    for c in el:
        walk(c, out, rules)
        t = c.tail
        if t and not (skip_ws and t.isspace()):
            out.append(t)


def _superscript(el, out: list, rules: dict) -> None:
    sub: list = []
    _children(el, sub, rules, skip_ws=False)
    s = "".join(sub).strip()
    if "•" in s or GAP in s:  # TCP writes an illegible superscript letter as • (2,974 times: y<sup>•</sup>)
        out.append(GAP)
    elif s and not _NOTE_ANCHOR.fullmatch(s):
        out.append(SUP_OPEN + s + SUP_CLOSE)


# --- finishing: pieces -> text -------------------------------------------------------------------------
# Whole-text passes use str methods and regexes that start with a literal, so they scan at C speed: the
# mirror's 64 M characters of output go through each pass once.
_JOIN_STRIP = " \t\n\r\f\v\xa0" + LINE
_BREAKS = re.compile("[" + PARA + LINE + "]+")
_GAP_RUN = re.compile(GAP + "+")
# Invisible format characters are dropped: Standard Ebooks puts U+2060 WORD JOINER around every dash
# (15,687 in the mirror); zero-width space and a stray BOM carry no text either.
_INVISIBLE = re.compile("[\u200b\u2060\ufeff\ufdd0-\ufdd5]")
_LINE_EDGES = re.compile(r" *\n *")
# Nasal stroke (combining macron) over a vowel stands for a following n, or m before b/p/m - the usual
# reading of the tilde/macron suspension in early printing (Cappelli, Lexicon Abbreviaturarum, intro;
# e.g. cōmaundement -> commaundement, thē -> then). Latin word-final -um/-am also comes out -un/-an: the
# markup does not say which passages are Latin. A macron over a consonant (dn̄o = domino) is a Latin
# suspension with no single reading and is kept.
_MACRON_M = re.compile(r"([AEIOUYaeiouy])\u0304(?=[BMPbmp])")
_MACRON_N = re.compile(r"([AEIOUYaeiouy])\u0304")


def expand_abbreviations(s: str, keep_long_s: bool) -> str:
    """Apply the word table, the character table, long s and the macron rule to joined text."""
    tb = tables()
    if tb["word_re"] is not None and any(w in s for w in tb["word"]):
        s = tb["word_re"].sub(lambda m: tb["word"][m.group(1)], s)
    if tb["char_re"].search(s):
        s = tb["char_re"].sub(lambda m: tb["char"][ord(m.group())], s)
    if not keep_long_s:
        s = s.replace("\u017f", "s")
    if "\u0304" in s:
        s = _MACRON_N.sub(r"\1n", _MACRON_M.sub(r"\1m", s))
    return s


def _expand_superscripts(s: str) -> str:
    """base<sup>x</sup> (marked SUP_OPEN x SUP_CLOSE) -> table expansion, else base + x joined."""
    parts = s.split(SUP_OPEN)
    out = [parts[0]]
    for part in parts[1:]:
        sup, _, rest = part.partition(SUP_CLOSE)
        prev = out[-1]
        i = len(prev)
        while i and prev[i - 1].isalpha():
            i -= 1
        out[-1] = prev[:i] + _sup_expand(prev[i:], sup.strip())
        out.append(rest)
    return "".join(out)


def _sup_expand(word: str, sup: str) -> str:
    tb = tables()
    exp = tb["sup_word"].get((word, sup)) or tb["sup_word"].get((word.lower(), sup))
    if exp:
        return exp[0].upper() + exp[1:] if word[:1].isupper() else exp
    for base, s, e in tb["sup_suffix"]:
        if s == sup and word.lower().endswith(base):
            return word[: len(word) - len(base)] + (e.capitalize() if word[-len(base)].isupper() else e)
    return word + sup


def finish(pieces: list, keep_long_s: bool, gap_marker: str) -> str:
    """Turn walker output into clean text: no markup, single spaces, "\\n" lines and "\\n\\n" paragraphs."""
    s = "".join(pieces)
    if JOIN in s:  # EOL hyphen: drop the mark and the whitespace/line breaks around it
        parts = s.split(JOIN)
        s = "".join([parts[0].rstrip(_JOIN_STRIP)] + [p.strip(_JOIN_STRIP) for p in parts[1:-1]]
                    + [parts[-1].lstrip(_JOIN_STRIP)])
    s = " ".join(expand_abbreviations(s, keep_long_s).split())
    if SUP_OPEN in s:
        s = _expand_superscripts(s)
    if GAP in s:  # adjacent gaps collapse to one, always set off by spaces
        s = _GAP_RUN.sub(" " + GAP + " ", s.replace(" " + GAP, GAP).replace(GAP + " ", GAP))
    for m in (PARA, LINE):
        s = s.replace(" " + m, m).replace(m + " ", m)
    s = _BREAKS.sub(lambda m: "\n\n" if PARA in m.group() else "\n", s)
    # A literal < or > in character data (e.g. "x &lt; y") is shown as ‹ ›, so no output ever contains
    # angle brackets that a later stage could take for markup.
    s = _INVISIBLE.sub("", s.replace(GAP, gap_marker).replace("<", "‹").replace(">", "›"))
    if "  " in s:
        s = re.sub(" {2,}", " ", s)
    if " \n" in s or "\n " in s:
        s = _LINE_EDGES.sub("\n", s)
    return s.strip()


def one_line(pieces: list, keep_long_s: bool, gap_marker: str) -> str:
    """A heading as a one-line title: its lines joined with ": " (or " " after punctuation)."""
    lines = [ln for ln in finish(pieces, keep_long_s, gap_marker).split("\n") if ln]
    out = ""
    for ln in lines:
        out = ln if not out else out + (" " if out[-1] in ".,:;!?—-" else ": ") + ln
    return out


# --- divisions -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How a format marks divisions: which elements open one, which only group them, where titles are."""

    rules: dict
    is_div: Callable  # element -> True when it opens a division (TEI <div>, SE chapter <section>)
    containers: frozenset  # tags whose children are scanned for divisions (TEI front/body/back)
    heading: Callable  # division element -> its heading element or None
    skip: Callable = lambda el: False  # element -> True to drop a division (and its children) entirely


def split(el, layout: Layout, keep_long_s: bool, gap_marker: str, title: str = "") -> list[tuple[str, str]]:
    """Leaf-most divisions of `el` in reading order as (title, text); text outside child divisions
    (before, between, after them) forms divisions of its own, the first one titled with el's heading."""
    result: list[tuple[str, str]] = []
    pending: list = [el.text or ""]

    def flush():
        nonlocal title
        text = finish(pending, keep_long_s, gap_marker)
        if text:
            result.append((title, text))
            title = ""
        pending.clear()

    for c in el:
        if c.tag in layout.containers or layout.is_div(c):
            flush()
            if not layout.skip(c):
                result.extend(_division(c, layout, keep_long_s, gap_marker))
        else:
            walk(c, pending, layout.rules)
        if c.tail:
            pending.append(c.tail)
    flush()
    return result


def _division(el, layout: Layout, keep_long_s: bool, gap_marker: str) -> list[tuple[str, str]]:
    container = el.tag in layout.containers
    head = None if container else layout.heading(el)
    title = ""
    if head is not None:
        pieces: list = []
        _children(head, pieces, layout.rules, skip_ws=False)
        title = one_line(pieces, keep_long_s, gap_marker)
    if container or any(c.tag in layout.containers or layout.is_div(c) for c in el):
        return split(el, layout, keep_long_s, gap_marker, title)
    pieces = []
    _children(el, pieces, layout.rules, skip_ws=False)
    text = finish(pieces, keep_long_s, gap_marker)
    return [(title, text)] if text else []


def _tei_rules() -> dict:
    r = {etree.Comment: SKIP, etree.ProcessingInstruction: SKIP, etree.Entity: SKIP}
    # Not main text: header, marginalia/footnotes and their anchors (<ref>: "a", "[1]"), illustration
    # descriptions, running heads/catchwords (<fw>), gap descriptions, abbreviation marks inside <expan>.
    for n in "teiHeader note ref figure figDesc fw desc am sic orig".split():
        r[T + n] = SKIP
    for n in "head lg sp list table trailer closer opener argument epigraph floatingText quote postscript " \
             "div body front back text group".split():
        r[T + n] = BLOCK
    for n in "l item row speaker stage signed dateline salute byline".split():
        r[T + n] = LINEBLK
    r.update({T + "p": P, T + "lb": LB, T + "pb": SKIP, T + "gap": GAPA, T + "g": GA, T + "choice": CHOICE,
              T + "expan": EXPAN, T + "abbr": EXPAN, T + "hi": HI, T + "label": LABEL, T + "cell": CELL,
              T + "milestone": MILESTONE})
    return r


def _tei_heading(div):
    return next((c for c in div if c.tag == T + "head"), None)


TEI_LAYOUT = Layout(rules=_tei_rules(), is_div=lambda el: el.tag == T + "div",
                    containers=frozenset({T + n for n in ("front", "body", "back", "group", "text")}),
                    heading=_tei_heading)


def tei_divisions(root, keep_long_s: bool, gap_marker: str) -> list[tuple[str, str]]:
    """Divisions of a parsed TEI document (TCP or ELTeC): only <text>, never the <teiHeader>."""
    text = root if root.tag == T + "text" else root.find(T + "text")
    if text is None:
        raise ExtractFailure(f"no TEI <text> element under <{etree.QName(root).localname}> (is this TEI P5?)")
    return split(text, TEI_LAYOUT, keep_long_s, gap_marker)

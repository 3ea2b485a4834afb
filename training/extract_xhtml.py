"""Standard Ebooks (EPUB 3 source tree) extraction: content.opf spine order, body sections only.

Skipped, by file name or by the epub:type of a section (rule documented at SKIP_TYPES): the front and back
matter Standard Ebooks adds, its licence text, notes, tables of contents, and editorial matter written
long after the dated text. Note reference links are dropped; verse keeps one line per <br/>.
"""
from __future__ import annotations

import posixpath

from lxml import etree

from training.extract_tei import (BLOCK, BREAK, CELL, EPUB_TYPE, INLINE, LB, LINEBLK, NOTEREF, SKIP, P,
                                  ExtractFailure, Layout, split)

X = "{http://www.w3.org/1999/xhtml}"
OPF = "{http://www.idpf.org/2007/opf}"
# Standard Ebooks' own pages (titlepage, halftitlepage, imprint, colophon, uncopyright = copyright-page:
# they hold "Standard Ebooks", "Creative Commons", "public domain"), notes and navigation (endnotes,
# toc, loi), and editorial matter by later hands: the README's Warnings name Pepys's foreword,
# introduction and afterword (1890s editors) and the E. H. Coleridge introduction of Don Juan; the only
# other introduction (Frankenstein) is Mary Shelley's of 1831, thirteen years after the dated 1818 text.
# Authorial prefaces, dedications, epigraphs and appendices are kept.
SKIP_TYPES = frozenset({"titlepage", "halftitlepage", "imprint", "colophon", "copyright-page", "endnotes",
                        "footnotes", "rearnotes", "toc", "loi", "lot", "landmarks", "foreword", "introduction",
                        "afterword"})
# The same pages by file name (Standard Ebooks' fixed names), so absent files such as endnotes.xhtml
# (excluded from the mirror) are skipped without being read.
SKIP_FILES = frozenset({"titlepage", "halftitlepage", "imprint", "colophon", "uncopyright", "endnotes", "toc",
                        "loi", "foreword", "introduction", "afterword"})


def _rules() -> dict:
    r = {etree.Comment: SKIP, etree.ProcessingInstruction: SKIP}
    for n in "head script style img svg nav".split():
        r[X + n] = SKIP
    for n in "div blockquote section article header hgroup footer table ol ul dl figure body".split():
        r[X + n] = BLOCK
    for n in "li tr dt dd figcaption".split():
        r[X + n] = LINEBLK
    for n in "p h1 h2 h3 h4 h5 h6".split():
        r[X + n] = P
    r.update({X + "br": LB, X + "hr": BREAK, X + "td": CELL, X + "th": CELL, X + "a": NOTEREF, X + "span": INLINE})
    return r


def _types(el) -> set[str]:
    return set((el.get(EPUB_TYPE) or "").split())


def _is_div(el) -> bool:
    """A <section> opens a division when it is a top-level one or has a structural epub:type (chapter,
    part, volume, preface...); untyped (Don Juan's stanzas) and z3998:subchapter sections stay inside."""
    if el.tag != X + "section":
        return False
    parent = el.getparent()
    return parent is None or parent.tag == X + "body" or any(":" not in t for t in _types(el))


def _heading(section):
    for c in section:
        if c.tag in _HEADINGS:
            return c
        if c.tag == X + "header":
            return next((h for h in c if h.tag in _HEADINGS), c)
    return None


_HEADINGS = frozenset({X + n for n in ("h1", "h2", "h3", "h4", "h5", "h6", "hgroup")})
LAYOUT = Layout(rules=_rules(), is_div=_is_div, containers=frozenset({X + "body"}), heading=_heading,
                skip=lambda el: bool(_types(el) & SKIP_TYPES) or el.tag == X + "nav")


def spine(opf_root, opf_path: str) -> list[str]:
    """Record paths of the spine items in reading order (hrefs resolved against content.opf's folder)."""
    items = {i.get("id"): i.get("href") for i in opf_root.iter(OPF + "item")}
    base = posixpath.dirname(opf_path)
    out = []
    for ref in opf_root.iter(OPF + "itemref"):
        href = items.get(ref.get("idref"))
        if href is None:
            raise ExtractFailure(f"spine itemref idref={ref.get('idref')!r} has no manifest <item>", opf_path)
        out.append(posixpath.normpath(posixpath.join(base, href)))
    if not out:
        raise ExtractFailure("content.opf has no <spine> items", opf_path)
    return out


def se_divisions(record: dict, parse, keep_long_s: bool, gap_marker: str) -> list[tuple[str, str]]:
    """Divisions of a Standard Ebooks record; `parse(path)` returns the parsed root of a record file."""
    paths = [f["path"] for f in record["files"]]
    opf = next((p for p in paths if p.endswith(".opf")), None)
    if opf is None:
        raise ExtractFailure("no content.opf among the record's files (needed for the spine order)", paths[0])
    result = []
    for path in spine(parse(opf), opf):
        stem = posixpath.splitext(posixpath.basename(path))[0]
        if stem in SKIP_FILES:
            continue
        if path not in paths:
            raise ExtractFailure(f"spine item {path} is not among the record's files", opf)
        body = parse(path).find(X + "body")
        if body is None:
            raise ExtractFailure("no XHTML <body> element", path)
        result.extend(split(body, LAYOUT, keep_long_s, gap_marker))
    return result

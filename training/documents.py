"""From extracted divisions to corpus documents.

A text becomes one document, or its divisions (chapters, sections) when it is long; every document
carries its source's metadata so that it describes itself (id, year, decade, place, licence, split, ...).
The split is a property of the whole source, decided from the manifest before extraction
(training/splits.py), so all documents of one text share it.
"""
from __future__ import annotations

from dataclasses import dataclass

from training.clean import count_words

# Metadata copied from the manifest record onto each document (the report and training read these).
RECORD_FIELDS = ("title", "author", "year", "decade", "place", "london", "source", "license", "attribution",
                 "date_type", "format", "split")


@dataclass(frozen=True)
class DocumentConfig:
    # A text up to this many words is one document; longer ones are cut at their divisions. 20k words
    # is about a short novel's three chapters: long enough for 1k-token training windows, short enough
    # that one long text does not become one huge document.
    max_doc_words: int = 20_000
    # Divisions smaller than this are merged into the following one (title pages, short prefaces).
    min_division_words: int = 500


def _pieces(divisions, cfg: DocumentConfig) -> list[tuple[str, str, int]]:
    """(title, text, words) runs: small divisions merged forward, oversized ones cut at paragraphs."""
    merged: list[tuple[str, str, int]] = []
    pending_title, pending, pending_words = "", [], 0
    for div in divisions:
        text = div.text.strip()
        if not text:
            continue
        pending.append(text)
        pending_title = pending_title or div.title
        pending_words += count_words(text)
        if pending_words >= cfg.min_division_words:
            merged.append((pending_title, "\n\n".join(pending), pending_words))
            pending_title, pending, pending_words = "", [], 0
    if pending:
        if merged:  # a small tail joins the last division rather than standing alone
            title, text, n = merged.pop()
            merged.append((title, text + "\n\n" + "\n\n".join(pending), n + pending_words))
        else:
            merged.append((pending_title, "\n\n".join(pending), pending_words))
    out = []
    for title, text, n in merged:
        if n <= cfg.max_doc_words:
            out.append((title, text, n))
            continue
        part, part_words, k = [], 0, 1
        for para in text.split("\n\n"):
            w = count_words(para)
            if part and part_words + w > cfg.max_doc_words:
                out.append((f"{title} (part {k})".strip(), "\n\n".join(part), part_words))
                part, part_words, k = [], 0, k + 1
            part.append(para)
            part_words += w
        if part:
            out.append((f"{title} (part {k})".strip() if k > 1 else title, "\n\n".join(part), part_words))
    return out


def make_documents(record: dict, divisions, cfg: DocumentConfig = DocumentConfig()) -> list[dict]:
    """Documents of one source: dicts with id, text, division title and the record's metadata."""
    meta = {k: record.get(k) for k in RECORD_FIELDS}
    meta["source_id"] = record["id"]
    total = sum(count_words(d.text) for d in divisions)
    if total <= cfg.max_doc_words:
        text = "\n\n".join(d.text.strip() for d in divisions if d.text.strip())
        pieces = [("", text, total)] if text else []
    else:
        pieces = _pieces(divisions, cfg)
    return [
        {"id": f"{record['id']}#{i:04d}", "text": text, "division": title, **meta}
        for i, (title, text, _) in enumerate(pieces)
    ]

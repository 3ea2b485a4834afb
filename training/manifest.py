"""Sources manifest: reading and validating the JSONL that lists dated texts (one record per text).

A record follows the schema of ../shared/corpus/sources.jsonl: id, title, author, year, date_type, place,
london, license, attribution, format, files[path, sha256, bytes], upstream_urls. A bad *line* is a
per-source error (the build goes on without it); an unreadable *file* is a top-level ManifestError.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

FORMATS = ("tcp-tei", "eltec-tei", "standardebooks-xhtml", "nltk-bosak-xml", "text")
REQUIRED = ("id", "title", "year", "format", "license", "files")
# The corpus covers London English 1500-1850; manifests may reach wider, but a year outside this range
# is a typo (year 3000) rather than a text.
YEAR_MIN, YEAR_MAX = 1000, 2100
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(Exception):
    """The manifest as a whole cannot be used (missing, unreadable, not JSONL)."""


class SourceError(Exception):
    """One source cannot be used; the build records it in the report and goes on.

    kind is a short stable key for the report ("checksum", "fetch", "extract", "manifest", "format", ...).
    """

    def __init__(self, source_id: str, kind: str, message: str, file: str | None = None):
        super().__init__(f"[{source_id}] {kind}: {message}")
        self.source_id, self.kind, self.message, self.file = source_id, kind, message, file

    def as_dict(self) -> dict:
        return {"source": self.source_id, "kind": self.kind, "file": self.file, "message": self.message}


@dataclass(frozen=True)
class Selection:
    """Which records of a manifest a build uses (CLI: --from, --to, --london-only, --sources)."""

    year_from: int | None = None
    year_to: int | None = None
    london_only: bool = False
    sources: tuple[str, ...] = ()  # source names ("EEBO-TCP") or record ids; empty = all

    def __post_init__(self):
        for name in ("year_from", "year_to"):
            v = getattr(self, name)
            if v is not None and not (YEAR_MIN <= v <= YEAR_MAX):
                raise ValueError(f"{name}={v} is outside {YEAR_MIN}..{YEAR_MAX}")
        if self.year_from is not None and self.year_to is not None and self.year_from > self.year_to:
            raise ValueError(f"year_from={self.year_from} is after year_to={self.year_to}")

    def keeps(self, rec: dict) -> bool:
        year = rec["year"]
        if self.year_from is not None and year < self.year_from:
            return False
        if self.year_to is not None and year > self.year_to:
            return False
        if self.london_only and not rec.get("london", False):
            return False
        if self.sources and rec.get("source") not in self.sources and rec["id"] not in self.sources:
            return False
        return True


def validate_record(rec: object, line_no: int) -> dict:
    """Return the record if usable, else raise SourceError naming the line and the field."""
    if not isinstance(rec, dict):
        raise SourceError(f"line {line_no}", "manifest", f"line {line_no} is not a JSON object")
    sid = str(rec.get("id") or f"line {line_no}")
    missing = [k for k in REQUIRED if k not in rec or rec[k] in (None, "")]
    if missing:
        raise SourceError(sid, "manifest", f"line {line_no} is missing field(s) {', '.join(missing)}")
    if not isinstance(rec["id"], str):  # a list id crashed the duplicate check (found by tests/reliability fuzzing)
        raise SourceError(f"line {line_no}", "manifest", f"id={rec['id']!r} must be a string")
    year = rec["year"]
    if not isinstance(year, int) or isinstance(year, bool) or not (YEAR_MIN <= year <= YEAR_MAX):
        raise SourceError(sid, "manifest", f"year={year!r} must be an integer in {YEAR_MIN}..{YEAR_MAX}")
    if rec["format"] not in FORMATS:
        raise SourceError(sid, "format", f"unknown format {rec['format']!r}; allowed: {', '.join(FORMATS)}")
    files = rec["files"]
    if not isinstance(files, list) or not files:
        raise SourceError(sid, "manifest", "files must be a non-empty list")
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not f.get("path") or not _SHA256.match(str(f.get("sha256", ""))):
            raise SourceError(sid, "manifest", f"files[{i}] needs path and a 64-hex sha256")
    urls = rec.get("upstream_urls") or []
    if not isinstance(urls, list):  # `true` here crashed len() below (found by tests/reliability fuzzing)
        raise SourceError(sid, "manifest", f"upstream_urls={urls!r} must be a list of URLs, one per file")
    if urls and len(urls) != len(files):
        raise SourceError(sid, "manifest", f"{len(urls)} upstream_urls for {len(files)} files (need one each)")
    rec = dict(rec)
    rec.setdefault("decade", year // 10 * 10)
    rec.setdefault("source", "local")
    rec.setdefault("london", False)
    rec.setdefault("attribution", "")
    rec.setdefault("place", None)
    return rec


def read_manifest(path: str | Path) -> tuple[list[dict], list[SourceError]]:
    """All usable records of a manifest and the per-line errors of the others.

    Raises ManifestError when the file is missing, not UTF-8 text, or has no JSON line at all.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read manifest {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"manifest {path} is not UTF-8 text (is it a JSONL file?)") from None
    records, errors, parsed, seen = [], [], 0, set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            parsed += 1
        except json.JSONDecodeError as e:
            errors.append(SourceError(f"line {n}", "manifest", f"line {n} is not valid JSON ({e.msg})"))
            continue
        try:
            rec = validate_record(obj, n)
        except SourceError as e:
            errors.append(e)
            continue
        if rec["id"] in seen:
            errors.append(SourceError(rec["id"], "manifest", f"line {n} repeats id {rec['id']!r}"))
            continue
        seen.add(rec["id"])
        records.append(rec)
    if parsed == 0:
        raise ManifestError(f"manifest {path} has no JSON lines (expected JSONL, one record per line)")
    return records, errors

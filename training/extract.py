"""Text extraction: one manifest record + its verified local files -> the text's divisions in reading order.

Owns the public API (ExtractConfig, Division, extract), format dispatch, file reading and error mapping
(every problem becomes training.manifest.SourceError with kind "extract", or "format" for an unknown
format), NLTK Bosak plays and plain text. TEI rules and the shared markup walker: training/extract_tei.py;
Standard Ebooks: training/extract_xhtml.py; abbreviation table: training/abbreviations.tsv.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from training.extract_tei import BLOCK, LINEBLK, SKIP, ExtractFailure, finish, one_line, tei_divisions, walk
from training.extract_xhtml import se_divisions
from training.manifest import FORMATS, SourceError


@dataclass(frozen=True)
class ExtractConfig:
    """How extracted text renders omissions (<gap>, illegible superscripts) and the long s."""

    gap_marker: str = "\u3008\u2026\u3009"  # "〈…〉": contains no letter/digit, so word counters never count it
    keep_long_s: bool = False

    def __post_init__(self):
        if not isinstance(self.gap_marker, str) or any(c.isalnum() or c in "<>\n\r" for c in self.gap_marker):
            raise ValueError(f"gap_marker={self.gap_marker!r} must be a string without letters, digits, "
                             "'<', '>' or line breaks")
        if not isinstance(self.keep_long_s, bool):
            raise ValueError(f"keep_long_s={self.keep_long_s!r} must be True or False")


@dataclass
class Division:
    """One division of a text (chapter, act, untitled front matter) in reading order."""

    title: str  # "" when none
    text: str


def extract(record: dict, files: dict[str, Path], cfg: ExtractConfig = ExtractConfig()) -> list[Division]:
    """The divisions (chapter granularity, reading order, non-empty) of one record's text.

    Raises SourceError(record id, "extract" | "format", message, file=path) on any problem; never returns
    partial output.
    """
    sid = str(record.get("id", "?"))
    fmt = record.get("format")
    paths = [f.get("path") for f in record.get("files") or [] if isinstance(f, dict)]
    first = paths[0] if paths else None
    if fmt not in _HANDLERS:
        raise SourceError(sid, "format", f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}", file=first)
    if not paths:
        raise SourceError(sid, "extract", "record has no files", file=None)
    reader = _Reader(files)
    try:
        pairs = _HANDLERS[fmt](record, reader, cfg)
    except SourceError:
        raise
    except ExtractFailure as e:
        raise SourceError(sid, "extract", e.message, file=e.file or reader.current or first) from None
    except Exception as e:  # a bug or an input nobody foresaw: still a per-source error, never a crash
        raise SourceError(sid, "extract", f"{type(e).__name__}: {e}", file=reader.current or first) from None
    divisions = [Division(t, x) for t, x in pairs if x]
    if not divisions:
        raise SourceError(sid, "extract", "no text found", file=first)
    return divisions


class _Reader:
    """Reads record files from the `files` mapping with clear errors; remembers the file being read."""

    def __init__(self, files: dict[str, Path]):
        self.files, self.current = files, None

    def local(self, path: str) -> Path:
        self.current = path
        if path not in self.files:
            raise ExtractFailure("file is listed in the record but was not given to extract()", path)
        return Path(self.files[path])

    def read(self, path: str) -> bytes:
        try:
            data = self.local(path).read_bytes()
        except OSError as e:
            raise ExtractFailure(f"cannot read file: {e.strerror or e}", path) from None
        return check_bytes(data, path)

    def parse(self, path: str, data: bytes | None = None):
        data = self.read(path) if data is None else check_bytes(data, path)
        try:
            return etree.fromstring(data, _PARSER)
        except etree.XMLSyntaxError as e:
            raise ExtractFailure(f"malformed XML: {e}", path) from None


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


def check_bytes(data: bytes, path: str) -> bytes:
    """Reject empty and binary files. Binary = NUL bytes (outside UTF-16 text) or >30% control bytes."""
    if not data.strip():
        raise ExtractFailure("file is empty", path)
    head = data[:65536]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data
    controls = sum(head.count(bytes([b])) for b in range(32) if b not in (9, 10, 12, 13))
    if b"\x00" in head or controls > 0.3 * len(head):
        raise ExtractFailure("file looks binary (NUL or control bytes), not text or XML", path)
    return data


def _tei(record: dict, reader: _Reader, cfg: ExtractConfig) -> list[tuple[str, str]]:
    out = []
    for f in record["files"]:
        pairs = tei_divisions(reader.parse(f["path"]), cfg.keep_long_s, cfg.gap_marker)
        if not pairs:
            raise ExtractFailure("no text found in TEI <text>", f["path"])
        out.extend(pairs)
    return out


def _se(record: dict, reader: _Reader, cfg: ExtractConfig) -> list[tuple[str, str]]:
    return se_divisions(record, reader.parse, cfg.keep_long_s, cfg.gap_marker)


# Jon Bosak's play DTD. <FM> holds the Moby/Bosak licence and credits: not the play.
_NLTK_RULES = {etree.Comment: SKIP, etree.ProcessingInstruction: SKIP, "FM": SKIP}
_NLTK_RULES.update({t: BLOCK for t in "PLAY TITLE PERSONAE SCNDESCR PLAYSUBT ACT SCENE PROLOGUE EPILOGUE "
                    "INDUCT SPEECH P".split()})
_NLTK_RULES.update({t: LINEBLK for t in "PERSONA PGROUP GRPDESCR SPEAKER LINE STAGEDIR SUBHEAD SUBTITLE".split()})


def _nltk(record: dict, reader: _Reader, cfg: ExtractConfig) -> list[tuple[str, str]]:
    out = []
    for f in record["files"]:
        member = f.get("member")
        if not member:
            raise ExtractFailure("nltk-bosak-xml file entry needs a 'member' (the play inside the zip)", f["path"])
        try:
            with zipfile.ZipFile(reader.local(f["path"])) as z:
                data = z.read(member)
        except OSError as e:
            raise ExtractFailure(f"cannot read file: {e.strerror or e}", f["path"]) from None
        except zipfile.BadZipFile:
            raise ExtractFailure("not a zip archive", f["path"]) from None
        except KeyError:
            raise ExtractFailure(f"zip member {member!r} not found in the archive", f["path"]) from None
        out.extend(_play(reader.parse(f"{f['path']}:{member}", data), cfg))
    return out


def _play(root, cfg: ExtractConfig) -> list[tuple[str, str]]:
    """One division per ACT; the title, personae and scene description open the first act."""
    front: list = []
    acts = []
    for c in root:
        if c.tag == "ACT":
            title = next((t.text or "" for t in c if t.tag == "TITLE"), "")
            pieces: list = front + [""]
            front = []
            walk(c, pieces, _NLTK_RULES)
            acts.append((one_line([title], cfg.keep_long_s, cfg.gap_marker), pieces))
        else:
            walk(c, front, _NLTK_RULES)
    if front and acts:  # matter after the last act
        acts[-1][1].extend(front)
    elif front:  # no ACT at all
        acts.append(("", front))
    return [(t, finish(p, cfg.keep_long_s, cfg.gap_marker)) for t, p in acts]


_SPACE_RUN = re.compile(r"[ \t\u00a0]+")
_BLANK_RUN = re.compile(r"\n{3,}")


def _text(record: dict, reader: _Reader, cfg: ExtractConfig) -> list[tuple[str, str]]:
    """Plain text: UTF-8 (BOM stripped), else cp1252 silently (ftfy repairs mojibake later); form feeds
    separate divisions."""
    out = []
    for f in record["files"]:
        data = reader.read(f["path"])
        encodings = ("utf-16",) if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig", "cp1252")
        for enc in encodings:
            try:
                text = data.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:  # cp1252 leaves 5 bytes undefined; latin-1 maps every byte (ftfy repairs later)
            text = data.decode("latin-1")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        for part in text.split("\f"):
            part = _SPACE_RUN.sub(" ", part)
            part = "\n".join(ln.rstrip(" ") for ln in part.split("\n"))
            part = _BLANK_RUN.sub("\n\n", part).strip()
            if part:
                out.append(("", part))
    return out


_HANDLERS = {"tcp-tei": _tei, "eltec-tei": _tei, "standardebooks-xhtml": _se, "nltk-bosak-xml": _nltk,
             "text": _text}
assert set(_HANDLERS) == set(FORMATS), "extract handlers and training.manifest.FORMATS disagree"


UPLOAD_SUFFIXES = {".txt": "text", ".md": "text", ".xml": "tcp-tei", ".tei": "tcp-tei"}
MAX_UPLOAD_BYTES = 20 << 20  # 20 MB: the largest TCP file in the mirror is ~6 MB


def read_upload(path: str | Path) -> str:
    """A user's file (.txt, .md, or TEI .xml) as the corpus reads it: the same extractor and cleaning
    (training/clean.py) as a corpus build, divisions joined by blank lines. Raises ValueError with a clear
    message for a missing, oversized, binary, malformed or unsupported file."""
    from training.clean import clean_text

    p = Path(path)
    fmt = UPLOAD_SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise ValueError(f"file {p.name!r}: unsupported type; upload a .txt, .md or TEI .xml file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ValueError(f"file {p.name!r}: cannot read it ({e.strerror or e})") from None
    if size > MAX_UPLOAD_BYTES:
        raise ValueError(f"file {p.name!r} is {size / 2**20:.1f} MB: the limit is {MAX_UPLOAD_BYTES >> 20} MB")
    record = {"id": p.name, "format": fmt, "files": [{"path": p.name}]}
    try:
        divisions = extract(record, {p.name: p})
    except SourceError as e:
        raise ValueError(f"file {p.name!r}: {e.message}") from None
    return "\n\n".join(t for t in (clean_text(d.text) for d in divisions) if t.strip())

"""Year-precise anachronism detector: `check(text, year)` finds words and phrases that a writer of `year`
could not have used, with character spans, evidence year, basis, confidence and a one-line explanation;
`check_jsonl` is the batch interface used by outside graders. Owns the margins and evidence thresholds,
the (year-independent) matcher and the chunked scan; the word/phrase surfaces it matches are built in
evals/anachronism_forms.py, the corpus table in engine/firstseen.py.

Evidence, in order of authority:
  1. the dated lexicon (engine/lexicon.tsv): flagged when entry.year > year + margin(basis);
  2. the corpus first-seen table, to SUPPRESS a lexicon finding that dated texts contradict;
  3. the corpus first-seen table as a second source for words the lexicon lacks, only when strong.
A word absent from the corpus is never evidence: the corpus has about five texts a decade.
The corpus is explicit (CheckConfig.corpus_dir, `evals.check(text, year, corpus=...)`, `cli.py check
--corpus`); without one the detector uses the lexicon alone and logs that it does. Its table is built from
the corpus's train split only, so no held-out text shapes a finding.
"""
from __future__ import annotations

import bisect
import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from engine.atomic import atomic_file
from engine.firstseen import TRAIN_ONLY, FirstSeenTable, first_seen, load_table  # noqa: F401 (re-export)
from engine.lexicon import DEFAULT_PATH as LEXICON_PATH
from evals.anachronism_cues import cue_near
from evals.anachronism_forms import CORPUS, EXPAND, SEP_RE, SLOW_CHARS, Matcher, build_matcher, fold

YEAR_RANGE = (1000, 2100)
log = logging.getLogger("anno.check")

# margin(basis): a term is flagged when entry.year > year + margin. Why these numbers:
#  first_use 5: OED-style first citations are routinely antedated by a few years, and the lexicon's own
#    notes call many of its dates "recalled" or decade-level; a word circulates before it is first printed.
#  coinage 2 / invention 2: the coiner's or inventor's year is known, but publication, patent and first
#    demonstration differ by a year or two (Davy's 'sodium' 1807 paper read, printed 1808).
#  founding, event, building, street 1: exact dates, but before 1752 the English civil year began on
#    25 March, so a text dated "1659" may be 1660 by modern reckoning (the corpus dates Pepys "1659-60").
#  approximate 5: a first use known only to the decade or recalled (lexicon notes say "approximate").
#    Chosen on the development split (evals/challenge/tune.py): 5/10/15 gave tune recall 0.979/0.968/0.962
#    with 0 false findings in 416K validation words at each, so the wider margins bought nothing.
MARGINS = (("first_use", 5), ("approximate", 5), ("coinage", 2), ("invention", 2), ("founding", 1), ("event", 1),
           ("building", 1), ("street", 1), (CORPUS, 100))
# Confidence at a gap well past the margin, by basis: exact historical dates are surest; first_use dates
# are recalled citations; corpus-only evidence is a frequency argument over ~200 texts, so it stays low.
BASE_CONFIDENCE = (("founding", 0.95), ("event", 0.95), ("building", 0.95), ("street", 0.9),
                   ("invention", 0.9), ("coinage", 0.9), ("first_use", 0.85), ("approximate", 0.75),
                   (CORPUS, 0.35))
RAMP_YEARS = 20  # confidence climbs from 60% to 100% of the base over 20 years past the margin


@dataclass(frozen=True)
class CheckConfig:
    corpus_dir: str | None = None  # a built corpus; None: lexicon evidence only (sources 2 and 3 off)
    corpus_splits: tuple[str, ...] = TRAIN_ONLY  # held-out splits never feed the first-seen table
    lexicon_path: str = str(LEXICON_PATH)
    corpus_evidence: bool = True  # source 3 (corpus-only findings); source 2 (suppression) is always on
    # Suppression of a lexicon finding whose word the corpus has before the lexicon year. "In use by Y"
    # means >= 2 texts and >= 3 uses dated <= Y (independent dated writers). In use by year + margin: the
    # finding is DROPPED. In use later but before the lexicon year: kept, re-dated to the corpus year.
    # Only one text by year + margin: kept, confidence x 0.7. One text is not enough to drop: the corpus
    # has split-word fragments ('tea' 1551), u/v key collisions ('mouie' -> 'movie' 1580) and misdated
    # texts (Pepys's diary, written 1660-69 with 19th-century notes, is dated 1659); 0.7 keeps a
    # first_use finding above 0.5 while ranking it below uncontradicted ones.
    drop_texts: int = 2
    drop_uses: int = 3
    single_text_factor: float = 0.7
    # Corpus-only findings (source 3), all must hold. The key's first text is dated >= 1700: before that a
    # first-seen year dates a spelling, not a word ("about" first appears in 1506 as spelling settles). It
    # is in >= 10 texts and >= 40 uses (general use, not one author's idiom), capitalised in < half of its
    # uses (not a name: "Emma" 1742), frequent enough that >= 100 uses would be expected in the corpus
    # text dated before it at its later rate, and no early-modern spelling of it (two alternations, e.g.
    # dreery/dreary, aukward/awkward, sanke/sank) appears earlier. Even so the table's first years are
    # genre-confounded (novels arrive in the 1740s: 'excitement' first 1741, OED 1604), so a word is
    # flagged only when its first year > year + 100, at low confidence. On the validation split checked
    # against a table built from the train split alone this source gave 1 finding in 596K words
    # ("glanced", Julius Caesar 1623).
    strong_from: int = 1700
    strong_texts: int = 10
    strong_uses: int = 40
    strong_expected: float = 100.0
    chunk_chars: int = 1 << 18  # text is scanned in windows of 256K characters: memory stays flat


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    word: str
    year: int
    basis: str
    confidence: float
    explanation: str

    def to_dict(self) -> dict:
        return asdict(self)


_MARGIN = dict(MARGINS)
_BASE = dict(BASE_CONFIDENCE)
_PHRASE = {"first_use": "is first recorded in", "approximate": "is first recorded about",
           "coinage": "was coined in", "invention": "names an invention of",
           "founding": "was founded in", "event": "names an event of", "building": "was built or opened in",
           "street": "was laid out or named in"}


def _check_year(year) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        raise ValueError(f"year must be an integer in {YEAR_RANGE[0]}..{YEAR_RANGE[1]}, got {year!r}")
    return year


@lru_cache(maxsize=4)
def _resources(config: CheckConfig) -> tuple[Matcher, FirstSeenTable | None]:
    """Matcher and first-seen table of a config; engine.corpus_io.CorpusError when corpus_dir is given but is
    not a built corpus (an explicit corpus that is missing must not silently become lexicon-only)."""
    table = None
    if config.corpus_dir:
        table = load_table(config.corpus_dir, config.corpus_splits)
    else:
        log.warning("check: no corpus given: lexicon evidence only (no corpus first-seen years)")
    return build_matcher(config, table, _MARGIN), table


def _confidence(basis: str, gap: int) -> float:
    """gap = evidence year - (text year + margin) >= 1."""
    return round(_BASE[basis] * min(1.0, 0.6 + 0.4 * (gap - 1) / RAMP_YEARS), 3)


def _in_use_year(early: tuple[tuple[int, int], ...], config: CheckConfig) -> int | None:
    """Year by which the corpus shows a word in use: drop_texts texts and drop_uses uses dated by then."""
    uses = 0
    for k, (y, c) in enumerate(early, start=1):
        uses += c
        if k >= config.drop_texts and uses >= config.drop_uses:
            return y
    return None


def _lexicon_finding(s: int, e: int, written: str, entry, form: str, year: int, config: CheckConfig,
                     table: FirstSeenTable | None, cue: str | None = None) -> Finding | None:
    margin = _MARGIN[entry.basis]
    evidence, note, factor = entry.year, "", 1.0
    # a cued entry's form is old in another sense, so the corpus attests it early: no suppression
    row = table.row(form) if table is not None and " " not in form and not entry.cues else None
    if row is not None and row.year < entry.year:
        in_use = _in_use_year(row.early, config)
        if in_use is not None and in_use <= year + margin:
            return None  # independent dated texts used it by the text's date: the lexicon date is too late
        if in_use is not None and in_use < entry.year:
            evidence, note = in_use, f"; the corpus has it from {in_use}, before the lexicon's {entry.year}"
        elif row.year <= year + margin:
            factor, note = config.single_text_factor, f"; lowered: one corpus text of {row.year} already has it"
    conf = round(_confidence(entry.basis, evidence - year - margin) * factor, 3)
    sense = f" in the sense that '{cue}' nearby selects" if cue else ""
    expl = (f"'{written}'{sense} {_PHRASE[entry.basis]} {entry.year} ({entry.basis}); "
            f"the text is dated {year}{note}")
    return Finding(s, e, written, evidence, entry.basis, conf, expl)


def _corpus_finding(s: int, e: int, written: str, first: int, texts: int, uses: int, year: int,
                    table: FirstSeenTable) -> Finding:
    conf = _confidence(CORPUS, first - year - _MARGIN[CORPUS])
    expl = (f"'{written}' first appears in the dated corpus in {first} ({uses} uses in {texts} texts, none in "
            f"{table.words_before(first) / 1e6:.1f}M earlier words); the text is dated {year}")
    return Finding(s, e, written, first, CORPUS, conf, expl)


def _fold(window: str) -> tuple[str, list[tuple[int, int]] | None]:
    """Lowercased, length-preserving fold of a window (curly quotes, dashes, long s, dotted I) and, only
    when the window holds soft hyphens or ligatures, the expanded string with (folded, original) marks
    at every change of alignment (see `_orig`)."""
    low = fold(window)
    if not SLOW_CHARS.search(low):
        return low, None
    parts, marks, prev, flen = [], [(0, 0)], 0, 0
    for m in SLOW_CHARS.finditer(low):
        i = m.start()
        parts.append(low[prev:i])
        flen += i - prev
        rep = EXPAND[low[i]]
        parts.append(rep)
        marks.append((flen, i))
        flen += len(rep)
        marks.append((flen, i + 1))
        prev = i + 1
    parts.append(low[prev:])
    return "".join(parts), marks


def _orig(marks: list[tuple[int, int]], p: int) -> int:
    """Original index of folded index p: offset from the last mark at or before p, clamped so that a
    position inside a ligature's expansion ("ﬁ" -> "fi") maps to the ligature itself."""
    k = bisect.bisect_right(marks, (p, 1 << 62)) - 1
    f, o = marks[k]
    if k + 1 < len(marks) and marks[k + 1][1] > o:
        return min(o + (p - f), marks[k + 1][1] - 1)
    return o + (p - f)


def iter_findings(text: str, year: int, config: CheckConfig = CheckConfig()):
    """Findings in text order, streamed window by window (see `check`)."""
    year = _check_year(year)
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if not text:
        return
    matcher, table = _resources(config)
    n, step, overlap = len(text), config.chunk_chars, matcher.max_len + 2
    pos = last_end = 0
    while pos < n:
        cut = min(n, pos + step)
        left = 1 if pos else 0  # one character of left context, so a word cut by the window is not matched
        window = text[pos - left:min(n, cut + overlap)]
        low, offs = _fold(window)
        for m in matcher.regex.finditer(low):
            ms, me = fs, fe = m.span()
            if offs is not None:
                ms, me = _orig(offs, ms), _orig(offs, me - 1) + 1
            s, e = pos - left + ms, pos - left + me
            if s < pos or s < last_end:
                continue
            if s >= cut:
                break
            last_end = e  # every match, flagged or not, owns its span: no shorter term inside it fires
            g = m.group()
            hit = matcher.surfaces.get(g) or matcher.surfaces.get(SEP_RE.sub(" ", g))
            if hit is None or year >= hit[0]:
                continue  # hit[0] = evidence year - margin: flagged only for texts dated before it
            kind, payload, form = hit[1], hit[2], hit[3]
            if kind == CORPUS:
                if config.corpus_evidence and table is not None:
                    yield _corpus_finding(s, e, text[s:e], *payload, year, table)
            else:
                cue = cue_near(low, fs, fe, payload.cues) if payload.cues else None
                if payload.cues and cue is None:
                    continue  # old sense: a cued entry is reported only with a cue nearby
                f = _lexicon_finding(s, e, text[s:e], payload, form, year, config, table, cue)
                if f is not None:
                    yield f
        pos = cut


def check(text: str, year: int, config: CheckConfig = CheckConfig()) -> list[Finding]:
    """Anachronisms in `text` for a writer of `year` (an integer in 1000..2100; ValueError otherwise).

    One regex pass per 256K-character window over a lowercased, length-preserving fold of the text, so
    spans index the ORIGINAL text. Whole words only; multiword terms with any run of spaces, newlines or
    hyphens between words; the longest listed form wins; plural and possessive endings follow
    engine.lexicon.base_forms, plus -ed/-ing on single-word forms. Polysemous lexicon forms are matched
    (so they are not split into shorter terms) but never flagged.
    """
    return list(iter_findings(text, year, config))


def check_jsonl(in_path: str | Path, out_path: str | Path, config: CheckConfig = CheckConfig()) -> int:
    """Read lines {"id", "text", "year"}; write {"id", "findings": [{start, end, word, year, basis,
    confidence, explanation}]} per line, in order, atomically. Returns the number of records. A bad line
    raises ValueError naming its line number."""
    n = 0
    with open(in_path, encoding="utf-8") as fin, atomic_file(out_path) as fout:
        for lineno, line in enumerate(fin, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                findings = check(rec["text"], rec["year"], config)
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{in_path}:line {lineno}: {exc!r} (need keys id, text, year)") from None
            fout.write(json.dumps({"id": rec.get("id"), "findings": [f.to_dict() for f in findings]},
                                  ensure_ascii=False) + "\n")
            n += 1
    return n

"""Judging a text: the one function behind the app's Judge tab, its `/check` `/date` `/profile` API and the
findings shown under every generation. It combines the anachronism detector (evals/anachronism.py), the
dater (evals/dating.py) and the linguistic profile (evals/profile.py) against one explicit corpus, and
returns plain JSON-able dicts.

The corpus is always an argument: the detector's corpus evidence, the dater's model and the profile's
period percentiles all come from it, so a figure never depends on what happens to lie in data/."""
from __future__ import annotations

from pathlib import Path

# 2M characters is ~350k words, a long novel: checking it takes ~0.1 s, dating and profiling sample it. A
# bigger paste is nearly always a mistake and would sit in the browser and the queue for nothing.
MAX_TEXT_CHARS = 2_000_000
YEAR_RANGE = (1000, 2100)  # the detector's own range (evals/anachronism.YEAR_RANGE)


class JudgeError(ValueError):
    """Bad input to a judge function; the message names the field and the allowed range."""


def check_text(text) -> str:
    if not isinstance(text, str):
        raise JudgeError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise JudgeError("text is empty: paste a passage or upload a .txt, .md or TEI .xml file")
    if len(text) > MAX_TEXT_CHARS:
        raise JudgeError(f"text is {len(text):,} characters: the limit is {MAX_TEXT_CHARS:,} "
                         "(split it, or judge a part)")
    return text


def check_year(year) -> int:
    from engine.serving import RequestError, parse_int

    try:
        return parse_int("year", year, *YEAR_RANGE)
    except RequestError as e:
        raise JudgeError(str(e)) from None


def _corpus(corpus) -> str | None:
    if corpus is None or corpus == "":
        return None
    p = Path(corpus)
    if not (p / "report.json").is_file():
        raise JudgeError(f"corpus={str(corpus)!r} is not a built corpus (no report.json); build one with "
                         "`cli.py corpus build`")
    return str(p)


def findings(text, year, corpus) -> dict:
    """Anachronisms for a writer of `year`: {"year", "words", "findings": [...], "per_1000_words"}."""
    from evals import check
    from evals.profile import count_words

    text, year, corpus = check_text(text), check_year(year), _corpus(corpus)
    found = [f.to_dict() for f in check(text, year, corpus=corpus)]
    words = count_words(text)
    return {"year": year, "words": words, "findings": found,
            "per_1000_words": round(1000 * len(found) / words, 3) if words else 0.0}


def date(text, corpus) -> dict:
    """The dater's estimate: {"year", "low", "high", "interval", "decade_probs", "words", "passages", "flag"}."""
    from evals.dating import date as _date

    corpus = _corpus(corpus)
    if corpus is None:
        raise JudgeError("corpus is required to date a text: the dater is fitted on a built corpus")
    d = dict(_date(check_text(text), corpus_dir=corpus))
    # JSON object keys are strings: "1650" -> probability (orjson and most clients refuse int keys)
    d["decade_probs"] = {str(k): v for k, v in d.get("decade_probs", {}).items()}
    return d


def profile(text, year, corpus) -> dict:
    """Linguistic profile with percentiles against the corpus passages of `year`'s period (year may be None)."""
    from evals.profile import profile as _profile

    year = None if year is None or year == "" else check_year(year)
    return _profile(check_text(text), year, corpus_dir=_corpus(corpus))


def judge(text, year, corpus) -> dict:
    """Everything the Judge tab shows, as one JSON-able report."""
    out = findings(text, year, corpus)
    out["date"] = date(text, corpus) if corpus else None
    out["profile"] = profile(text, year, corpus)
    out["corpus"] = str(corpus) if corpus else None
    return out


def generation_summary(text: str, year: int, corpus) -> dict:
    """What the app shows under a finished generation: its findings for `year` and its estimated date (None
    for an empty text)."""
    if not text.strip():
        return {"year": year, "words": 0, "findings": [], "per_1000_words": 0.0, "date": None}
    out = findings(text, year, corpus)
    out["date"] = date(text, corpus) if corpus else None
    return out

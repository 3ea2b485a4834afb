"""Anno evaluators: anachronism detection, dating, profile, probes, LM metrics and suites. Imports engine/,
never training/. The two batch-friendly entry points are importable from here: `evals.check(text, year)`
(anachronism findings) and `evals.date(text)` (estimated year with an interval)."""


def check(text: str, year: int) -> list:
    """Anachronism findings for text dated `year` (see evals/anachronism.py)."""
    from evals.anachronism import check as _check

    return _check(text, year)


def date(text: str) -> dict:
    """{"year", "low", "high"} for a passage (see evals/dating.py)."""
    from evals.dating import date as _date

    return _date(text)

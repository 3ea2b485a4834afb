"""Anno evaluators: anachronism detection, dating, profile, probes, LM metrics and suites. Imports engine/,
never training/. The two batch-friendly entry points are importable from here:
`evals.check(text, year, corpus=...)` (anachronism findings) and `evals.date(text, corpus=...)` (estimated
year with an interval). The corpus is always explicit: nothing reads a default data folder."""


def check(text: str, year: int, corpus=None, config=None) -> list:
    """Anachronism findings for text dated `year` (see evals/anachronism.py). corpus: a built corpus folder
    whose train split gives first-seen evidence; None checks against the dated lexicon alone (and logs so).
    config: an evals.anachronism.CheckConfig for the other settings (its corpus_dir is replaced by corpus
    when corpus is given)."""
    from dataclasses import replace

    from evals.anachronism import CheckConfig, check as _check

    config = config or CheckConfig()
    if corpus is not None:
        config = replace(config, corpus_dir=str(corpus))
    return _check(text, year, config)


def date(text: str, corpus=None) -> dict:
    """{"year", "low", "high", ...} for a passage (see evals/dating.py), from the dating model fitted on the
    train split of `corpus` (a built corpus folder; required: ValueError without one)."""
    from evals.dating import date as _date

    return _date(text, corpus_dir=corpus)

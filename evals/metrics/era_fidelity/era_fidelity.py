"""Anno metric `era_fidelity`: how close the year that evals.dating assigns to a text is to its target year.

Local `evaluate` module (load with evals.metrics.load_metric("era_fidelity") or
evaluate.load("evals/metrics/era_fidelity")); works offline. Anno's packages are imported inside _compute:
evaluate copies this file into its modules cache, so the repository root must be on sys.path.
"""

import datasets

import evaluate

_DESCRIPTION = """\
Era fidelity: Anno's dating model (evals.dating.date(text) -> {"year", "low", "high"}) dates each text; the
metric is the mean absolute error against the target year and the share dated within 25 years of it.
Texts the dater cannot date (year None) count as not within 25 years and are left out of the mean error.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of texts (str).
    references: list of target years (int), one per text.
    corpus: built corpus folder whose dating model dates the texts (required: the dater has no default corpus).
Returns:
    mae_years: mean |dated year - target| over dated texts (None when none was dated),
    within_25_years: share (0..1) of all texts dated within 25 years of their target,
    interval_coverage: share (0..1) of all texts whose target lies in the dater's [low, high],
    undated: number of texts the dater returned no year for.
Examples:
    >>> m = evals.metrics.load_metric("era_fidelity")
    >>> m.compute(predictions=["Thou art a knave."], references=[1600], corpus="data/corpus")["within_25_years"]
    1.0
"""


def _date_fn():
    try:
        from evals.dating import date
    except ImportError as e:
        raise ImportError(f"era_fidelity needs Anno's evals.dating ({e}); run from the repository root or put it "
                          "on sys.path") from e
    return date


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class EraFidelity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, corpus=None):
        date = _date_fn()
        errors, within, covered, undated = [], 0, 0, 0
        for text, target in zip(predictions, references):
            d = date(text) if corpus is None else date(text, corpus_dir=corpus)
            if d.get("year") is None:
                undated += 1
                continue
            err = abs(float(d["year"]) - int(target))
            errors.append(err)
            within += err <= 25
            low, high = d.get("low"), d.get("high")
            covered += low is not None and high is not None and low <= target <= high
        n = len(predictions)
        return {
            "mae_years": sum(errors) / len(errors) if errors else None,
            "within_25_years": within / n if n else 0.0,
            "interval_coverage": covered / n if n else 0.0,
            "undated": undated,
        }

"""Anno metric `anachronism_rate`: how often texts use words that evals.anachronism flags for their target year.

Local `evaluate` module (load with evals.metrics.load_metric("anachronism_rate") or
evaluate.load("evals/metrics/anachronism_rate")); works offline. evaluate copies this file into its modules
cache before importing it, so Anno's packages are imported inside _compute (indented imports are also skipped
by evaluate's dependency scan) and need the repository root on sys.path, as when run from it.
"""

import datasets

import evaluate

_DESCRIPTION = """\
Anachronism rate: findings of Anno's anachronism detector (evals.anachronism.check(text, year)) per 1,000 words,
pooled over all texts (sum of findings / sum of words, words as in evals.profile.count_words), and the share of
texts with at least one finding.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of texts (str).
    references: list of target years (int), one per text.
    corpus: built corpus folder whose train split gives first-seen evidence (default None: dated lexicon only).
Returns:
    findings_per_1000_words: 1000 * all findings / all words (0.0 when there are no words),
    texts_with_findings: share of texts (0..1) with at least one finding,
    findings: number of findings, words: number of words.
Examples:
    >>> m = evals.metrics.load_metric("anachronism_rate")
    >>> m.compute(predictions=["The telephone rang."], references=[1600])["texts_with_findings"]
    1.0
"""


def _imports():
    try:
        from evals.anachronism import check
        from evals.profile import count_words
    except ImportError as e:
        raise ImportError(f"anachronism_rate needs Anno's evals.anachronism and evals.profile ({e}); run from the "
                          "repository root or put it on sys.path") from e
    return check, count_words


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class AnachronismRate(evaluate.Metric):
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
        check, count_words = _imports()
        if corpus is not None:
            from evals.anachronism import CheckConfig
            cfg = CheckConfig(corpus_dir=str(corpus))
        findings = words = flagged = 0
        for text, year in zip(predictions, references):
            n = len(check(text, int(year)) if corpus is None else check(text, int(year), cfg))
            findings += n
            flagged += n > 0
            words += count_words(text)
        return {
            "findings_per_1000_words": 1000.0 * findings / words if words else 0.0,
            "texts_with_findings": flagged / len(predictions) if predictions else 0.0,
            "findings": findings,
            "words": words,
        }

"""Anno metric `rouge`: ROUGE-1/2/L/Lsum F-measures through Google's rouge_score package (the reference
implementation), as a local `evaluate` module that loads offline with evals.metrics.load_metric("rouge") or
evaluate.load("evals/metrics/rouge"). Aggregated by the mean F-measure over texts by default."""

import datasets

import evaluate

_DESCRIPTION = "ROUGE (Lin, 2004) F-measures computed by rouge_score; case-insensitive; rougeLsum splits on newlines."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of texts. references: list of texts (or of lists: the best-scoring reference counts).
    rouge_types: default ["rouge1", "rouge2", "rougeL", "rougeLsum"]. use_stemmer: Porter stemming (False).
    use_aggregator: mean over texts (True) or one value per text (False).
Returns: one F-measure (or a list of them) per rouge type.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="Lin 2004; google-research/rouge", inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=False, use_aggregator=True):
        from rouge_score import rouge_scorer

        types = rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
        per = {t: [] for t in types}
        for pred, ref in zip(predictions, references):
            score = scorer.score_multi(list(ref), pred) if isinstance(ref, list) else scorer.score(ref, pred)
            for t in types:
                per[t].append(float(score[t].fmeasure))
        if not use_aggregator:
            return per
        return {t: sum(v) / len(v) if v else 0.0 for t, v in per.items()}

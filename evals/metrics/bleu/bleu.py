"""Anno metric `bleu`: corpus BLEU through sacrebleu (the field's reference implementation: 13a tokenizer,
brevity penalty, no smoothing by default), as a local `evaluate` module that loads offline with
evals.metrics.load_metric("bleu") or evaluate.load("evals/metrics/bleu"). Scores are on 0..1."""

import datasets

import evaluate

_DESCRIPTION = "Corpus BLEU (Papineni et al., 2002) computed by sacrebleu; 0..1 instead of sacrebleu's 0..100."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of texts.
    references: list of references per text (a list of str, or one str).
    max_order: longest n-gram (default 4). smooth: sacrebleu smoothing ("none", "floor", "add-k", "exp").
    tokenize: sacrebleu tokenizer (default "13a"). lowercase: bool.
Returns:
    bleu, precisions (per order, 0..1), brevity_penalty, length_ratio, translation_length, reference_length.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="Papineni et al. 2002; Post 2018 (sacrebleu)",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("string"),
                                   "references": datasets.Sequence(datasets.Value("string"))}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, max_order=4, smooth="none", tokenize="13a", lowercase=False):
        from sacrebleu.metrics import BLEU

        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        width = max(len(r) for r in refs)
        # sacrebleu takes reference *streams*: stream k holds every text's k-th reference (None if it has fewer)
        streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
        s = BLEU(max_ngram_order=max_order, smooth_method=smooth, tokenize=tokenize, lowercase=lowercase,
                 effective_order=False).corpus_score(list(predictions), streams)
        return {"bleu": round(s.score / 100, 12), "precisions": [p / 100 for p in s.precisions], "brevity_penalty": s.bp,
                "length_ratio": s.ratio, "translation_length": s.sys_len, "reference_length": s.ref_len}

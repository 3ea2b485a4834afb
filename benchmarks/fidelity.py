"""Historical-fidelity benchmark (issue 13's acceptance figures), every one measured on held-out material by
the library functions that the CLI and the app use; nothing is re-implemented here:

- era fidelity of a model: `evals.probes.era_fidelity` (4 eras x 24 samples x 150 tokens by default): the
  mean error in years of the dater on generations from each era token alone, and each era's mean estimate;
- the anachronism detector on the challenge test set (`evals/challenge/test.jsonl`: held-out lexicon entries
  planted in test-split passages) - recall and precision - and false findings per 1,000 words on the corpus
  test split's real text (`evals.challenge.score`), the first-seen table built from the train split only;
- dating error of the served dater (fitted on train) on the test split's texts and 300-word passages
  (`evals.dating_cv.held_out_split`); with `--cv` also the author-disjoint cross-validation (minutes);
- tokenizer tokens/word and bytes/token (`engine.tokenizer.tokenizer_report`) on the test split's sources as
  extracted from the raw mirror with long s kept (`training.extract`), read through the tokenizer's own
  normalizer (engine/normalize.py's table, what ships) and with the normalizer removed (raw bytes to BPE).

Prints progress to stderr and one JSON line last on stdout.
  python benchmarks/fidelity.py --model runs/tiny --corpus data/corpus [--tokenizer runs/tok8k] [--cv]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.corpus_io import iter_documents, load_report  # noqa: E402
from engine.tokenizer import load_tokenizer, tokenizer_report  # noqa: E402
from evals.anachronism import CheckConfig, check  # noqa: E402
from evals.challenge import score as challenge  # noqa: E402
from evals.dating_cv import cross_validate, held_out_split  # noqa: E402
from evals.probes import ERA_YEARS, era_fidelity  # noqa: E402


def _log(msg: str) -> None:
    print(f"[fidelity {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def era(model: str, corpus: str, samples: int, tokens: int) -> dict:
    from engine.loading import load

    m = load(model)
    r = era_fidelity(m.model, m.tokenizer, ERA_YEARS, samples=samples, max_new_tokens=tokens, corpus_dir=corpus)
    return {"mae_years": round(r["mae_years"], 1), "ordered": r["ordered"], "samples_per_year": samples,
            "max_new_tokens": tokens,
            "mean_estimate": {y: round(v["mean_estimate"], 1) for y, v in r["per_year"].items()}}


def detector(corpus: str) -> dict:
    run = partial(check, config=CheckConfig(corpus_dir=corpus, corpus_splits=("train",)))
    s = challenge.score(challenge.load(Path(challenge.__file__).with_name("test.jsonl")), run)
    real = challenge.false_findings(corpus, "test", run)
    return {"set": "challenge test.jsonl", "answers": s["answers"], "recall": s["recall"],
            "precision": s["precision"], "real_text_split": "test", "real_words": real["words"],
            "false_per_1k_words": real["per_1k_words"]}


def _raw_test_texts(corpus: str) -> list[str]:
    """The test split's sources extracted from the raw mirror, long s kept: text as a user would paste it."""
    from training.extract import ExtractConfig, extract
    from training.fetch import FetchConfig, fetch_source
    from training.manifest import read_manifest

    cfg = load_report(corpus)["config"]
    wanted = {d["source_id"] for d in iter_documents(corpus, "test")}
    records = [r for r in read_manifest(ROOT / cfg["manifest"])[0] if r["id"] in wanted]
    mirror = (ROOT / cfg["mirror"]).resolve() if not Path(cfg["mirror"]).is_absolute() else Path(cfg["mirror"])
    fetch = FetchConfig(mirror=str(mirror), cache_dir=str(ROOT / cfg.get("cache_dir", "data/cache/sources")))
    texts = []
    for r in records:
        divisions = extract(r, fetch_source(r, fetch), ExtractConfig(keep_long_s=True))
        texts.append("\n\n".join(d.text for d in divisions))
    return texts


def tokenizer(path: str, corpus: str) -> dict:
    tok = load_tokenizer(path)
    raw = copy.deepcopy(tok)
    raw.backend_tokenizer.normalizer = None
    texts = _raw_test_texts(corpus)
    out = {"tokenizer": path, "text": "test-split sources, raw mirror extraction with long s kept",
           "texts": len(texts), "long_s": sum(t.count("\u017f") for t in texts)}
    for name, t in (("normalised", tok), ("raw", raw)):
        r = tokenizer_report(t, texts, words=[])
        out[name] = {"tokens_per_word": round(r["fertility"], 4), "bytes_per_token": round(r["bytes_per_token"], 4),
                     "tokens": r["tokens"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/tiny", help="run folder, model folder or Hub id (era fidelity)")
    ap.add_argument("--corpus", default="data/corpus", help="built corpus with train and test splits")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's own)")
    ap.add_argument("--samples", type=int, default=24,
                    help="era-fidelity generations per era (24: with 6 the figure moves ~10 years between seeds)")
    ap.add_argument("--tokens", type=int, default=150, help="era-fidelity tokens per generation")
    ap.add_argument("--cv", action="store_true", help="also the author-disjoint 10-fold dating CV (minutes)")
    a = ap.parse_args()
    out, t0 = {"model": a.model, "corpus": a.corpus, "corpus_fingerprint": load_report(a.corpus).get("fingerprint")}, \
        time.time()
    _log("dating: served model on the test split")
    d = held_out_split(a.corpus, "test")
    out["dating_test"] = {"texts_mae": d["texts"]["mae"], "texts_median_ae": d["texts"]["median_ae"],
                          "texts_coverage": d["texts"]["coverage"], "texts": d["texts"]["n"],
                          "passages_mae": d["passages"]["mae"], "passages_coverage": d["passages"]["coverage"],
                          "passages": d["passages"]["n"]}
    if a.cv:
        _log("dating: author-disjoint 10-fold CV")
        cv = cross_validate(a.corpus, folds=10)
        out["dating_cv"] = {"texts_mae": cv["texts"]["mae"], "passages_mae": cv["mae"],
                            "texts_by_century": {k: v["mae"] for k, v in cv["texts"]["by_century"].items()}}
    _log("era fidelity")
    out["era_fidelity"] = era(a.model, a.corpus, a.samples, a.tokens)
    _log("anachronism detector: challenge test set and test-split real text")
    out["detector"] = detector(a.corpus)
    _log("tokenizer on raw test-split text")
    tok_path = a.tokenizer or str(_model_tokenizer(a.model))
    out["tokenizer"] = tokenizer(tok_path, a.corpus)
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, ensure_ascii=False))


def _model_tokenizer(model: str) -> Path:
    """The folder holding the model's tokenizer.json (a run folder keeps it in model/)."""
    from engine.loading import resolve_model_path

    path = resolve_model_path(model)
    for cand in (path, path / "model"):
        if (cand / "tokenizer.json").is_file():
            return cand
    raise FileNotFoundError(f"no tokenizer.json in {path} or {path / 'model'}: pass --tokenizer")


if __name__ == "__main__":
    main()

"""Model cards (engine/card.py): licence from the corpus licences, model-index numbers equal to the evaluation
report's, special-token ids read from the tokenizer, "not evaluated" for absent figures, per-century bits per
byte derived from the per-decade figures, and the card parsing with huggingface_hub.ModelCard."""
import json
import math
import shutil

import pytest
from huggingface_hub import ModelCard

from engine.card import find_records, licence, render_card

# A full evaluation report's summary and LM part, shaped as evals.suite.run_suite writes them (test data).
FULL_SUMMARY = {"val_bpb": 2.0312, "val_ppl": 181.5, "probe_expected_rate": 0.375,
                "anachronisms_per_1000_words": 0.5, "era_fidelity_mae_years": 41.25, "rougeL": 0.11, "bleu": 0.02,
                "anachronisms_per_1000_words_locked": 0.0}
PER_DECADE = {"1590s": {"loss": 4.0, "bpb": 2.0, "tokens": 100}, "1610s": {"loss": 5.0, "bpb": 2.5, "tokens": 300},
              "1650s": {"loss": 4.5, "bpb": 1.5, "tokens": 200}}


def _records(tiny_run, **kw):
    rec = find_records(tiny_run)
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def test_licence_follows_the_corpus_licences():
    assert licence({"licenses": {"CC0-1.0": {}, "public domain": {}}})[0] == "cc0-1.0"
    assert licence({"licenses": {"CC0-1.0": {}, "public-domain text; TEI markup CC-BY-4.0": {}}})[0] == "cc-by-4.0"
    assert licence({"licenses": {"CC0-1.0": {}, "All rights reserved": {}}})[0] == "other"
    assert licence(None)[0] == "other"


def test_card_from_run_records(tiny_run):
    rec = find_records(tiny_run)
    assert rec.run and rec.corpus and rec.eval and rec.quant is None and rec.name == "tiny"
    card = ModelCard(str(render_card(rec, "anno/tiny-test")))  # parses the front matter it wrote
    d = card.data.to_dict()
    assert d["license"] == "cc0-1.0" and d["language"] == "en" and d["library_name"] == "transformers"
    assert d["pipeline_tag"] == "text-generation" and "anno" in d["tags"]
    results = card.data.eval_results
    got = {r.metric_type: r.metric_value for r in results}
    assert got == rec.eval["summary"]  # exactly the report's numbers, nothing else
    tok = json.loads((tiny_run / "model" / "tokenizer.json").read_text())
    for t in tok["added_tokens"]:  # every special token with its real id
        assert f"| `{t['content']}` | {t['id']} |" in card.text
    assert "| `<|endoftext|>` | 0 |" in card.text and "| `<|1850s|>` | 36 |" in card.text
    # the fixture's report has no generation-based evaluators: said, not invented
    assert "Era fidelity (mean absolute error, in years, of the dated generations): not evaluated." in card.text
    assert "Anachronism rate (findings per 1,000 generated words): not evaluated." in card.text
    assert f"{rec.run['final_eval']['val_bpb']:.4f} bits per byte" in card.text
    assert f"| {'test'} | 24 | " in card.text  # training data per source from the corpus report


def test_card_with_a_full_report_and_cc_by_sources(tiny_run):
    eval_report = {"suite": {"name": "full"}, "created": "2026-11-29T12:00:00Z", "summary": FULL_SUMMARY,
                   "lm": {"per_decade": PER_DECADE}}
    corpus = json.loads(json.dumps(find_records(tiny_run).corpus))
    corpus["licenses"]["public-domain text; TEI markup CC-BY-4.0"] = {"texts": 1, "documents": 1, "words": 9,
                                                                       "chars": 9}
    corpus["attribution"] = [{"text": "Required (CC BY 4.0): English Novel Corpus (ELTeC-eng), edited by Lou Burnard.",
                              "sources": ["x"], "required": True}]
    card = ModelCard(str(render_card(_records(tiny_run, eval=eval_report, corpus=corpus), "anno/tiny-test")))
    assert card.data.license == "cc-by-4.0"
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == FULL_SUMMARY
    assert "41.2 years" in card.text and "0.50 unlocked, 0.00 time-locked" in card.text
    assert "Required (CC BY 4.0): English Novel Corpus (ELTeC-eng), edited by Lou Burnard." in card.text
    # 1500s: the 1590s alone; 1600s: bits = (5*300 + 4.5*200)/ln2, bytes = bits_d / bpb_d summed
    bits = (5.0 * 300 + 4.5 * 200) / math.log(2)
    nbytes = 5.0 * 300 / math.log(2) / 2.5 + 4.5 * 200 / math.log(2) / 1.5
    assert "| 1500s | 2.0000 | 100 |" in card.text and f"| 1600s | {bits / nbytes:.4f} | 500 |" in card.text


def test_no_report_says_not_evaluated(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints", "report.json"))
    rec = find_records(run)
    assert rec.eval is None
    card = ModelCard(str(render_card(rec, "anno/tiny-test")))
    # model-index falls back to the run's own final validation numbers, labelled as such
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == \
        {k: rec.run["final_eval"][k] for k in ("val_bpb", "val_ppl")}
    assert "Not evaluated: no report from `cli.py eval`" in card.text


def test_card_refuses_a_tokenizer_that_contradicts_the_config(tiny_run, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_run / "model", model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["eos_token_id"] = 5  # the seed project's kind of mistake
    (model / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"eos_token_id=5 but the tokenizer's <\|endoftext\|> is 0"):
        render_card(find_records(model), "anno/x")


def test_find_records_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="model="):
        find_records(tmp_path)

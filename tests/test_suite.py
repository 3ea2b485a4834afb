"""The quick evaluation suite end to end on a tiny trained run (every evaluator real, small sizes)."""
import json

import pytest

from evals.suite import run_suite, suite_config


@pytest.mark.slow
def test_quick_suite_writes_json_and_markdown(tiny_corpus, tiny_tokenizer, tmp_path, monkeypatch):
    from training.loop import train
    from training.train_config import TrainConfig
    import evals.suite as S

    run = tmp_path / "run"
    train(TrainConfig(preset="tiny", corpus=str(tiny_corpus), tokenizer=str(tiny_tokenizer), out=str(run),
                      tokens_cache=str(tmp_path / "tokens"), n_ctx=128, batch_size=4, max_steps=4, eval_tokens=256,
                      eval_every=4, log_every=4), log=lambda m: None)
    small = S.SuiteConfig("quick", 2048, 2, 1, (1600, 1800), 1, 2, 0)
    monkeypatch.setattr(S, "suite_config", lambda name: small)
    out = tmp_path / "report.json"
    r = run_suite(str(run), "quick", out=str(out), log=lambda m: None)
    saved = json.loads(out.read_text())
    assert saved["summary"] == r["summary"] and set(r["summary"]) >= {"val_bpb", "era_fidelity_mae_years", "rougeL"}
    assert r["corpus"] == str(tiny_corpus) and r["continuation"]["n"] == 2 and r["probes"]["probes"] == 2
    assert r["profile"]["texts"] >= 1 and "mattr" in r["profile"]["metrics"]
    assert out.with_suffix(".md").read_text().startswith("# Evaluation:")


def test_suite_names():
    assert suite_config("quick").lm_tokens < suite_config("full").lm_tokens
    with pytest.raises(ValueError, match="suite='slow'; allowed: quick, full"):
        suite_config("slow")

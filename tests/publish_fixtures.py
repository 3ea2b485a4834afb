"""Session fixture for the publishing and export tests: a tiny trained run (4x128, ctx 64, 12 steps on the
tiny corpus) with an evaluation report in run/report.json holding the LM part of the quick suite, measured
by evals.lm.lm_metrics on the validation split. The generation-based evaluators (probes, era fidelity,
continuations) are left out to keep the fixture at seconds, so cards built from it must say "not evaluated"
for them; tests/test_card.py covers a full report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tiny_tokenizer, tmp_path_factory) -> Path:
    from engine.loading import load
    from evals.lm import lm_metrics
    from training.loop import train
    from training.train_config import TrainConfig

    root = tmp_path_factory.mktemp("publish")
    run = root / "tiny"
    train(TrainConfig(preset="tiny", corpus=str(tiny_corpus), tokenizer=str(tiny_tokenizer), out=str(run),
                      tokens_cache=str(root / "tokens"), n_ctx=64, batch_size=4, max_steps=12, eval_tokens=512,
                      eval_every=6, log_every=6, checkpoint_every=12), log=lambda m: None)
    m = load(run)
    lm = lm_metrics(m.model, m.tokenizer, tiny_corpus, max_tokens=2048)
    report = {"model": str(run), "model_path": str(m.path), "suite": {"name": "quick"}, "corpus": str(tiny_corpus),
              "created": "2026-11-29T00:00:00Z", "lm": lm, "summary": {"val_bpb": lm["bpb"], "val_ppl": lm["ppl"]}}
    (run / "report.json").write_text(json.dumps(report, indent=1))
    return run

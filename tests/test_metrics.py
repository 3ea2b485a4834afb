"""Tests for evals/metrics: every local metric module loads through evaluate.load(<local path>) with the network
cut off; BLEU and ROUGE give hand-computed answers; anachronism_rate and era_fidelity compute their figures
from stand-in evals.anachronism.check / evals.dating.date functions (the real ones are tested elsewhere)."""
from __future__ import annotations

import math
import socket
import sys
import types
from collections import namedtuple

import pytest

from evals.metrics import METRICS_DIR, available, load_metric, metric_path

NAMES = ["anachronism_rate", "bleu", "era_fidelity", "rouge"]
Finding = namedtuple("Finding", "start end word year basis confidence explanation")


@pytest.fixture(scope="module")
def offline():
    """HF_HUB_OFFLINE=1 and every socket connect refused: a module that reached for the Hub or a URL (e.g. an
    upstream '# From: https://...' import comment) would fail to load."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests/test_metrics.py")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_EVALUATE_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def metrics(offline):
    import evaluate

    return {name: evaluate.load(str(METRICS_DIR / name), keep_in_memory=True) for name in NAMES}


def test_every_local_module_loads_offline(metrics):
    import evaluate

    assert available() == NAMES
    for name, m in metrics.items():
        assert isinstance(m, evaluate.EvaluationModule), name
        assert m.name == name


def test_load_metric_resolves_local_path_and_names_choices_on_error(offline):
    m = load_metric("bleu")
    assert m.compute(predictions=["a b c d"], references=["a b c d"])["bleu"] == pytest.approx(1.0)
    assert metric_path("rouge") == METRICS_DIR / "rouge"
    with pytest.raises(ValueError, match=r"'sacrebleu'.*\['anachronism_rate', 'bleu', 'era_fidelity', 'rouge'\]"):
        load_metric("sacrebleu")


def test_bleu_identical_disjoint_and_hand_computed(metrics):
    bleu = metrics["bleu"]
    same = "The merchant sold cloth and silver in Cheapside ."
    assert bleu.compute(predictions=[same], references=[[same]])["bleu"] == pytest.approx(1.0)
    assert bleu.compute(predictions=["a b c d e"], references=["f g h i j"])["bleu"] == 0.0
    # "the cat sat on the mat" vs "the cat is on the mat", max_order 2: unigrams 5/6 match (the x2, cat, on,
    # mat), bigrams 3/5 (the cat, on the, the mat); equal lengths so no brevity penalty -> sqrt(5/6 * 3/5).
    r = bleu.compute(predictions=["the cat sat on the mat"], references=["the cat is on the mat"], max_order=2)
    assert r["precisions"] == pytest.approx([5 / 6, 3 / 5])
    assert r["bleu"] == pytest.approx(math.sqrt(0.5))
    # a 2-word candidate against a 6-word reference: precisions 1, brevity penalty exp(1 - 6/2) = e^-2
    r = bleu.compute(predictions=["the cat"], references=["the cat sat on the mat"], max_order=2)
    assert r["brevity_penalty"] == pytest.approx(math.exp(-2))
    assert r["bleu"] == pytest.approx(math.exp(-2))


def test_rouge_hand_computed(metrics):
    # prediction 6 tokens, reference 8. ROUGE-1 overlap 5 (the x2, cat, on, mat): P 5/6, R 5/8, F 5/7.
    # ROUGE-2 overlap 2 ("the cat", "on the") of 5 and 7 bigrams: F = 2*(2/5)(2/7)/(2/5+2/7) = 1/3.
    # ROUGE-L: LCS "the cat on the mat" = 5 -> F 5/7.
    r = metrics["rouge"].compute(predictions=["The cat sat on the mat."],
                                 references=["the cat was sitting on the red mat"], use_aggregator=False)
    assert r["rouge1"][0] == pytest.approx(5 / 7)
    assert r["rouge2"][0] == pytest.approx(1 / 3)
    assert r["rougeL"][0] == pytest.approx(5 / 7)
    same = metrics["rouge"].compute(predictions=["hello there"], references=["hello there"])
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}


def test_anachronism_rate_on_stand_in_check(metrics, monkeypatch):
    calls = []

    def check(text, year):
        calls.append((text, year))
        n = text.lower().count("telephone")
        return [Finding(0, 9, "telephone", 1876, "first-seen", 0.9, "stand-in")] * n

    monkeypatch.setitem(sys.modules, "evals.anachronism", types.SimpleNamespace(check=check))
    texts = ["The telephone rang twice.", "A letter came by the post.", "Telephone, telephone!"]
    r = metrics["anachronism_rate"].compute(predictions=texts, references=[1600, 1650, 1700])
    # 3 findings in 4 + 6 + 2 = 12 words -> 250 per 1,000; 2 of 3 texts have one
    assert r["findings"] == 3 and r["words"] == 12
    assert r["findings_per_1000_words"] == pytest.approx(250.0)
    assert r["texts_with_findings"] == pytest.approx(2 / 3)
    assert calls == list(zip(texts, [1600, 1650, 1700])) and all(type(y) is int for _, y in calls)


def test_era_fidelity_on_stand_in_date(metrics, monkeypatch):
    dated = {"a": {"year": 1600, "low": 1580, "high": 1620},   # target 1610: error 10, covered
             "b": {"year": 1650, "low": 1640, "high": 1660},   # target 1600: error 50, not covered
             "c": {"year": 1725, "low": 1700, "high": 1750},   # target 1700: error 25 (counts), on the edge
             "d": {"year": None, "low": None, "high": None}}   # undated
    monkeypatch.setitem(sys.modules, "evals.dating", types.SimpleNamespace(date=lambda text: dated[text]))
    r = metrics["era_fidelity"].compute(predictions=list("abcd"), references=[1610, 1600, 1700, 1650])
    assert r["mae_years"] == pytest.approx((10 + 50 + 25) / 3)
    assert r["within_25_years"] == pytest.approx(0.5)
    assert r["interval_coverage"] == pytest.approx(0.5)
    assert r["undated"] == 1

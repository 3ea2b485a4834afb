"""Probe data is consistent with the lexicon; whole-word matching; probe and era-fidelity scoring."""
import pytest

from engine.lexicon import load_lexicon
from evals import probes as P


def test_probe_file_is_consistent_with_the_lexicon():
    lex = load_lexicon()
    ps = P.load_probes()
    assert len(ps) >= 20 and len({p["id"] for p in ps}) == len(ps)
    for p in ps:
        for w in p["forbidden"]:
            e = lex.lookup(w)
            assert e is not None and e.year > p["year"], (p["id"], w)
        for w in p["expected"]:
            e = lex.lookup(w)
            assert e is None or e.year <= p["year"], (p["id"], w)


def test_whole_word_matching():
    assert P.has_word("The Steam-Engine works", "steam engine") and P.has_word("a steam  engine", "steam-engine")
    assert not P.has_word("the heart of the year", "art") and not P.has_word("yearly", "year")
    assert P.has_word("'Tis the King's", "king's") and P.count_words("'Tis the King's men, 1666.") == 4


class _Finding:
    def __init__(self, word, year):
        self.word, self.year = word, year


def test_run_probes_and_era_fidelity(monkeypatch, tiny_tokenizer):
    import sys
    import types

    from engine.model import build_model, model_config
    from engine.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer)
    model = build_model(model_config("tiny", len(tok), n_layer=1, n_ctx=64), 0, 0, 0).eval()
    # stand-ins for the detector and the dating model: this test checks the probe bookkeeping only
    A = types.SimpleNamespace(check=lambda text, year: [_Finding("x", year + 1)] if "a" in text else [])
    D = types.SimpleNamespace(date=lambda text: {"year": 1700, "low": 1650, "high": 1750})
    monkeypatch.setitem(sys.modules, "evals.anachronism", A)
    monkeypatch.setitem(sys.modules, "evals.dating", D)
    probes = [{"id": "p", "year": 1666, "prompt": "The fire", "expected": ["the"], "forbidden": ["telegraph"]}]
    r = P.run_probes(model, tok, probes, samples=2, max_new_tokens=12)
    assert r["probes"] == 1 and len(r["rows"][0]["texts"]) == 2 and 0 <= r["expected_rate"] <= 1
    assert r["words"] == sum(P.count_words(t) for t in r["rows"][0]["texts"])
    e = P.era_fidelity(model, tok, years=(1600, 1800), samples=1, max_new_tokens=8)
    assert e["mae_years"] == pytest.approx(100.0) and e["per_year"]["1600"]["estimates"] == [1700]

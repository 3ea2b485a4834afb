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
    D = types.SimpleNamespace(date=lambda text, corpus="data/corpus": {"year": 1700, "low": 1650, "high": 1750})
    monkeypatch.setitem(sys.modules, "evals.anachronism", A)
    monkeypatch.setitem(sys.modules, "evals.dating", D)
    probes = [{"id": "p", "year": 1666, "prompt": "The fire", "expected": ["the"], "forbidden": ["telegraph"]}]
    r = P.run_probes(model, tok, probes, samples=2, max_new_tokens=12)
    assert r["probes"] == 1 and len(r["rows"][0]["texts"]) == 2 and 0 <= r["expected_rate"] <= 1
    assert r["words"] == sum(P.count_words(t) for t in r["rows"][0]["texts"])
    e = P.era_fidelity(model, tok, years=(1600, 1800), samples=1, max_new_tokens=8)
    assert e["mae_years"] == pytest.approx(100.0) and e["per_year"]["1600"]["estimates"] == [1700]


def _tiny_model_folder(tiny_tokenizer, out):
    from engine.checkpoint import TOKENIZER_FILES, save_hf_model
    from engine.model import build_model, model_config
    from engine.tokenizer import load_tokenizer

    import torch

    tok = load_tokenizer(tiny_tokenizer)
    torch.manual_seed(0)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    model = build_model(model_config("tiny", len(tok), n_layer=1, n_ctx=64), eot, eot, eot).eval()
    files = [tiny_tokenizer / f for f in TOKENIZER_FILES if (tiny_tokenizer / f).exists()]
    save_hf_model(model, out, extra_files=files)
    return model, tok


def test_era_fidelity_scores_each_sample_with_the_given_corpus(monkeypatch, tiny_tokenizer, tmp_path, capsys):
    import json
    import sys
    import types

    import cli

    model, tok = _tiny_model_folder(tiny_tokenizer, tmp_path / "model")
    seen = []

    def fake_date(text, corpus):
        # stand-in dating model: a known year per call, so the bookkeeping has exact answers
        seen.append(str(corpus))
        return {"year": [1500, 1600, 1790, 1810][(len(seen) - 1) % 4]}

    monkeypatch.setitem(sys.modules, "evals.dating", types.SimpleNamespace(date=fake_date))
    e = P.era_fidelity(model, tok, years=(1550, 1800), samples=2, max_new_tokens=6, corpus_dir=tmp_path / "c")
    assert e["per_year"]["1550"]["estimates"] == [1500, 1600] and e["per_year"]["1800"]["estimates"] == [1790, 1810]
    assert e["per_year"]["1550"]["mean_estimate"] == 1550 and e["per_year"]["1800"]["mean_estimate"] == 1800
    assert e["mae_years"] == pytest.approx((50 + 50 + 10 + 10) / 4) and e["ordered"] is True
    assert seen == [str(tmp_path / "c")] * 4 and len(e["per_year"]["1550"]["texts"]) == 2
    # the same seeds give the same texts; reversed years are reported as not ordered
    again = P.era_fidelity(model, tok, years=(1800, 1550), samples=2, max_new_tokens=6, corpus_dir="c")
    assert again["per_year"]["1550"]["texts"] == e["per_year"]["1550"]["texts"]
    assert again["per_year"]["1800"]["mean_estimate"] == 1550 and again["ordered"] is False
    for bad, match in [({"years": (1400,)}, "1500..1859"), ({"years": ()}, "years="), ({"samples": 0}, "samples=0")]:
        with pytest.raises(ValueError, match=match):
            P.era_fidelity(model, tok, **{"corpus_dir": "c", **bad})

    # the CLI prints the library function's JSON
    seen.clear()
    args = ["era-fidelity", "--model", str(tmp_path / "model"), "--years", "1550", "1800", "--samples", "2",
            "--max-new-tokens", "6", "--corpus", str(tmp_path / "c")]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mae_years"] == e["mae_years"] and out["per_year"]["1550"]["texts"] == e["per_year"]["1550"]["texts"]
    assert cli.main(args[:3]) == 2  # no --corpus and not a run folder
    assert "a corpus is needed (--corpus" in capsys.readouterr().err
    assert cli.main(args[:-2] + ["--corpus", "c", "--years", "1900"]) == 2
    assert "1500..1859" in capsys.readouterr().err

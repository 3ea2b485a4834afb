"""No leakage in defaults (issue 13): the first-seen table that `check` and the time lock use is built from
the train split only, the corpus is always an explicit argument (check: lexicon only without one, and it says
so; date: a clear error), and caches key on the corpus fingerprint."""
from __future__ import annotations

import json
import logging

import pytest

import cli
import evals
from engine import firstseen as fs
from engine.corpus_io import CorpusError
from engine.timelock import banned_forms

# Words that appear only in held-out text: none may reach the default table.
DOCS = {"train": [("a", 1600, "The king went to the market."), ("b", 1700, "The merchant sold tea.")],
        "validation": [("v", 1650, "A telegraph and a steamboat.")],
        "test": [("t", 1750, "The photograph of the bicycle.")]}


def corpus(root, fingerprint="leak" * 16):
    for split, docs in DOCS.items():
        (root / split).mkdir(parents=True)
        with open(root / split / "00000.jsonl", "w", encoding="utf-8") as f:
            for sid, year, text in docs:
                f.write(json.dumps({"id": f"{sid}#0", "source_id": sid, "year": year, "text": text,
                                    "split": split}) + "\n")
    (root / "report.json").write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
    return root


def test_default_table_holds_no_validation_or_test_text(tmp_path):
    root = corpus(tmp_path / "corpus")
    table = fs.load_table(root)
    assert table.splits == ("train",)
    for word in ("telegraph", "steamboat", "photograph", "bicycle"):
        assert table.first_seen(word) is None, word
    assert table.first_seen("tea") == (1700, 1, 1) and table.total_words == 10
    everything = fs.load_table(root, splits=("train", "validation", "test"))  # the table can see them when asked
    assert everything.first_seen("telegraph") == (1650, 1, 1) and everything.first_seen("bicycle") == (1750, 1, 1)


def test_table_cache_keys_on_the_corpus_fingerprint(tmp_path):
    root = corpus(tmp_path / "corpus")
    fs.load_table(root)
    (root / "report.json").write_text(json.dumps({"fingerprint": "next" * 16}), encoding="utf-8")
    fs.load_table(root)
    names = sorted(p.name for p in (tmp_path / "cache" / "firstseen").iterdir())
    assert names == [f"leakleakleakleak-train-v{fs.VERSION}.tsv.gz", f"nextnextnextnext-train-v{fs.VERSION}.tsv.gz"]


def test_check_without_a_corpus_is_lexicon_only_and_says_so(tmp_path, caplog):
    from evals.anachronism import _resources

    _resources.cache_clear()
    with caplog.at_level(logging.WARNING, logger="anno.check"):
        found = evals.check("She telephoned him.", 1700)
    assert [f.word for f in found] == ["telephoned"] and found[0].basis != "corpus"
    assert "lexicon evidence only" in caplog.text
    root = corpus(tmp_path / "corpus")
    assert [f.word for f in evals.check("She telephoned him.", 1700, corpus=root)] == ["telephoned"]
    with pytest.raises(CorpusError, match="not a built corpus"):
        evals.check("She telephoned him.", 1700, corpus=tmp_path / "nowhere")


def test_date_and_the_lock_take_the_corpus_explicitly(tmp_path):
    with pytest.raises(ValueError, match="needs a corpus"):
        evals.date("Thou art a knave.")
    with pytest.raises(CorpusError, match="not a built corpus"):
        evals.date("Thou art a knave.", corpus=tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="not a built corpus"):
        banned_forms(1600, corpus_dir=tmp_path / "nowhere")
    singles, _ = banned_forms(1600)  # no corpus: the dated lexicon alone
    assert "telegraph" in singles


def test_cli_check_date_and_generate_take_corpus(tmp_path, capsys):
    assert cli.main(["check", "--text", "She telephoned him.", "--year", "1700"]) == 0
    out = capsys.readouterr()
    assert "lexicon evidence only" in out.err and json.loads(out.out)[0]["word"] == "telephoned"
    assert cli.main(["date", "--text", "Thou art a knave."]) == 2
    assert "date needs --corpus DIR" in capsys.readouterr().err
    assert cli.main(["date", "--cv", "--corpus", str(tmp_path / "nowhere")]) == 2
    assert "not a built corpus" in capsys.readouterr().err
    args = cli.build_parser().parse_args(["generate", "--model", "m", "--lock-year", "1600", "--corpus", "c"])
    assert args.corpus == "c"

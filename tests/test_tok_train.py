"""Tokenizer training on a built corpus: the acceptance figures on the real 197-source corpus."""
import json

import pytest

from training.corpus import iter_documents
from training.tok_train import train_corpus_tokenizer


@pytest.mark.slow
def test_32k_tokenizer_on_the_real_corpus(full_corpus, tmp_path):
    report = train_corpus_tokenizer(full_corpus, tmp_path / "tok", 32_000, compare_seed=True, log=lambda m: None)
    assert report["validation_round_trip_failures"] == 0
    assert report["validation_documents"] == len(list(iter_documents(full_corpus, "validation")))
    assert report["archaic_single_token_fraction"] >= 0.9, report["archaic_not_single"]
    # the seed recipe (NFD + StripAccents, whitespace/punctuation split) loses text on every real document
    assert report["comparison"]["seed_round_trip_failures"] > 0.9 * report["validation_documents"]
    assert json.loads((tmp_path / "tok" / "tokenizer_report.json").read_text())["vocab_size"] == 32_000


def test_corpus_tokenizer_report(tiny_corpus, tmp_path):
    r = train_corpus_tokenizer(tiny_corpus, tmp_path / "tok", 300, compare_seed=True, log=lambda m: None)
    assert r["validation_round_trip_failures"] == 0 and r["vocab_size"] == 300
    assert r["comparison"]["seed"]["texts"] == r["validation_documents"]
    with pytest.raises(ValueError, match="vocab_size must be an integer in \\[294"):
        train_corpus_tokenizer(tiny_corpus, tmp_path / "t2", 100, log=lambda m: None)

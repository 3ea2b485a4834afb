"""Token data: cached shards, layout identical to encode_document, exact byte counts, deterministic batches."""
import numpy as np
import pytest
import torch

from engine.tokenizer import encode_document, load_tokenizer
from training.corpus import iter_documents
from training.tokens import batch_generator, cache_key, load_tokens, prepare_tokens, sample_batch


def test_shards_match_encode_document_and_are_cached(tiny_corpus, tiny_tokenizer, tmp_path):
    folder = prepare_tokens(tiny_corpus, tiny_tokenizer, tmp_path, log=lambda m: None)
    data = load_tokens(folder)
    tok = load_tokenizer(tiny_tokenizer)
    expected = [i for d in iter_documents(tiny_corpus, "validation") for i in encode_document(tok, d["text"], d["year"])]
    assert data.validation.dtype == np.uint16 and data.validation.tolist() == expected
    assert len(data.validation_decade) == len(data.validation)
    assert sum(data.meta["splits"]["train"]["tokens_per_decade"].values()) == len(data.train)
    mtime = (folder / "train.bin").stat().st_mtime_ns
    assert prepare_tokens(tiny_corpus, tiny_tokenizer, tmp_path, log=lambda m: None) == folder
    assert (folder / "train.bin").stat().st_mtime_ns == mtime  # served from the cache, not rebuilt
    assert not list(tmp_path.glob(".*partial*"))


def test_cache_key_changes_with_the_tokenizer(tiny_corpus, tiny_tokenizer, tmp_path):
    from training.tok_train import train_corpus_tokenizer

    other = tmp_path / "tok"
    train_corpus_tokenizer(tiny_corpus, other, vocab_size=300, compare_seed=False, log=lambda m: None)
    assert cache_key(tiny_corpus, tiny_tokenizer) != cache_key(tiny_corpus, other)
    assert cache_key(tiny_corpus, tiny_tokenizer) == cache_key(tiny_corpus, tiny_tokenizer)


def test_batches_are_a_function_of_step(tiny_corpus, tiny_tokenizer, tmp_path):
    data = load_tokens(prepare_tokens(tiny_corpus, tiny_tokenizer, tmp_path, log=lambda m: None))
    a = sample_batch(data.train, 4, 16, batch_generator(1, 7, 0, 0))
    b = sample_batch(data.train, 4, 16, batch_generator(1, 7, 0, 0))
    c = sample_batch(data.train, 4, 16, batch_generator(1, 7, 0, 1))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert torch.equal(a[0][:, 1:], a[1][:, :-1])  # targets are inputs shifted by one
    with pytest.raises(ValueError, match="training tokens for a context of"):
        sample_batch(data.train[:10], 1, 16, batch_generator(1, 0, 0, 0))


def test_missing_validation_split_is_a_clear_error(tiny_corpus, tiny_tokenizer, tmp_path):
    import shutil

    broken = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, broken)
    shutil.rmtree(broken / "validation")
    with pytest.raises(ValueError, match="has no validation documents"):
        prepare_tokens(broken, tiny_tokenizer, tmp_path / "cache", log=lambda m: None)

"""Token data: cached shards, layout identical to encode_document, exact byte counts, deterministic batches
with the document's era token at position 0 of every window (training and validation alike)."""
import json

import numpy as np
import pytest
import torch

from engine.scoring import era_window, era_windows
from engine.tokenizer import encode_document, era_token, load_tokenizer
from training.corpus import iter_documents
from training.tokens import (FORMAT, batch_generator, cache_key, load_tokens, prepare_tokens, sample_batch,
                             sample_starts)


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
    a = sample_batch(data, 4, 16, batch_generator(1, 7, 0, 0))
    b = sample_batch(data, 4, 16, batch_generator(1, 7, 0, 0))
    c = sample_batch(data, 4, 16, batch_generator(1, 7, 0, 1))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    assert torch.equal(a[0][:, 1:], a[1][:, :-1])  # targets are inputs shifted by one
    d = sample_batch(data, 4, 16, batch_generator(1, 7, 0, 0), decade_power=0.5)
    assert torch.equal(d[0], sample_batch(data, 4, 16, batch_generator(1, 7, 0, 0), decade_power=0.5)[0])
    with pytest.raises(ValueError, match="training tokens for a context of"):
        sample_starts(data.train_docs[:1], 10, 1, 16, batch_generator(1, 0, 0, 0))
    with pytest.raises(ValueError, match="decade_power=1.5"):
        sample_batch(data, 1, 16, batch_generator(1, 0, 0, 0), decade_power=1.5)


@pytest.mark.parametrize("power", [1.0, 0.0])
def test_every_window_starts_with_its_documents_era_token(tiny_corpus, tiny_tokenizer, tmp_path, power):
    data = load_tokens(prepare_tokens(tiny_corpus, tiny_tokenizer, tmp_path, log=lambda m: None))
    tok = load_tokenizer(tiny_tokenizer)
    docs = list(iter_documents(tiny_corpus, "train"))
    era_ids = [tok.convert_tokens_to_ids(era_token(d["year"])) for d in docs]
    assert len(data.train_docs) == len(docs) and data.train[data.train_docs].tolist() == era_ids
    ctx, seen = 32, set()
    for step in range(40):
        gen = batch_generator(3, step, 0, 0)
        starts = sample_starts(data.train_docs, len(data.train), 8, ctx, batch_generator(3, step, 0, 0),
                               np.asarray(data.train[data.train_docs]), power)
        x, y = sample_batch(data, 8, ctx, gen, decade_power=power)
        for i, s in enumerate(starts):
            d = int(np.searchsorted(data.train_docs, s, side="right")) - 1
            assert x[i, 0].item() == era_ids[d]  # the era of the document the window came from
            body = data.train[s:s + ctx].astype(np.int64) if data.train_docs[d] != s else data.train[s + 1:s + ctx + 1]
            assert y[i].tolist() == body.tolist()
            seen.add(docs[d]["decade"])
    assert len(seen) >= 6  # windows come from across the corpus, not one document


def test_decade_power_balances_eras():
    # 3 documents: era 5 holds 9,000 of 10,000 tokens; era 7 and era 9 hold 500 each
    tokens = np.zeros(10_000, dtype=np.uint16)
    doc_starts = np.array([0, 9_000, 9_500])
    tokens[doc_starts] = [5, 7, 9]
    def shares(power):
        starts = sample_starts(doc_starts, len(tokens), 4000, 8, batch_generator(0, 0, 0, 0), tokens[doc_starts], power)
        era = tokens[doc_starts[np.searchsorted(doc_starts, starts, side="right") - 1]]
        return [float(np.mean(era == e)) for e in (5, 7, 9)]
    assert shares(1.0) == pytest.approx([0.9, 0.05, 0.05], abs=0.02)  # uniform over tokens
    assert shares(0.0) == pytest.approx([1 / 3] * 3, abs=0.03)  # uniform over eras
    w = np.array([9000, 500, 500]) ** 0.5
    assert shares(0.5) == pytest.approx(list(w / w.sum()), abs=0.03)


def test_validation_windows_are_era_prefixed_like_training():
    # two documents [era, text..., eot]: 1 2 3 4 0 | 7 8 9 0
    tokens = np.array([1, 11, 12, 13, 0, 7, 21, 22, 0])
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    docs = np.array([0, 5])
    assert era_window(tokens, docs, 0, 3).tolist() == [1, 11, 12, 13]  # a document start is the stream itself
    assert era_window(tokens, docs, 2, 3).tolist() == [1, 12, 13, 0]
    assert era_window(tokens, docs, 6, 2).tolist() == [7, 21, 22]
    flat, g, starts = era_windows(tokens, groups, docs, [2, 4], 3)
    assert flat.tolist() == [1, 12, 13, 0, 1, 0, 7, 21] and starts == [0, 4]
    # targets (flat[s+1:s+4]) carry the groups of the stream tokens they are
    assert g[1:4].tolist() == [0, 0, 0] and g[5:8].tolist() == [0, 1, 1]


def test_cache_format_is_versioned(tiny_corpus, tiny_tokenizer, tmp_path):
    # caches of the format before document starts existed (anno-tokens/1) are never reused
    folder = prepare_tokens(tiny_corpus, tiny_tokenizer, tmp_path, log=lambda m: None)
    assert FORMAT != "anno-tokens/1" and json.loads((folder / "meta.json").read_text())["format"] == FORMAT
    assert (folder / "train.docs.bin").exists() and (folder / "validation.docs.bin").exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "meta.json").write_text(json.dumps({"format": "anno-tokens/1", "dtype": "uint16"}))
    with pytest.raises(ValueError, match="has format 'anno-tokens/1'"):
        load_tokens(old)


def test_missing_validation_split_is_a_clear_error(tiny_corpus, tiny_tokenizer, tmp_path):
    import shutil

    broken = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, broken)
    shutil.rmtree(broken / "validation")
    with pytest.raises(ValueError, match="has no validation documents"):
        prepare_tokens(broken, tiny_tokenizer, tmp_path / "cache", log=lambda m: None)

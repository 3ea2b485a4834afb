"""Session-wide tiny artifacts shared by the engine/training tests: a small multi-decade corpus built by
the real pipeline from generated text, and a 512-token tokenizer trained on it."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

WORDS = ("the and of to that is it with for was his he be not by but which this they shall will from have "
         "king towne church bread wine horse cloth silver market sermon law house street river bridge ship "
         "merchant widow servant letter money plague fire winter summer harvest parish court sword thou hath "
         "doth quoth London Thames Cheapside").split()


def period_text(seed: int, n_words: int = 900) -> str:
    """Deterministic pseudo-prose; a small Markov flavour (a word list per seed) so that it is learnable."""
    rng = random.Random(seed)
    vocab = rng.sample(WORDS, 30)
    sents = []
    while sum(len(s.split()) for s in sents) < n_words:
        sents.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 14))).capitalize() + ".")
    return "\n\n".join(" ".join(sents[i:i + 4]) for i in range(0, len(sents), 4))


def make_corpus(root: Path, n_sources: int = 24) -> Path:
    from training.corpus import CorpusConfig, build_corpus

    src = root / "src"
    src.mkdir(parents=True)
    records = []
    for i in range(n_sources):
        data = period_text(i).encode()
        name = f"t{i}.txt"
        (src / name).write_bytes(data)
        records.append({"id": f"t{i}", "source": "test", "format": "text", "title": f"Text {i}", "author": "Anon",
                        "year": 1550 + 5 * i, "place": "London", "london": True, "license": "CC0-1.0",
                        "attribution": "", "files": [{"path": name, "sha256": hashlib.sha256(data).hexdigest(),
                                                      "bytes": len(data)}]})
    manifest = root / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = root / "corpus"
    build_corpus(CorpusConfig(manifest=str(manifest), mirror=str(src), out=str(out), cache_dir=str(root / "cache"),
                              workers=1, val_fraction=0.2))
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("tiny_corpus"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus, tmp_path_factory) -> Path:
    from training.tok_train import train_corpus_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tok"
    train_corpus_tokenizer(tiny_corpus, out, vocab_size=512, compare_seed=False, log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def full_corpus(tmp_path_factory, mirror) -> Path:
    """All 197 shared sources built with 2 workers (about a minute): for the acceptance tests."""
    from training.corpus import CorpusConfig, build_corpus

    root = tmp_path_factory.mktemp("full")
    build_corpus(CorpusConfig(manifest="training/sources.jsonl", mirror=str(mirror), out=str(root / "corpus"),
                              cache_dir=str(root / "cache"), workers=2))
    return root / "corpus"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for decoding tests: on the shared 2-core machine 2 threads stalled single decode
    steps by seconds while other jobs ran (64 tiny-model tokens: 0.07 s usually, 6 s once)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def blas_ops():
    """engine/blas.py's ops (anno::anno_linear and anno::anno_linear_q8), built into the session's package
    folder and loaded; skipped where numpy ships no OpenBLAS to build them against."""
    from engine import blas
    from engine import compiled_step as C

    found = blas.find_openblas()
    if isinstance(found, str):
        pytest.skip(f"no OpenBLAS to build engine/blas.cpp's ops against: {found}")
    why = blas.unavailable(C.package_dir(), C.cxx_compiler())
    assert why is None, why
    return blas

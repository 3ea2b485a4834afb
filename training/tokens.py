"""Token data for training: the corpus tokenized once into memory-mapped arrays, cached by a hash of the
corpus and the tokenizer, plus deterministic batch sampling and the per-token byte lengths that make
bits-per-byte exact.

Layout of a token folder (data/tokens/<key>/): train.bin and validation.bin (uint16 when the vocabulary
fits, else uint32; every document is [era token] + text + [<|endoftext|>]), validation.decade.bin (the
decade of every validation token, for loss per century) and meta.json (counts, tokens per decade).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.tokenizer import EOT, era_token, load_tokenizer, tokenizer_hash
from training.corpus import iter_documents, load_report

FORMAT = "anno-tokens/1"
BATCH_DOCS = 64  # documents per encode_batch call: enough for the Rust side to use both cores


@dataclass(frozen=True)
class TokenData:
    folder: Path
    train: np.ndarray
    validation: np.ndarray
    validation_decade: np.ndarray
    meta: dict

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]


def cache_key(corpus_dir: str | Path, tokenizer_dir: str | Path) -> str:
    """Changes whenever the corpus shards or the tokenizer change (report fingerprint + tokenizer.json hash)."""
    fp = load_report(corpus_dir)["fingerprint"]
    return hashlib.sha256(f"{FORMAT}:{fp}:{tokenizer_hash(tokenizer_dir)}".encode()).hexdigest()[:16]


def _encode_split(tok, corpus_dir, split: str, path: Path, dtype) -> tuple[int, dict, list[tuple[int, int]]]:
    """Stream a split's documents into path; returns (tokens, tokens per decade, [(decade, n_tokens)] runs)."""
    eot = tok.convert_tokens_to_ids(EOT)
    per_decade: dict[str, int] = {}
    runs: list[tuple[int, int]] = []
    total = 0
    with open(path, "wb") as f:
        batch: list[dict] = []

        def flush():
            nonlocal total
            # encode_batch runs in parallel in Rust; the layout is encode_document's (tested equal)
            encs = tok.backend_tokenizer.encode_batch([d["text"] for d in batch], add_special_tokens=False)
            for d, enc in zip(batch, encs):
                ids = [tok.convert_tokens_to_ids(era_token(d.get("year"))), *enc.ids, eot]
                np.asarray(ids, dtype=dtype).tofile(f)
                total += len(ids)
                dec = d.get("decade")
                per_decade[str(dec)] = per_decade.get(str(dec), 0) + len(ids)
                runs.append((-1 if dec is None else int(dec), len(ids)))
            batch.clear()

        for doc in iter_documents(corpus_dir, split):
            batch.append(doc)
            if len(batch) >= BATCH_DOCS:
                flush()
        flush()
    return total, per_decade, runs


def prepare_tokens(corpus_dir: str | Path, tokenizer_dir: str | Path, cache_dir: str | Path = "data/tokens",
                   log=print) -> Path:
    """Tokenize the corpus once; later calls with the same corpus and tokenizer return the cached folder."""
    key = cache_key(corpus_dir, tokenizer_dir)
    out = Path(cache_dir) / key
    if (out / "meta.json").exists():
        return out
    tok = load_tokenizer(tokenizer_dir)
    vocab = len(tok)
    dtype = np.uint16 if vocab <= 65536 else np.uint32
    tmp = Path(cache_dir) / f".{key}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.time()
    try:
        meta = {"format": FORMAT, "key": key, "corpus": str(corpus_dir), "tokenizer": str(tokenizer_dir),
                "tokenizer_hash": tokenizer_hash(tokenizer_dir), "vocab_size": vocab, "dtype": np.dtype(dtype).name,
                "corpus_fingerprint": load_report(corpus_dir)["fingerprint"], "splits": {}}
        for split in ("train", "validation"):
            n, per_decade, runs = _encode_split(tok, corpus_dir, split, tmp / f"{split}.bin", dtype)
            if n == 0:
                raise ValueError(f"corpus {corpus_dir} has no {split} documents: rebuild it with more sources")
            meta["splits"][split] = {"tokens": n, "tokens_per_decade": dict(sorted(per_decade.items()))}
            if split == "validation":
                decades = np.concatenate([np.full(k, d, dtype=np.int16) for d, k in runs])
                decades.tofile(tmp / "validation.decade.bin")
            log(f"tokens: {split} {n:,} tokens")
        meta["seconds"] = round(time.time() - t0, 2)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_tokens(folder: str | Path) -> TokenData:
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])
    return TokenData(folder, np.memmap(folder / "train.bin", dtype=dtype, mode="r"),
                     np.memmap(folder / "validation.bin", dtype=dtype, mode="r"),
                     np.memmap(folder / "validation.decade.bin", dtype=np.int16, mode="r"), meta)


def batch_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The sampling RNG of one micro-batch is a pure function of (seed, step, micro-step, rank): a resumed
    run draws exactly the batches the uninterrupted run would have drawn, with no sampler state to save."""
    h = hashlib.blake2b(f"{seed}:{step}:{micro}:{rank}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(h, "little") & ((1 << 63) - 1))


def sample_batch(tokens: np.ndarray, batch_size: int, ctx: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ctx+1 tokens (nanoGPT style): inputs and next-token targets."""
    if len(tokens) <= ctx + 1:
        raise ValueError(f"only {len(tokens)} training tokens for a context of {ctx}: use a larger corpus or n_ctx")
    starts = torch.randint(len(tokens) - ctx - 1, (batch_size,), generator=gen).tolist()
    chunk = np.stack([tokens[s:s + ctx + 1].astype(np.int64) for s in starts])
    t = torch.from_numpy(chunk)
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()

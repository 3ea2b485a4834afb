"""Token data for training: the corpus tokenized once into memory-mapped arrays, cached by a hash of the
corpus, the tokenizer and this format, plus deterministic batch sampling (each window era-conditioned) and
the per-token byte lengths that make bits-per-byte exact.

Layout of a token folder (data/tokens/<key>/): train.bin and validation.bin (uint16 when the vocabulary
fits, else uint32; every document is [era token] + text + [<|endoftext|>]), train.docs.bin and
validation.docs.bin (int64 start offset of every document), validation.decade.bin (the decade of every
validation token, for loss per century) and meta.json (counts, tokens per decade).

Era conditioning in every window. Generation always puts the era token at position 0, but nanoGPT-style
random windows over the stream put it there almost never: on the demo corpus (15.7M train tokens, 3,389
documents, ~4,600 tokens each) 0.03% of 32,000 sampled 256-token windows started with an era token and 5.4%
held one anywhere, so the demo model's era tokens barely steered it (issue 13: asked for 1550/1650/1750/1840
it wrote text dated 1664/1742/1739/1762). Chosen: a per-window prefix (engine.scoring.era_window). A window
at position s of document d is [era(d)] + tokens[s:s+ctx] (a window starting on d's first token is the
stream as is), so every window starts with its own document's era token, every position of the corpus is
still a possible start, and a window crossing into the next document meets that document's own era token
in the stream. Document-aware sampling (windows only at document starts) would train on the first 256
tokens of each document, 6% of the corpus. Cost: one of 257 window slots, and 5.4 vs 2.2 ms per 16x256
batch (median of 5 alternating rounds of 200 batches on the loaded shared 2-core machine), against ~570 ms
per tiny training step. Validation (training/loop.py evaluate) and evals/lm.py score windows built the same
way, so their figures are those of text as the model reads it in use, era token first.

`decade_power` (TrainConfig) tempers the decade mix: an era's share of windows ~ (its tokens)^p. The demo
corpus is lopsided (1840s 15.6% and 1650s 12.7% of train tokens, 1540s 0.2%); p=1 keeps uniform sampling
over tokens (the default), p=0.5 gives the 1550s 2.3% of windows instead of 1.5%, the 1840s 7.3%.
The demo recipe (Makefile) uses p=0.25, chosen on development years for era fidelity (README).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.atomic import atomic_dir
from engine.scoring import era_window
from engine.tokenizer import EOT, era_token, load_tokenizer, tokenizer_hash
from training.corpus import iter_documents, load_report

FORMAT = "anno-tokens/2"  # /2: per-split document starts (era-prefixed windows)
BATCH_DOCS = 64  # documents per encode_batch call: enough for the Rust side to use both cores


@dataclass(frozen=True)
class TokenData:
    folder: Path
    train: np.ndarray
    validation: np.ndarray
    validation_decade: np.ndarray
    meta: dict
    train_docs: np.ndarray  # start offset of every document in train (int64, ascending, first 0)
    validation_docs: np.ndarray

    @property
    def train_doc_era(self) -> np.ndarray:
        """The era token id of every train document (its first token), read once."""
        if "_doc_era" not in self.__dict__:
            object.__setattr__(self, "_doc_era", np.asarray(self.train[self.train_docs]))
        return self.__dict__["_doc_era"]

    @property
    def vocab_size(self) -> int:
        return self.meta["vocab_size"]


def cache_key(corpus_dir: str | Path, tokenizer_dir: str | Path) -> str:
    """Changes whenever the corpus shards or the tokenizer change (report fingerprint + tokenizer.json hash)."""
    fp = load_report(corpus_dir)["fingerprint"]
    return hashlib.sha256(f"{FORMAT}:{fp}:{tokenizer_hash(tokenizer_dir)}".encode()).hexdigest()[:16]


def _encode_split(tok, corpus_dir, split: str, path: Path, dtype) -> tuple[int, dict, list[tuple[int, int]]]:
    """Stream a split's documents into path; returns (tokens, tokens per decade, [(decade, n_tokens)] runs),
    one run per document in stream order."""
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
    t0 = time.time()
    with atomic_dir(out, f"the token cache {out}") as tmp:
        meta = {"format": FORMAT, "key": key, "corpus": str(corpus_dir), "tokenizer": str(tokenizer_dir),
                "tokenizer_hash": tokenizer_hash(tokenizer_dir), "vocab_size": vocab, "dtype": np.dtype(dtype).name,
                "corpus_fingerprint": load_report(corpus_dir)["fingerprint"], "splits": {}}
        for split in ("train", "validation"):
            n, per_decade, runs = _encode_split(tok, corpus_dir, split, tmp / f"{split}.bin", dtype)
            if n == 0:
                raise ValueError(f"corpus {corpus_dir} has no {split} documents: rebuild it with more sources")
            meta["splits"][split] = {"tokens": n, "documents": len(runs),
                                     "tokens_per_decade": dict(sorted(per_decade.items()))}
            starts = np.concatenate([[0], np.cumsum([k for _, k in runs])[:-1]]).astype(np.int64)
            starts.tofile(tmp / f"{split}.docs.bin")
            if split == "validation":
                decades = np.concatenate([np.full(k, d, dtype=np.int16) for d, k in runs])
                decades.tofile(tmp / "validation.decade.bin")
            log(f"tokens: {split} {n:,} tokens")
        meta["seconds"] = round(time.time() - t0, 2)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


def load_tokens(folder: str | Path) -> TokenData:
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"token folder {folder} has format {meta.get('format')!r}, not {FORMAT!r} (no document "
                         f"starts for era-prefixed windows): delete it and prepare_tokens rebuilds it")
    dtype = np.dtype(meta["dtype"])
    return TokenData(folder, np.memmap(folder / "train.bin", dtype=dtype, mode="r"),
                     np.memmap(folder / "validation.bin", dtype=dtype, mode="r"),
                     np.memmap(folder / "validation.decade.bin", dtype=np.int16, mode="r"), meta,
                     np.fromfile(folder / "train.docs.bin", dtype=np.int64),
                     np.fromfile(folder / "validation.docs.bin", dtype=np.int64))


def batch_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The sampling RNG of one micro-batch is a pure function of (seed, step, micro-step, rank): a resumed
    run draws exactly the batches the uninterrupted run would have drawn, with no sampler state to save."""
    h = hashlib.blake2b(f"{seed}:{step}:{micro}:{rank}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(h, "little") & ((1 << 63) - 1))


def sample_starts(doc_starts: np.ndarray, n_tokens: int, batch_size: int, ctx: int, gen: torch.Generator,
                  doc_era: np.ndarray | None = None, decade_power: float = 1.0) -> list[int]:
    """Window starts. decade_power 1: every token position equally likely (nanoGPT's sampling). p < 1: an
    era's share of windows is proportional to (its tokens)^p, so thin decades are seen more often; within
    an era, positions stay uniform. Draws one document per window (weight: its length x era factor), then
    an offset in it, both from gen."""
    if n_tokens <= ctx + 1:
        raise ValueError(f"only {n_tokens} training tokens for a context of {ctx}: use a larger corpus or n_ctx")
    if not 0 <= decade_power <= 1:
        raise ValueError(f"decade_power={decade_power}: must be in [0, 1] (1: uniform over tokens)")
    lengths = np.diff(np.append(doc_starts, n_tokens)).astype(np.float64)
    weights = lengths
    if decade_power != 1 and doc_era is not None:
        eras, inverse = np.unique(doc_era, return_inverse=True)
        era_tokens = np.bincount(inverse, weights=lengths, minlength=len(eras))
        weights = lengths * era_tokens[inverse] ** (decade_power - 1)
    docs = torch.multinomial(torch.from_numpy(weights), batch_size, replacement=True, generator=gen).numpy()
    u = torch.rand(batch_size, generator=gen, dtype=torch.float64).numpy()
    starts = doc_starts[docs] + np.floor(u * lengths[docs]).astype(np.int64)
    return np.minimum(starts, n_tokens - ctx - 1).tolist()


def sample_batch(data: TokenData, batch_size: int, ctx: int, gen: torch.Generator,
                 decade_power: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows of ctx+1 tokens, each with its document's era token at position 0
    (engine.scoring.era_window): inputs and next-token targets."""
    starts = sample_starts(data.train_docs, len(data.train), batch_size, ctx, gen, data.train_doc_era, decade_power)
    t = torch.from_numpy(np.stack([era_window(data.train, data.train_docs, s, ctx) for s in starts]))
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()

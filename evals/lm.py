"""LM metrics on a built corpus: loss, perplexity and bits per byte on a split, overall and per decade.

Documents are encoded exactly as in training ([era token] + text + [<|endoftext|>]) and scored in
non-overlapping context windows spread over the whole split (engine/scoring.py), each with its document's
era token at position 0 as in training, so these figures match the training loop's validation figures for
the same windows."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.corpus_io import iter_documents
from engine.generate import model_context
from engine.scoring import (doc_starts_after_eot, era_windows, score_windows, summarize, token_byte_lengths,
                            window_starts)
from engine.tokenizer import EOT, ERA_DECADES, encode_document, era_token

DECADES = [f"{d}s" for d in ERA_DECADES] + ["undated"]


def _decade_index(decade) -> int:
    return ERA_DECADES.index(decade) if decade in ERA_DECADES else len(ERA_DECADES)


def encode_split(tok, corpus_dir: str | Path, split: str = "validation", max_docs: int | None = None):
    """Token ids and each token's decade index for a split, documents in corpus order."""
    ids, groups = [], []
    for i, doc in enumerate(iter_documents(corpus_dir, split)):
        if max_docs is not None and i >= max_docs:
            break
        enc = encode_document(tok, doc["text"], doc.get("year"))
        ids.extend(enc)
        groups.extend([_decade_index(doc.get("decade"))] * len(enc))
    return np.asarray(ids, dtype=np.int64), np.asarray(groups, dtype=np.int64)


def lm_metrics(model, tok, corpus_dir: str | Path, split: str = "validation", max_tokens: int = 65_536) -> dict:
    """{loss, ppl, bpb, tokens, per_decade: {"1650s": {loss, bpb, tokens}}} over at most max_tokens."""
    tokens, groups = encode_split(tok, corpus_dir, split)
    if len(tokens) < 2:
        raise ValueError(f"the {split} split of {corpus_dir} has no text to score")
    ctx = model_context(model)
    starts = window_starts(len(tokens), ctx, max_tokens)
    if tok.backend_tokenizer.token_to_id(era_token(None)) is not None:  # era windows, as the model was trained
        eot = tok.backend_tokenizer.token_to_id(EOT)
        tokens, groups, starts = era_windows(tokens, groups, doc_starts_after_eot(tokens, eot), starts, ctx)
    device = next(model.parameters()).device
    sums = score_windows(model, tokens, groups, starts, ctx, token_byte_lengths(tok), len(DECADES), device=device)
    r = summarize(sums, DECADES)
    r["per_decade"] = r.pop("groups")
    r.update(split=split, windows=len(starts), context=ctx)
    return r

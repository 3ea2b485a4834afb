"""Language-model scoring over token windows: summed negative log-likelihood, token and UTF-8 byte counts
per group (century, decade, ...), from which loss, perplexity and bits per byte follow. Shared by the
training loop's validation and the evaluators' LM metrics, so both report the same numbers. Both score
windows as the model is trained and used (`era_windows`): the document's era token at position 0.

Bits per byte divides the summed loss (in bits) by the bytes the predicted tokens stand for, which makes it
comparable across tokenizers; special tokens (era, end-of-text) stand for no bytes."""
from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F


def token_byte_lengths(tok) -> torch.Tensor:
    """UTF-8 bytes each token stands for (0 for special tokens). Byte-level BPE writes one printable
    character per byte in a token's string form, so its length is the byte count."""
    vocab = len(tok)
    lengths = torch.zeros(vocab, dtype=torch.int64)
    special = set(tok.all_special_ids) | set(tok.added_tokens_decoder)
    for token, idx in tok.get_vocab().items():
        if idx < vocab and idx not in special:
            lengths[idx] = len(token)
    return lengths


def window_starts(n_tokens: int, ctx: int, max_tokens: int) -> list[int]:
    """Start offsets of non-overlapping windows of ctx+1 tokens, spread evenly over the whole stream (so
    every part of it, every decade, is measured), covering at most max_tokens predicted tokens."""
    n_windows = max(1, (n_tokens - 1) // ctx)
    take = max(1, min(n_windows, max_tokens // ctx))
    return [int(i) * ctx for i in np.linspace(0, n_windows - 1, take).round().astype(int)]


def doc_starts_after_eot(tokens: np.ndarray, eot_id: int) -> np.ndarray:
    """Start offsets of the documents of a stream laid out as [era] + text + [eot] per document."""
    ends = np.flatnonzero(np.asarray(tokens[:-1]) == eot_id) + 1
    return np.concatenate([[0], ends]).astype(np.int64)


def _doc_start(doc_starts: np.ndarray, start: int) -> int:
    d = int(np.searchsorted(doc_starts, start, side="right")) - 1
    return start if d < 0 else int(doc_starts[d])


def era_window(tokens: np.ndarray, doc_starts: np.ndarray, start: int, ctx: int) -> np.ndarray:
    """The ctx+1 tokens of the window at `start` as training sees it (training/tokens.py): its document's
    first token (the era token) at position 0, then tokens[start:start+ctx]; a window that starts on a
    document's first token is the stream itself. int64; ctx+1 long when start <= len(tokens) - ctx - 1."""
    first = _doc_start(doc_starts, start)
    if first == start:
        return np.asarray(tokens[start:start + ctx + 1], dtype=np.int64)
    return np.concatenate([[int(tokens[first])], np.asarray(tokens[start:start + ctx], dtype=np.int64)])


def era_windows(tokens: np.ndarray, groups: np.ndarray, doc_starts: np.ndarray, starts: list[int],
                ctx: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The windows at `starts`, era-prefixed as in training, laid end to end: (tokens, groups, starts) for
    score_windows. Every target keeps the group of the stream token it is (the prefix is never a target)."""
    toks, grps, offsets, at = [], [], [], 0
    for s in starts:
        s = max(0, min(int(s), len(tokens) - ctx - 1))
        first = _doc_start(doc_starts, s)
        w = era_window(tokens, doc_starts, s, ctx)
        g = np.asarray(groups[s:s + len(w)] if first == s else
                       np.concatenate([[groups[first]], groups[s:s + len(w) - 1]]), dtype=np.int64)
        toks.append(w)
        grps.append(g)
        offsets.append(at)
        at += len(w)
    if not toks:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), []
    return np.concatenate(toks), np.concatenate(grps), offsets


@torch.no_grad()
def score_windows(model, tokens: np.ndarray, groups: np.ndarray, starts: list[int], ctx: int,
                  token_bytes: torch.Tensor, n_groups: int, autocast=nullcontext, device="cpu") -> torch.Tensor:
    """(n_groups, 3) float64 sums of [nll, tokens, bytes]; groups[i] is the group of token i (the window's
    targets take the groups of the tokens they predict)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros((n_groups, 3), dtype=torch.float64, device=device)
    token_bytes = token_bytes.to(device)
    for s in starts:
        window = torch.from_numpy(np.asarray(tokens[s:s + ctx + 1], dtype=np.int64)).to(device)
        if window.numel() < 2:
            continue
        x, y = window[:-1][None], window[1:]
        with autocast():
            logits = model(x, use_cache=False).logits[0].float()
        loss = F.cross_entropy(logits, y, reduction="none").double()
        g = torch.from_numpy(np.asarray(groups[s + 1:s + 1 + len(y)], dtype=np.int64)).to(device)
        sums[:, 0].index_add_(0, g, loss)
        sums[:, 1].index_add_(0, g, torch.ones_like(loss))
        sums[:, 2].index_add_(0, g, token_bytes[y].double())
    model.train(was_training)
    return sums


def summarize(sums: torch.Tensor, labels: list[str], prefix: str = "") -> dict:
    """Overall loss / perplexity / bits per byte / tokens, plus loss and bits per byte for every group."""
    tot = sums.sum(0)
    loss = (tot[0] / tot[1]).item() if tot[1] > 0 else float("nan")
    bpb = (tot[0] / math.log(2) / tot[2]).item() if tot[2] > 0 else float("nan")
    per = {labels[i]: {"loss": round((r[0] / r[1]).item(), 4),
                       "bpb": round((r[0] / math.log(2) / r[2]).item(), 4) if r[2] > 0 else None,
                       "tokens": int(r[1].item())} for i, r in enumerate(sums) if r[1] > 0}
    return {f"{prefix}loss": loss, f"{prefix}ppl": math.exp(min(loss, 50)), f"{prefix}bpb": bpb,
            f"{prefix}tokens": int(tot[1].item()), "groups": per}

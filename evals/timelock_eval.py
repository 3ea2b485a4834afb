"""What the time lock costs and buys: anachronism findings per 1,000 generated words with and without
`lock_year`, and the perplexity of real text of the period with and without the lock's mask.

The perplexity cost is measured on validation documents dated at or before the lock year: the locked
distribution renormalises the model's over the tokens the lock still allows at each position; a real
token the lock forbids (a false ban on period text) would get probability 0, so such positions are
counted and reported, and left out of both perplexities so that the two figures stay comparable."""
from __future__ import annotations

import math
import time

import torch

from engine.corpus_io import iter_documents
from engine.generate import Finished, GenerationConfig, model_context, stream
from engine.timelock import TimeLock
from engine.tokenizer import encode_document


def _rate(texts: list[str], year: int, corpus_dir=None) -> tuple[float, int, int]:
    from evals.anachronism import CheckConfig, check
    from evals.probes import count_words

    cfg = CheckConfig(corpus_dir=None if corpus_dir is None else str(corpus_dir))
    words = sum(count_words(t) for t in texts)
    findings = sum(len(check(t, year, cfg)) for t in texts)
    return 1000 * findings / max(words, 1), findings, words


def generations(model, tok, year: int, samples: int, max_new_tokens: int, lock: bool, seed: int = 0,
                corpus_dir=None) -> list[str]:
    """Sampled continuations of the era token alone (temperature 1, no top-k/top-p: the model's own
    distribution, where anachronisms would show)."""
    out = []
    for i in range(samples):
        cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, seed=seed + i,
                               year=year, lock_year=year if lock else None,
                               lock_corpus=None if corpus_dir is None else str(corpus_dir))
        out.append(next(e for e in stream(model, tok, "", cfg) if isinstance(e, Finished)).text)
    return out


@torch.no_grad()
def perplexity_cost(model, tok, corpus_dir, year: int, max_tokens: int = 8192) -> dict:
    lock = TimeLock(tok, year, corpus_dir=corpus_dir)
    ctx = model_context(model)
    nll_free = nll_locked = 0.0
    n = banned_real = 0
    for doc in iter_documents(corpus_dir, "validation"):
        if doc.get("year") is None or doc["year"] > year or n >= max_tokens:
            continue
        ids = encode_document(tok, doc["text"], doc["year"])[: ctx + 1]
        x = torch.tensor(ids[:-1])[None]
        logp = torch.log_softmax(model(x, use_cache=False).logits[0].float(), -1)
        for pos in range(len(ids) - 1):
            target = ids[pos + 1]
            mask = lock.row_mask(ids[: pos + 1])[: logp.shape[1]]
            if mask[target]:
                banned_real += 1
                continue
            allowed = logp[pos].masked_fill(mask, float("-inf"))
            nll_free -= logp[pos, target].item()
            nll_locked -= (allowed[target] - torch.logsumexp(allowed, 0)).item()
            n += 1
    if n == 0:
        return {"tokens": 0, "note": f"no validation text dated at or before {year}"}
    return {"tokens": n, "ppl_unlocked": math.exp(nll_free / n), "ppl_locked": math.exp(nll_locked / n),
            "ppl_ratio": math.exp((nll_locked - nll_free) / n), "real_tokens_banned": banned_real}


def timelock_report(model, tok, corpus_dir, year: int = 1600, samples: int = 200, max_new_tokens: int = 60,
                    ppl_tokens: int = 8192, seed: int = 0) -> dict:
    t0 = time.time()
    unlocked = generations(model, tok, year, samples, max_new_tokens, lock=False, seed=seed)
    t1 = time.time()
    locked = generations(model, tok, year, samples, max_new_tokens, lock=True, seed=seed, corpus_dir=corpus_dir)
    t2 = time.time()
    free_rate, free_n, free_words = _rate(unlocked, year, corpus_dir)
    lock_rate, lock_n, lock_words = _rate(locked, year, corpus_dir)
    return {
        "lock_year": year, "samples": samples, "max_new_tokens": max_new_tokens,
        "unlocked": {"findings_per_1000_words": free_rate, "findings": free_n, "words": free_words,
                     "seconds": round(t1 - t0, 1)},
        "locked": {"findings_per_1000_words": lock_rate, "findings": lock_n, "words": lock_words,
                   "seconds": round(t2 - t1, 1)},
        "perplexity": perplexity_cost(model, tok, corpus_dir, year, ppl_tokens) if corpus_dir else None,
        "examples": {"unlocked": unlocked[:3], "locked": locked[:3]},
    }

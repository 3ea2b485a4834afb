"""The "train a tokenizer on a built corpus" action: trains on the train split, then reports on the
validation split (fertility, bytes per token, round trip of every validation document, archaic/London
words as single tokens, matches per rule of the normaliser written into tokenizer.json) beside the seed
project's lossy recipe trained on the same data at the same size. The tokenizer's normaliser keeps long s
exactly when the corpus was built keeping it (report.json config.extract.keep_long_s). The report is saved
as tokenizer_report.json in the tokenizer folder and returned."""
from __future__ import annotations

import json
import time
from pathlib import Path

from engine.normalize import NormalizeConfig
from engine.tokenizer import TokenizerConfig, compare_with_seed, train_tokenizer
from training.corpus import iter_documents, load_report


def train_corpus_tokenizer(corpus_dir: str | Path, out: str | Path, vocab_size: int = 32_000,
                           compare_seed: bool = True, log=print) -> dict:
    corpus = load_report(corpus_dir)  # fails clearly when the corpus was never built
    keep_long_s = bool(corpus.get("config", {}).get("extract", {}).get("keep_long_s", False))
    cfg = TokenizerConfig(vocab_size=vocab_size, normalize=NormalizeConfig(keep_long_s=keep_long_s))
    t0 = time.time()
    train_texts = [d["text"] for d in iter_documents(corpus_dir, "train")]
    val_texts = [d["text"] for d in iter_documents(corpus_dir, "validation")]
    if not train_texts or not val_texts:
        raise ValueError(f"corpus {corpus_dir} needs train and validation documents (has {len(train_texts)} and "
                         f"{len(val_texts)})")
    log(f"tokenizer: training byte-level BPE, vocab {vocab_size:,}, on {len(train_texts):,} documents")
    tok = train_tokenizer(train_texts, cfg, out)
    trained_s = time.time() - t0
    if compare_seed:
        log("tokenizer: training the seed recipe on the same data for comparison")
        comparison = compare_with_seed(tok, train_texts, val_texts)
    else:
        from engine.tokenizer import tokenizer_report
        comparison = {"vocab_size": len(tok), "ours": tokenizer_report(tok, val_texts)}
    ours = comparison["ours"]
    report = {
        "tokenizer": str(out), "vocab_size": len(tok), "corpus": str(corpus_dir),
        "corpus_fingerprint": corpus["fingerprint"], "train_documents": len(train_texts),
        "validation_documents": len(val_texts), "train_seconds": round(trained_s, 1),
        "fertility": ours["fertility"], "bytes_per_token": ours["bytes_per_token"],
        "validation_round_trip_failures": ours["round_trip_failures"],
        "archaic_single_token_fraction": ours["archaic"]["single_token_fraction"],
        "archaic_not_single": [w for w, n in ours["archaic"]["tokens_per_word"].items() if n > 1],
        "normalizer": ours["normalizer"],
        "comparison": comparison,
    }
    (Path(out) / "tokenizer_report.json").write_text(json.dumps(report, indent=1))
    return report

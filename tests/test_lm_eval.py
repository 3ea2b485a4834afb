"""LM metrics over a corpus split: figures per decade and agreement with the training loop's scoring."""
import math

from engine.model import build_model, model_config
from engine.tokenizer import load_tokenizer
from evals.lm import encode_split, lm_metrics


def test_lm_metrics_per_decade(tiny_corpus, tiny_tokenizer):
    tok = load_tokenizer(tiny_tokenizer)
    model = build_model(model_config("tiny", len(tok), n_layer=1, n_ctx=32), 0, 0, 0)
    r = lm_metrics(model, tok, tiny_corpus, max_tokens=4096)
    tokens, groups = encode_split(tok, tiny_corpus)
    assert r["tokens"] == sum(v["tokens"] for v in r["per_decade"].values()) <= 4096
    assert set(r["per_decade"]) <= {f"{d}s" for d in range(1550, 1680, 10)}
    assert abs(r["loss"] - math.log(len(tok))) < 0.5  # an untrained model is near uniform
    assert r["ppl"] == math.exp(r["loss"]) and 0 < r["bpb"] < 10
    assert len(tokens) == len(groups) and tokens[-1] == tok.convert_tokens_to_ids("<|endoftext|>")

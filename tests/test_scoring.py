"""Window scoring: exact byte counts, window placement, and sums equal to a direct computation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.model import build_model, model_config
from engine.scoring import score_windows, summarize, token_byte_lengths, window_starts
from engine.normalize import normalize
from engine.tokenizer import load_tokenizer


def test_token_bytes_count_utf8_exactly(tiny_tokenizer):
    tok = load_tokenizer(tiny_tokenizer)
    lengths = token_byte_lengths(tok)
    text = "Thou art in Cheapside, ſir — café 𝔄 1666!\n\n"
    ids = tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
    # the tokenizer reads the normalised text (ſ -> s, engine/normalize.py): its bytes are what the tokens carry
    assert int(lengths[ids].sum()) == len(normalize(text).encode("utf-8")) == len(text.encode("utf-8")) - 1
    assert lengths[tok.convert_tokens_to_ids("<|endoftext|>")] == 0 and lengths[tok.convert_tokens_to_ids("<|1600s|>")] == 0


def test_window_starts():
    starts = window_starts(1601, 16, 160)
    assert len(starts) == 10 and starts == sorted(set(starts)) and all(s % 16 == 0 for s in starts)
    assert starts[0] == 0 and starts[-1] == 1600 - 16
    assert window_starts(5, 16, 1000) == [0]


def test_sums_match_a_direct_computation():
    torch.manual_seed(0)
    model = build_model(model_config("tiny", 300, n_layer=1, n_ctx=8), 0, 0, 0)
    tokens = np.arange(40) % 300
    groups = np.array([0] * 20 + [1] * 20)
    token_bytes = torch.full((300,), 2)
    sums = score_windows(model, tokens, groups, [0, 16], 8, token_bytes, 2)
    nll = []
    for s in (0, 16):
        w = torch.tensor(tokens[s:s + 9])
        logits = model(w[:-1][None]).logits[0]
        nll.append(F.cross_entropy(logits, w[1:], reduction="none"))
    nll = torch.cat(nll).double()
    # window 0 predicts tokens 1..8 (group 0); window 16 predicts 17..24: 17..19 group 0, 20..24 group 1
    assert sums[0, 1] == 11 and sums[1, 1] == 5 and sums[:, 2].sum() == 32
    assert sums[:, 0].sum().item() == pytest.approx(nll.sum().item(), rel=1e-6)
    r = summarize(sums, ["a", "b"])
    assert r["loss"] == pytest.approx(nll.mean().item(), rel=1e-6)
    assert r["bpb"] == pytest.approx(nll.sum().item() / math.log(2) / 32, rel=1e-6)
    assert set(r["groups"]) == {"a", "b"} and r["groups"]["b"]["tokens"] == 5

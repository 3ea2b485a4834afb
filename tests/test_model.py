"""Tests for engine/model.py: preset table, config validation, model construction (SDPA, tied embeddings,
GPT-2 init, token ids), analytic vs real parameter counts, and the FLOPs-per-token formula."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import GPT2LMHeadModel

from engine.model import (
    PRESETS, ModelConfig, build_model, count_params, flops_per_token, hf_config, model_config, param_count, uses_sdpa,
)

VOCAB = 512  # small vocabulary keeps real-model counts fast


def test_preset_table():
    assert PRESETS == {
        "tiny": dict(n_layer=4, n_head=4, n_embd=128, n_ctx=256),
        "small": dict(n_layer=6, n_head=6, n_embd=384, n_ctx=512),
        "slm": dict(n_layer=12, n_head=12, n_embd=768, n_ctx=1024),
        "regular": dict(n_layer=24, n_head=16, n_embd=1024, n_ctx=1024),
    }
    cfg = model_config("slm", 30_000)
    assert cfg == ModelConfig(12, 12, 768, 1024, 30_000, 0.0, "slm")
    assert cfg.head_dim == 64


def test_unknown_preset_lists_allowed_names():
    with pytest.raises(ValueError, match="'huge'.*allowed: tiny, small, slm, regular"):
        model_config("huge", 30_000)


def test_overrides():
    cfg = model_config("tiny", 1000, n_ctx=64, dropout=0.1)
    assert (cfg.n_ctx, cfg.dropout, cfg.n_layer, cfg.preset) == (64, 0.1, 4, "tiny")
    with pytest.raises(ValueError, match=r"unknown ModelConfig override\(s\) \['n_heads'\].*allowed: dropout"):
        model_config("tiny", 1000, n_heads=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_embd=130), r"n_embd=130 must be divisible by n_head=4"),
    (dict(n_layer=0), r"n_layer=0: must be an integer in \[1, 256\]"),
    (dict(n_ctx=-1), r"n_ctx=-1: must be an integer in \[1, 131072\]"),
    (dict(n_head=2.0), r"n_head=2.0: must be an integer"),
    (dict(vocab_size=100), r"vocab_size=100: must be an integer in \[256, 1048576\]"),
    (dict(dropout=1.0), r"dropout=1.0: must be a float in \[0.0, 1.0\)"),
])
def test_config_validation_names_field_and_range(kwargs, message):
    base = dict(n_layer=4, n_head=4, n_embd=128, n_ctx=256, vocab_size=VOCAB)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **kwargs})


def test_honest_param_counts_for_30k_vocab():
    # The seed project claimed 117M / 354M for slm / regular; with a 30k vocabulary they are these.
    assert param_count(model_config("slm", 30_000)) == \
        {"total": 108_882_432, "embedding": 23_826_432, "non_embedding": 85_056_000}
    assert param_count(model_config("regular", 30_000)) == \
        {"total": 334_080_000, "embedding": 31_768_576, "non_embedding": 302_311_424}


@pytest.mark.parametrize("preset", ["tiny", "small", "slm"])
def test_param_count_matches_real_model(preset):
    cfg = model_config(preset, VOCAB)
    model = build_model(cfg, 0, 1, 2)
    assert count_params(model) == param_count(cfg) == count_params(cfg)
    # Cross-check the total against a raw tensor count with tied storage de-duplicated.
    unique = {p.data_ptr(): p.numel() for p in model.state_dict().values()}
    assert sum(unique.values()) == param_count(cfg)["total"]


def test_param_count_matches_regular_on_meta_device():
    # Full-size regular (24 x 1024, 30k vocab) built without allocating memory: same module tree, real shapes.
    cfg = model_config("regular", 30_000)
    with torch.device("meta"):
        model = GPT2LMHeadModel(hf_config(cfg, 0, 0, 0))
    assert count_params(model) == param_count(cfg)


def test_tied_embeddings_share_storage():
    model = build_model(model_config("tiny", VOCAB, n_layer=1), 0, 1, 2)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    with torch.no_grad():
        model.transformer.wte.weight[7, 3] = 42.0
    assert model.lm_head.weight[7, 3].item() == 42.0


def test_token_ids_are_what_was_passed():
    model = build_model(model_config("tiny", VOCAB, n_layer=1), bos_id=5, eos_id=7, pad_id=9)
    for c in (model.config, model.generation_config):
        assert (c.bos_token_id, c.eos_token_id, c.pad_token_id) == (5, 7, 9)
    with pytest.raises(ValueError, match=r"eos_id=512: must be an integer in \[0, 511\]"):
        build_model(model_config("tiny", VOCAB, n_layer=1), 0, VOCAB, 0)


def test_sdpa_attention_in_use(monkeypatch):
    model = build_model(model_config("tiny", VOCAB, n_ctx=32), 0, 1, 2).eval()
    assert uses_sdpa(model)
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    with torch.no_grad():
        model(input_ids=torch.zeros(1, 8, dtype=torch.long))
    assert len(calls) == 4  # once per layer


def test_gpt2_init_and_dropout():
    cfg = model_config("tiny", VOCAB, dropout=0.1)
    model = build_model(cfg, 0, 1, 2)
    block = model.transformer.h[0]
    # GPT-2 init: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 * n_layer)); 64k+ samples -> ~0.3% error.
    assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert torch.count_nonzero(block.attn.c_attn.bias).item() == 0
    assert (model.config.resid_pdrop, model.config.embd_pdrop, model.config.attn_pdrop) == (0.1, 0.1, 0.1)
    assert model.config.activation_function == "gelu"


def test_flops_per_token():
    cfg = model_config("tiny", 30_000)
    n = 4_666_112 - 256 * 128  # total minus wpe
    assert flops_per_token(cfg) == 6 * n + 12 * 4 * 128 * 256 == 29_372_928
    assert flops_per_token(model_config("slm", 30_000)) == pytest.approx(7.618e8, rel=1e-3)

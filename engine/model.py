"""Model presets and construction: the `ModelConfig` dataclass, the preset table, building a GPT-2
(`transformers.GPT2LMHeadModel`, SDPA attention, tied embeddings) from it, and honest parameter / FLOP
counts. No I/O here: saving and loading live in engine/checkpoint.py.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from transformers import GPT2Config, GPT2LMHeadModel

# Any byte-level BPE needs its 256-symbol base alphabet, so a smaller vocabulary is a typo, not a design.
# (This also rules out nanoGPT's character-level shakespeare checkpoints, which the engine has no tokenizer for.)
MIN_VOCAB_SIZE = 256
MAX_VOCAB_SIZE = 1 << 20  # generous; the engine's tokenizers are 8k-50k

# Preset table. param_count(...) with vocab_size=30_000 (the helloLondon tokenizer), tied embeddings
# counted once, computed by this module and pinned in tests/test_model.py:
#   tiny      4 x 128,  ctx 256 :     793,344 non-embedding +  3,872,768 embedding =   4,666,112 total
#   small     6 x 384,  ctx 512 :  10,647,552 non-embedding + 11,716,608 embedding =  22,364,160 total
#   slm      12 x 768,  ctx 1024:  85,056,000 non-embedding + 23,826,432 embedding = 108,882,432 total
#   regular  24 x 1024, ctx 1024: 302,311,424 non-embedding + 31,768,576 embedding = 334,080,000 total
# The seed project advertised slm/regular as "117M/354M", figures that echo OpenAI GPT-2 small/medium with
# its 50,257-token vocabulary; with a 30k vocabulary the honest figures are 108.9M and 334.1M.
# tiny: measured on the shared 2-core CPU, one train step (fwd+bwd+AdamW, batch 8 x 256 tokens, vocab 8k)
# took ~0.30 s at 4 x 128 (~6.8k tokens/s, ~4M tokens in 10 min) vs ~0.50 s at 4 x 256; at vocab 30k the
# lm_head dominates (4 x 256: ~2.2 s/step). Under contention from other jobs steps ran up to ~7x slower.
# A 10-minute CPU budget (~1e13 FLOPs) is compute-optimal near 0.3-1M parameters (Chinchilla, ~20 tokens
# per parameter), hence 128 wide rather than 256.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, n_ctx=256),
    "small": dict(n_layer=6, n_head=6, n_embd=384, n_ctx=512),
    "slm": dict(n_layer=12, n_head=12, n_embd=768, n_ctx=1024),
    "regular": dict(n_layer=24, n_head=16, n_embd=1024, n_ctx=1024),
}

# Fields that must be positive integers, with the upper bound used in error messages.
_INT_LIMITS = {"n_layer": 256, "n_head": 256, "n_embd": 65536, "n_ctx": 1 << 17}


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a GPT-2 style decoder. `preset` records which table row it came from ("custom" if none)."""

    n_layer: int
    n_head: int
    n_embd: int
    n_ctx: int
    vocab_size: int
    dropout: float = 0.0
    preset: str = "custom"

    def __post_init__(self) -> None:
        for name, hi in _INT_LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ValueError(f"ModelConfig.{name}={v!r}: must be an integer in [1, {hi}]")
        v = self.vocab_size
        if isinstance(v, bool) or not isinstance(v, int) or not MIN_VOCAB_SIZE <= v <= MAX_VOCAB_SIZE:
            raise ValueError(
                f"ModelConfig.vocab_size={v!r}: must be an integer in [{MIN_VOCAB_SIZE}, {MAX_VOCAB_SIZE}]"
            )
        if self.n_embd % self.n_head:
            raise ValueError(
                f"ModelConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head} "
                f"(allowed n_head: divisors of {self.n_embd})"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout={self.dropout!r}: must be a float in [0.0, 1.0)")
        if not isinstance(self.preset, str) or not self.preset:
            raise ValueError(f"ModelConfig.preset={self.preset!r}: must be a non-empty string")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def model_config(preset: str, vocab_size: int, **overrides) -> ModelConfig:
    """The named preset at `vocab_size`, with any ModelConfig field overridden (e.g. n_ctx=128, dropout=0.1)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; allowed: {', '.join(PRESETS)}")
    allowed = {f.name for f in fields(ModelConfig)} - {"preset", "vocab_size"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ValueError(f"unknown ModelConfig override(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
    base = ModelConfig(vocab_size=vocab_size, preset=preset, **PRESETS[preset])
    return replace(base, **overrides) if overrides else base


def _check_token_id(name: str, value: int | None, vocab_size: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
        raise ValueError(f"{name}={value!r}: must be an integer in [0, {vocab_size - 1}] (or None)")


ACTIVATIONS = ("gelu_pytorch_tanh", "gelu_new", "gelu")


def hf_config(
    cfg: ModelConfig, bos_id: int | None, eos_id: int | None, pad_id: int | None, *, activation: str = "gelu"
) -> GPT2Config:
    """The transformers GPT2Config for `cfg`. `activation` is "gelu" (exact erf GELU, nn.GELU(), as in nanoGPT)
    for models built here and for imported nanoGPT checkpoints; "gelu_new" is GPT-2's tanh approximation
    (written in Python ops: measured 126 ms vs 98 ms per tiny-preset fwd+bwd on this CPU) and
    "gelu_pytorch_tanh" the same approximation as one kernel, for checkpoints trained with it."""
    for name, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
        _check_token_id(name, value, cfg.vocab_size)
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}: allowed {', '.join(map(repr, ACTIVATIONS))}")
    return GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.n_ctx,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function=activation,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )


def build_model(
    cfg: ModelConfig, bos_id: int | None, eos_id: int | None, pad_id: int | None, *, activation: str = "gelu"
) -> GPT2LMHeadModel:
    """A freshly GPT-2-initialised model (N(0, 0.02), residual projections scaled by 1/sqrt(2*n_layer)) with
    SDPA attention and lm_head tied to wte. Token ids go into config and generation_config as given."""
    model = GPT2LMHeadModel(hf_config(cfg, bos_id, eos_id, pad_id, activation=activation))
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = bos_id, eos_id, pad_id
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise RuntimeError("lm_head is not tied to transformer.wte; check the transformers version")
    return model


def param_count(cfg: ModelConfig) -> dict[str, int]:
    """Analytic parameter count of build_model(cfg): total (tied wte/lm_head once), embedding (wte + wpe),
    non_embedding (everything else: blocks and final LayerNorm)."""
    d, L = cfg.n_embd, cfg.n_layer
    # Per block: ln_1 + ln_2 (2d each), c_attn (3d^2 + 3d), attn c_proj (d^2 + d), c_fc (4d^2 + 4d), mlp c_proj (4d^2 + d).
    per_block = 12 * d * d + 13 * d
    embedding = cfg.vocab_size * d + cfg.n_ctx * d
    non_embedding = L * per_block + 2 * d  # + ln_f
    return {"total": embedding + non_embedding, "embedding": embedding, "non_embedding": non_embedding}


def count_params(model_or_cfg: GPT2LMHeadModel | ModelConfig) -> dict[str, int]:
    """param_count for a ModelConfig; for a model, the real count (parameters() yields tied tensors once)."""
    if isinstance(model_or_cfg, ModelConfig):
        return param_count(model_or_cfg)
    model = model_or_cfg
    total = sum(p.numel() for p in model.parameters())
    tr = model.transformer
    embedding = tr.wte.weight.numel() + tr.wpe.weight.numel()
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def flops_per_token(cfg: ModelConfig) -> float:
    """Training FLOPs per token (forward + backward), as in PaLM appendix B and nanoGPT's estimate_mfu:
    6*N + 12*n_layer*n_embd*n_ctx. N excludes wpe (a lookup, no matmul) but keeps the tied wte, whose
    lm_head matmul costs 2*V*d per token forward -- the same N nanoGPT's get_num_params() returns."""
    n = param_count(cfg)["total"] - cfg.n_ctx * cfg.n_embd
    return float(6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.n_ctx)


def uses_sdpa(model: torch.nn.Module) -> bool:
    """True when the model's attention runs through torch.nn.functional.scaled_dot_product_attention."""
    return getattr(model.config, "_attn_implementation", None) == "sdpa"

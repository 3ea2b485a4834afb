"""Checkpoint I/O: importing nanoGPT / helloLondon `.pt` checkpoints into Hub-format GPT-2 folders, and the
small save/load helpers (safetensors only, atomic folder writes via engine/atomic.py, no remote code) the rest
of the engine uses.
"""
from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path
from typing import Iterable

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from engine import hugepages
from engine.atomic import atomic_dir  # also imported from here by export, publish, quantize, space
from engine.model import MIN_VOCAB_SIZE, ModelConfig, build_model

# nanoGPT keeps these as nn.Linear (weight is out x in); GPT-2's Conv1D stores in x out, so they transpose.
_LINEAR_SUFFIXES = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
# Wrappers that prefix parameter names: torch.compile (`_orig_mod.`, as in helloLondon's checkpoints, which
# save the compiled module) and DistributedDataParallel (`module.`).
_PREFIXES = ("_orig_mod.", "module.")
# Containers in which trainers nest the state dict ("model" is nanoGPT's and helloLondon's).
_STATE_KEYS = ("model", "state_dict", "model_state_dict")
# Files a tokenizer folder may hold. The tokenizer folder's own config.json is never copied: helloLondon's
# is a tokenizer summary, not a model config, and would clobber ours.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "chat_template.jinja",
)
EOS_TOKEN = "<|endoftext|>"
# nanoGPT's GPT-2 runs use the GPT-2 BPE (50,257 tokens, <|endoftext|> = 50256), padded to 50,304.
_GPT2_VOCABS, _GPT2_EOS = (50257, 50304), 50256
# nanoGPT's usual head size; a bare state dict does not record n_head, so it is assumed (helloLondon's
# slm 12 x 768 and regular 16 x 1024 both use 64).
_DEFAULT_HEAD_DIM = 64


class CheckpointError(ValueError):
    """A file that exists but cannot be imported (not a checkpoint, wrong shapes, unsupported layout)."""


def save_hf_model(model: PreTrainedModel, out_dir: str | Path, extra_files: Iterable[str | Path] = ()) -> Path:
    """Write config.json, generation_config.json and model.safetensors (plus copies of extra_files, e.g.
    tokenizer files) into out_dir atomically. Returns out_dir as a Path."""
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)  # transformers 5 writes safetensors only, tied lm_head stored once
        for f in extra_files:
            shutil.copy2(f, tmp / Path(f).name)
    return out


def load_hf_model(path: str | Path) -> PreTrainedModel:
    """Load a Hub-format folder saved by save_hf_model: safetensors only, no remote code, SDPA attention,
    eval mode, weights on huge pages (engine/hugepages.py: decoding streams them)."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"no model folder at {p} (config.json missing)")
    model = AutoModelForCausalLM.from_pretrained(
        p, trust_remote_code=False, use_safetensors=True, attn_implementation="sdpa"
    )
    hugepages.rehome(model)
    return model.eval()


def _torch_load(path: Path):
    try:  # memory-mapped: a 334M-parameter checkpoint plus optimizer state is ~4 GB
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (pre-zip) files cannot be memory-mapped; read them whole
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """(state dict with wrapper prefixes stripped, model_args or None)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: not loadable with torch.load(weights_only=True) -- either not a PyTorch checkpoint or it "
            f"pickles arbitrary objects, which are refused for safety ({str(e).splitlines()[0]})"
        ) from e
    except Exception as e:  # torch raises RuntimeError/EOFError/KeyError/... on non-checkpoint bytes
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint (top level is {type(obj).__name__}, expected a dict)")
    model_args = obj.get("model_args") if isinstance(obj.get("model_args"), dict) else None
    state = next((obj[k] for k in _STATE_KEYS if isinstance(obj.get(k), dict)), obj)
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    out = {}
    for k, v in state.items():
        while k.startswith(_PREFIXES):
            k = k[len(next(p for p in _PREFIXES if k.startswith(p))):]
        out[k] = v
    if "transformer.wte.weight" not in out or "transformer.wpe.weight" not in out:
        sample = ", ".join(sorted(out)[:5]) or "(no tensors)"
        raise CheckpointError(
            f"{path}: not a nanoGPT checkpoint: no 'transformer.wte.weight'/'transformer.wpe.weight' "
            f"(with or without '_orig_mod.'); top-level keys {sorted(map(str, obj))[:8]}, tensors: {sample}"
        )
    return out, model_args


def _model_args(state: dict[str, torch.Tensor], model_args: dict | None, n_head: int | None) -> dict:
    """n_layer/n_head/n_embd/block_size/vocab_size/bias/dropout: model_args where present, else inferred."""
    vocab, n_embd = state["transformer.wte.weight"].shape
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    args = dict(
        n_layer=max(layers) + 1 if layers else 0,
        n_embd=int(n_embd),
        block_size=int(state["transformer.wpe.weight"].shape[0]),
        vocab_size=int(vocab),
        bias="transformer.ln_f.bias" in state,
        dropout=0.0,
        n_head=None,
    )
    args.update({k: v for k, v in (model_args or {}).items() if k in args and v is not None})
    if n_head is not None:
        args["n_head"] = n_head
    if args["n_head"] is None:
        if args["n_embd"] % _DEFAULT_HEAD_DIM:
            raise CheckpointError(
                f"checkpoint has no model_args and n_embd={args['n_embd']} is not a multiple of "
                f"{_DEFAULT_HEAD_DIM}: pass n_head= explicitly"
            )
        args["n_head"] = args["n_embd"] // _DEFAULT_HEAD_DIM
    return args


def _convert(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], bias: bool) -> dict[str, torch.Tensor]:
    """Map nanoGPT tensors onto the GPT-2 model's state dict `target` (names and shapes), transposing
    Linear weights and filling zero biases for bias-free checkpoints."""
    wte = state["transformer.wte.weight"]
    head = state.get("lm_head.weight")
    if head is not None and head is not wte and not torch.equal(head, wte):
        raise CheckpointError("lm_head.weight differs from transformer.wte.weight: untied heads are not supported")
    used = {"lm_head.weight"}
    out = {}
    for name, ref in target.items():
        if name == "lm_head.weight":
            continue
        if name in state:
            t = state[name]
            used.add(name)
            if name.endswith(_LINEAR_SUFFIXES) and t.ndim == 2:
                t = t.t()
        elif name.endswith(".bias") and not bias:
            t = torch.zeros(ref.shape)
        else:
            raise CheckpointError(f"checkpoint lacks tensor {name!r} (expected shape {tuple(ref.shape)})")
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"shape mismatch for {name!r}: checkpoint has {tuple(t.shape)}, the model config needs "
                f"{tuple(ref.shape)} (after transposing nn.Linear weights)"
            )
        out[name] = t.to(torch.float32).contiguous()
    # nanoGPT's non-flash path saves its causal mask as a 4-D "attn.bias" buffer: not a weight.
    extra = sorted(k for k in state if k not in used and not (k.endswith(".attn.bias") and state[k].ndim == 4))
    if extra:
        raise CheckpointError(f"unexpected tensors in checkpoint (not nanoGPT/GPT-2 layout): {extra[:6]}")
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def _tokenizer_ids(tokenizer_dir: Path, vocab_size: int) -> tuple[tuple[int, int, int], list[Path]]:
    """((bos, eos, pad) ids, tokenizer files to copy). eos is <|endoftext|>; bos/pad fall back to eos."""
    if not tokenizer_dir.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {tokenizer_dir}")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    if len(tok) > vocab_size:
        raise CheckpointError(
            f"tokenizer at {tokenizer_dir} has {len(tok)} tokens but the checkpoint's vocab_size is {vocab_size}: "
            "ids past the embedding table would crash; this tokenizer does not belong to this checkpoint"
        )
    vocab = tok.get_vocab()
    eos = vocab.get(EOS_TOKEN, tok.eos_token_id)
    if eos is None:
        raise CheckpointError(f"tokenizer at {tokenizer_dir} has no {EOS_TOKEN!r} token and no eos_token")
    bos = tok.bos_token_id if tok.bos_token_id is not None else eos
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    files = [tokenizer_dir / f for f in TOKENIZER_FILES if (tokenizer_dir / f).is_file()]
    return (bos, eos, pad), files


def import_nanogpt(
    path: str | Path, out_dir: str | Path, tokenizer_dir: str | Path | None = None, *, n_head: int | None = None
) -> Path:
    """Convert a nanoGPT / helloLondon checkpoint (`{"model": state_dict, "model_args": {...}}` or a bare
    state dict, optionally `_orig_mod.`-prefixed) into a Hub-format GPT-2 folder at out_dir.

    The converted config uses activation "gelu" (exact GELU, nanoGPT's nn.GELU()), not GPT-2's "gelu_new".
    Token ids come from tokenizer_dir when given (its files are copied alongside); without one they are
    50256 for GPT-2-vocabulary checkpoints and otherwise left unset. n_head overrides model_args (a bare
    state dict does not record it; the default assumes 64-wide heads). Weights are saved as float32."""
    state, model_args = _load_state(Path(path))
    args = _model_args(state, model_args, n_head)
    if args["vocab_size"] < MIN_VOCAB_SIZE:
        raise CheckpointError(
            f"vocab_size={args['vocab_size']} < {MIN_VOCAB_SIZE}: character-level checkpoints are not supported"
        )
    try:
        cfg = ModelConfig(
            n_layer=args["n_layer"], n_head=args["n_head"], n_embd=args["n_embd"], n_ctx=args["block_size"],
            vocab_size=args["vocab_size"], dropout=float(args["dropout"]), preset="nanogpt-import",
        )
    except ValueError as e:
        raise CheckpointError(f"{path}: unusable model_args {args}: {e}") from e
    files: list[Path] = []
    if tokenizer_dir is not None:
        (bos, eos, pad), files = _tokenizer_ids(Path(tokenizer_dir), cfg.vocab_size)
    elif cfg.vocab_size in _GPT2_VOCABS:
        bos = eos = pad = _GPT2_EOS
    else:
        bos = eos = pad = None
    model = build_model(cfg, bos, eos, pad, activation="gelu")
    converted = _convert(state, model.state_dict(), bool(args["bias"]))
    model.load_state_dict(converted, strict=True)
    if model.lm_head.weight.data_ptr() != model.transformer.wte.weight.data_ptr():
        raise RuntimeError("lm_head came untied from wte while loading; refusing to save a broken model")
    return save_hf_model(model.eval(), out_dir, files)

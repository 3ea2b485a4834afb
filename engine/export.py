"""Exports of a Hub-format GPT-2 folder for other runtimes: GGUF for llama.cpp (written with the `gguf`
package) and a CTranslate2 model folder (CTranslate2's own TransformersConverter). Each export folder gets
export.json (format, source model, versions, caveats) so it can be published as its own repo.

GGUF layout: llama.cpp's "gpt2" architecture, the tensor names from gguf's own name map (token_embd,
position_embd, blk.N.attn_qkv, ...; Conv1D weights transposed to the out x in layout, as llama.cpp's
convert_hf_to_gguf.py does for GPT-2, the tied head written as output.weight), the byte-level BPE vocabulary
with its merges, <|endoftext|> as bos/eos/pad and every era token a CONTROL token, ids as in tokenizer.json.

Two differences llama.cpp cannot express, recorded in export.json:
- Pre-tokenization: Anno's split keeps apostrophes inside words ('tis, o'er; engine/tokenizer.PRETOKENIZE),
  llama.cpp's nearest built-in ("gpt-2") splits 's 't 're 've 'm 'll 'd off. Text without apostrophes
  tokenizes identically; text with them may tokenize differently (the ids the model was trained on are
  still all in the vocabulary).
- Activation: Anno models use exact (erf) GELU; llama.cpp's gpt2 graph uses the tanh approximation. The
  logits differ slightly (tests/test_export.py measures it); CTranslate2 supports exact GELU.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.checkpoint import TOKENIZER_FILES, atomic_dir
from engine.tokenizer import EOT, SPECIAL_TOKENS

FORMATS = ("gguf", "ct2")
GGUF_FILE = "model.gguf"
EXPORT_FILE = "export.json"
_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")
PRE_TOKENIZER_NOTE = ("llama.cpp pre-tokenizer 'gpt-2' splits 's 't 're 've 'm 'll 'd off words; Anno's keeps "
                      "apostrophes inside words, so text with apostrophes may tokenize differently")


class ExportError(ValueError):
    """A folder that cannot be exported (not an fp32 GPT-2 folder, unknown format or dtype)."""


@dataclass(frozen=True)
class ExportConfig:
    format: str
    dtype: str = "f32"  # gguf: f32 | f16; ct2: f32 | int8 (CTranslate2 weight quantization)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ExportError(f"format={self.format!r}: allowed {', '.join(FORMATS)}")
        allowed = {"gguf": ("f32", "f16"), "ct2": ("f32", "int8")}[self.format]
        if self.dtype not in allowed:
            raise ExportError(f"dtype={self.dtype!r} for {self.format}: allowed {', '.join(allowed)}")


def _source(model_dir: str | Path) -> tuple[Path, dict]:
    from engine.loading import resolve_model_path

    src = resolve_model_path(model_dir)
    if (src / "quantization.json").is_file():
        raise ExportError(f"{src} is a quantized folder: export its fp32 source")
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "gpt2":
        raise ExportError(f"{src}: model_type={config.get('model_type')!r}, only 'gpt2' models are exported")
    if not (src / "tokenizer.json").is_file():
        raise ExportError(f"{src}: no tokenizer.json to export the vocabulary from")
    return src, config


def _vocab(src: Path) -> tuple[list[str], list[str], dict[str, int]]:
    """(tokens by id, merges as 'a b', special token -> id) from tokenizer.json."""
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    ids = dict(tj["model"]["vocab"])
    special = {t["content"]: t["id"] for t in tj.get("added_tokens", [])}
    ids.update(special)
    if sorted(ids.values()) != list(range(len(ids))):
        raise ExportError(f"{src}/tokenizer.json: token ids are not 0..{len(ids) - 1} without gaps")
    tokens = [""] * len(ids)
    for tok, i in ids.items():
        tokens[i] = tok
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"].get("merges", [])]
    return tokens, merges, special


def export_gguf(model_dir: str | Path, out_dir: str | Path, dtype: str = "f32") -> Path:
    """Write out_dir/model.gguf (llama.cpp gpt2 architecture) and export.json; return the GGUF path."""
    import gguf
    from safetensors.numpy import load_file

    ExportConfig("gguf", dtype)
    src, config = _source(model_dir)
    tokens, merges, special = _vocab(src)
    if len(tokens) > config["vocab_size"]:
        raise ExportError(f"tokenizer has {len(tokens)} tokens but vocab_size={config['vocab_size']}")
    tokens += [f"[PAD{i}]" for i in range(len(tokens), config["vocab_size"])]  # rows past the tokenizer, if any
    state = {}
    for f in sorted(src.glob("*.safetensors")):
        state.update(load_file(f))
    n_layer, d = config["n_layer"], config["n_embd"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GPT2, n_layer)
    ftype, np_dtype = (gguf.LlamaFileType.ALL_F32, np.float32) if dtype == "f32" else \
        (gguf.LlamaFileType.MOSTLY_F16, np.float16)
    with atomic_dir(out_dir) as tmp:
        w = gguf.GGUFWriter(str(tmp / GGUF_FILE), "gpt2")
        w.add_name(src.parent.name if src.name == "model" else src.name)
        w.add_context_length(config["n_positions"])
        w.add_embedding_length(d)
        w.add_feed_forward_length(config.get("n_inner") or 4 * d)
        w.add_block_count(n_layer)
        w.add_head_count(config["n_head"])
        w.add_layer_norm_eps(config["layer_norm_epsilon"])
        w.add_file_type(ftype)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")  # the closest built-in; see PRE_TOKENIZER_NOTE
        w.add_token_list(tokens)
        w.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens])
        w.add_token_merges(merges)
        eot = special[EOT]
        w.add_bos_token_id(config.get("bos_token_id", eot))
        w.add_eos_token_id(config.get("eos_token_id", eot))
        w.add_pad_token_id(config.get("pad_token_id", eot))
        w.add_add_bos_token(False)  # Anno prompts start with an era token, never with <|endoftext|>
        for name, t in sorted(state.items()):
            if name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
                continue  # causal-mask buffers of old checkpoints, not weights
            if name.endswith(_CONV1D):
                t = t.T
            base, _, suffix = name.rpartition(".")
            gname = names.get_name(base)
            if gname is None:
                raise ExportError(f"tensor {name!r} has no GGUF name for the gpt2 architecture")
            # 1-D tensors (norms, biases) stay f32 as llama.cpp's converter keeps them
            arr = np.ascontiguousarray(t, dtype=np_dtype if t.ndim > 1 else np.float32)
            w.add_tensor(f"{gname}.{suffix}", arr)
            if base == "transformer.wte" and "lm_head.weight" not in state:
                w.add_tensor("output.weight", arr)  # tied head, written as llama.cpp's converter writes it
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        _write_export_json(tmp, src, "gguf", dtype, {"gguf": gguf.__version__ if hasattr(gguf, "__version__")
                                                     else _version("gguf")},
                           {"pre_tokenizer": PRE_TOKENIZER_NOTE, "activation": _activation_note(config, "gguf")})
    return Path(out_dir) / GGUF_FILE


def export_ct2(model_dir: str | Path, out_dir: str | Path, dtype: str = "f32") -> Path:
    """Write a CTranslate2 Generator folder (model.bin, config.json, vocabulary.json) and export.json."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    ExportConfig("ct2", dtype)
    src, config = _source(model_dir)
    with atomic_dir(out_dir) as tmp:
        conv = TransformersConverter(str(src), low_cpu_mem_usage=False, trust_remote_code=False)
        conv.convert(str(tmp / "ct2"), quantization=None if dtype == "f32" else "int8", force=True)
        for p in (tmp / "ct2").iterdir():
            os.replace(p, tmp / p.name)
        (tmp / "ct2").rmdir()
        # CTranslate2 4.8.5 refuses to load a config whose unk_token is null ("type must be string, but is
        # null"); a byte-level BPE has no unknown token, so <|endoftext|> fills the field, as GPT-2's own does.
        cfg_path = tmp / "config.json"
        ct2_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        ct2_cfg["unk_token"] = ct2_cfg.get("unk_token") or EOT
        cfg_path.write_text(json.dumps(ct2_cfg, indent=2), encoding="utf-8")
        for name in TOKENIZER_FILES:  # so AutoTokenizer opens the export folder as it is
            if (src / name).is_file():
                shutil.copyfile(src / name, tmp / name)
        _write_export_json(tmp, src, "ct2", dtype, {"ctranslate2": ctranslate2.__version__},
                           {"activation": _activation_note(config, "ct2")})
    return Path(out_dir)


def _activation_note(config: dict, fmt: str) -> str:
    act = config.get("activation_function")
    if fmt == "gguf" and act == "gelu":
        return "exact GELU in the source; llama.cpp's gpt2 graph computes the tanh approximation"
    return f"{act}, as in the source"


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


def _write_export_json(folder: Path, src: Path, fmt: str, dtype: str, versions: dict, notes: dict) -> None:
    from engine.tokenizer import ERA_TOKENS

    tokens, _, special = _vocab(src)
    info = {"format": fmt, "dtype": dtype, "source": src.parent.name if src.name == "model" else src.name,
            "source_path": str(src.resolve()),  # local: where publish finds the source's records (scrubbed there)
            "special_tokens": {t: special[t] for t in SPECIAL_TOKENS if t in special},
            "era_tokens_control": [t for t in ERA_TOKENS if t in special], "versions": versions, "notes": notes}
    (folder / EXPORT_FILE).write_text(json.dumps(info, indent=1), encoding="utf-8")


def export(model_dir: str | Path, fmt: str, out_dir: str | Path, dtype: str = "f32") -> Path:
    """The `cli.py export` action: dispatch on fmt ('gguf' | 'ct2')."""
    ExportConfig(fmt, dtype)
    return export_gguf(model_dir, out_dir, dtype) if fmt == "gguf" else export_ct2(model_dir, out_dir, dtype)

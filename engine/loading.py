"""Model loading for serving: resolve a run folder, a Hub-format folder or a Hub id (+ revision) to a local
folder, load model + tokenizer (safetensors only, trust_remote_code=False), and keep loaded models in one
process-wide LRU cache bounded by a memory budget.

A model is refused before it is loaded when its estimated size does not fit the memory budget (`check_fits`):
the estimate comes from config.json (the skeleton from_pretrained allocates first) and the safetensors headers
(what is then read), so a folder claiming a huge model never allocates anything. In the web app every local
folder named by a visitor must lie inside the app's allowed roots (engine/paths.py).

The only network access is engine/hub.py's download, used when the name is neither a folder nor in the
Hub cache already."""
from __future__ import annotations

import json
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from engine import paths
from engine.quantize import load_any
from engine.tokenizer import load_tokenizer

# Default budget: 4 GiB of weights, about two fp32 "regular" (334M) models or many small ones; override
# with ANNO_MODEL_CACHE_BYTES. A model bigger than the budget is still served, alone.
DEFAULT_BUDGET = int(os.environ.get("ANNO_MODEL_CACHE_BYTES", 4 << 30))
# The refusal budget (a different thing: what one model may need at all). ANNO_MAX_MODEL_BYTES sets it; else it
# is this share of the memory available when the load starts. Measured 2026-11-30 (12x768, 349 MiB of fp32
# weights, fresh process): load + one forward pass grew RSS by 1.09x the weights (safetensors are memory-mapped,
# so the load itself adds ~1x, not 2x); half keeps the other half for activations, the batched KV caches and
# the rest of the server.
MAX_MODEL_BYTES_ENV = "ANNO_MAX_MODEL_BYTES"
AVAILABLE_FRACTION = 0.5
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1}


class ModelTooLarge(ValueError):
    """A model whose estimated size exceeds the memory budget; the message names the model, its size and the
    budget."""


@dataclass(frozen=True)
class Loaded:
    name: str  # what the caller asked for
    path: Path  # the local Hub-format folder it resolved to
    model: torch.nn.Module
    tokenizer: object
    nbytes: int  # bytes of parameters and buffers, what the budget counts


def resolve_model_path(name: str | Path, revision: str | None = None) -> Path:
    """A local Hub-format folder for `name`: a run folder (its model/), a folder with config.json, or a Hub
    repo id fetched (or found in the Hub cache) through engine/hub.py."""
    p = Path(name)
    if p.exists() or str(name).startswith((".", "/", "~")):  # a local path, not a Hub id: confined in the app
        paths.check(p, "model")
    if p.is_dir():
        if (p / "run.json").exists() and (p / "model" / "config.json").exists():
            return p / "model"
        if (p / "config.json").exists():
            return p
        raise FileNotFoundError(f"{p} is a folder but neither a run folder (run.json + model/) nor a Hub-format "
                                f"model folder (config.json)")
    if p.exists() or str(name).startswith((".", "/", "~")) or str(name).count("/") != 1:
        raise FileNotFoundError(f"no model at {name!r}: give a run folder, a model folder or a Hub id like "
                                f"'user/anno-tiny'")
    from engine.hub import download_model
    return download_model(str(name), revision=revision)


def _safetensors_bytes(f: Path) -> int:
    """Tensor bytes a safetensors file holds, from its header alone (8-byte length + JSON; nothing is mapped)."""
    with open(f, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > 100 << 20:  # the format caps headers at 100 MB (safetensors' MAX_HEADER_SIZE)
            raise ValueError(f"{f}: safetensors header of {n:,} bytes is not plausible")
        header = json.loads(fh.read(n))
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")


def _config_bytes(cfg: dict) -> int:
    """GPT-2 parameter bytes implied by config.json: per block 4d^2+4d (attention) + 2d*inner+inner+d (MLP) +
    4d (two LayerNorms); wte, wpe and ln_f outside the blocks. 0 when the config is not GPT-2 shaped."""
    try:
        d, layers, vocab, ctx = (int(cfg[k]) for k in ("n_embd", "n_layer", "vocab_size", "n_positions"))
    except (KeyError, TypeError, ValueError):
        return 0
    inner = int(cfg.get("n_inner") or 4 * d)
    block = 4 * d * d + 4 * d + 2 * d * inner + inner + d + 4 * d
    params = vocab * d + ctx * d + layers * block + 2 * d
    return params * DTYPE_BYTES.get(str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32"), 4)


def estimate_bytes(path: str | Path) -> int:
    """Memory one model folder needs once loaded, without loading it: the larger of what config.json implies
    (the skeleton is allocated from it first) and the tensor bytes its safetensors files hold."""
    p = Path(path)
    try:
        cfg = json.loads((p / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    stored = sum(_safetensors_bytes(f) for f in sorted(p.glob("*.safetensors")))
    return max(_config_bytes(cfg if isinstance(cfg, dict) else {}), stored)


def memory_budget() -> int:
    """Bytes one model may need: $ANNO_MAX_MODEL_BYTES, else AVAILABLE_FRACTION of the available memory."""
    env = os.environ.get(MAX_MODEL_BYTES_ENV, "").strip()
    if env:
        try:
            value = int(float(env))
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{MAX_MODEL_BYTES_ENV}={env!r}: must be a positive number of bytes")
        return value
    import psutil

    return int(psutil.virtual_memory().available * AVAILABLE_FRACTION)


def check_fits(path: str | Path, name: str | None = None, budget: int | None = None) -> int:
    """The model's estimated bytes; ModelTooLarge (naming the model, its size and the budget) when over."""
    need, budget = estimate_bytes(path), memory_budget() if budget is None else budget
    if need > budget:
        how = f"${MAX_MODEL_BYTES_ENV}" if os.environ.get(MAX_MODEL_BYTES_ENV, "").strip() else \
            f"{AVAILABLE_FRACTION:.0%} of the memory available now"
        raise ModelTooLarge(f"model={str(name or path)!r} needs about {need / 2**30:.2f} GiB ({need:,} bytes) "
                            f"once loaded; the memory budget is {budget / 2**30:.2f} GiB ({how}): pick a smaller "
                            f"or quantized model, or free memory")
    return need


def _nbytes(model: torch.nn.Module) -> int:
    """Weight bytes, int8 packed weights included (they are not parameters)."""
    from engine.quantize import weight_bytes
    return weight_bytes(model)


class ModelCache:
    """LRU of loaded models bounded by `budget` bytes. Thread-safe; a model is loaded once even when
    several requests ask for it at the same time."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        if budget < 1:
            raise ValueError(f"budget={budget} must be >= 1 byte")
        self.budget = budget
        self._items: OrderedDict[tuple, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str | Path, revision: str | None = None, loader=None) -> Loaded:
        path = resolve_model_path(name, revision)
        key = (str(path.resolve()), revision, getattr(loader, "__name__", None))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            check_fits(path, name)  # before anything is allocated
            model = (loader or load_any)(path)  # fp32 or quantized (quantization.json)
            item = Loaded(str(name), path, model, load_tokenizer(path), _nbytes(model))
            self._items[key] = item
            while len(self._items) > 1 and sum(i.nbytes for i in self._items.values()) > self.budget:
                self._items.popitem(last=False)  # least recently used goes first
            return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes for i in self._items.values())


MODELS = ModelCache()


def load(name: str | Path, revision: str | None = None) -> Loaded:
    """The process-wide cache's entry point: what CLI, UI and API call."""
    return MODELS.get(name, revision)

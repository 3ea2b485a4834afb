"""Model loading for serving: resolve a run folder, a Hub-format folder or a Hub id (+ revision) to a local
folder, load model + tokenizer (safetensors only, trust_remote_code=False), and keep loaded models in one
process-wide LRU cache bounded by a memory budget.

The only network access is engine/hub.py's download, used when the name is neither a folder nor in the
Hub cache already."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.quantize import load_any
from engine.tokenizer import load_tokenizer

# Default budget: 4 GiB of weights, about two fp32 "regular" (334M) models or many small ones; override
# with ANNO_MODEL_CACHE_BYTES. A model bigger than the budget is still served, alone.
DEFAULT_BUDGET = int(os.environ.get("ANNO_MODEL_CACHE_BYTES", 4 << 30))


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

"""Serving for many users: one shared `Batcher` per loaded model (and precision), the request checks that the
web app and its API apply to every generation, the model list and the one-line model card, and the
multi-year comparison that streams several columns through one batcher at once.

Why one batcher per model: concurrent users are then decoded in one batch (engine/batching.py measured 4
streams at 1.8-3.7x the tokens/s of one), and a request's text is what it would be alone. The batcher is
created on first use and closed when its model leaves the process-wide LRU (engine/loading.py), so an evicted
model's memory is really freed.

Everything here is plain Python: the app (ui/, app.py) and cli.py call these functions; no gradio."""
from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.generate import MIN_TEMPERATURE, Finished, GenerationConfig, StreamEvent, TextDelta
from engine.loading import MODELS, Loaded, resolve_model_path

PRECISIONS = ("fp32", "int8-cpu", "bnb-int8", "bnb-nf4")
# Era tokens exist for the decades 1500s-1850s (engine/tokenizer.py); another year would silently fall back
# to <|unknown-era|>, which a user asking for "3000" should hear about instead.
YEAR_RANGE = (1500, 1859)
LOCK_RANGE = (1500, 2100)  # the lexicon dates terms up to the present; a lock after 2100 bans nothing
# A prompt is cut from the left to fit the context anyway; beyond this many characters it is almost surely a
# paste by mistake (20k chars ~ 5k tokens, 20x the tiny model's context), so it is refused with a message.
MAX_PROMPT_CHARS = 20_000
MAX_COMPARE_YEARS = 4
def threads_arg(value: str) -> int:
    """argparse type of `--threads` (app.py, cli.py compile-step): an integer in [1, this machine's cores]."""
    import argparse
    import os

    n_cpu = os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= n_cpu:
        raise argparse.ArgumentTypeError(f"{value!r}: must be an integer in [1, {n_cpu}] (this machine's cores)")
    return n


MAX_BATCH = 8  # rows decoded together; more users queue in the batcher (measured knee: engine/batching.py)


class RequestError(ValueError):
    """A bad request field: the message names the field and the allowed range."""


def parse_int(name: str, v, lo: int, hi: int, optional: bool = False) -> int | None:
    """An integer field as forms and API clients send it (int, integral float, numeric string), checked against
    [lo, hi]; RequestError names the field and the range. Shared with evals/judge.py."""
    if v is None or (isinstance(v, str) and not v.strip()):
        if optional:
            return None
        raise RequestError(f"{name} is required: an integer in [{lo}, {hi}]")
    if isinstance(v, bool):
        raise RequestError(f"{name}={v!r}: must be an integer in [{lo}, {hi}]")
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise RequestError(f"{name}={v!r}: must be an integer in [{lo}, {hi}]") from None
    if isinstance(v, float):
        if not v.is_integer():
            raise RequestError(f"{name}={v!r}: must be an integer in [{lo}, {hi}]")
        v = int(v)
    if not isinstance(v, int) or not lo <= v <= hi:
        raise RequestError(f"{name}={v!r}: must be an integer in [{lo}, {hi}]")
    return v


def _float(name: str, v, lo: float, hi: float, what: str) -> float:
    try:
        f = float(v) if not isinstance(v, bool) else float("nan")
    except (TypeError, ValueError):
        raise RequestError(f"{name}={v!r}: must be a number in {what}") from None
    if not lo <= f <= hi:  # NaN fails both comparisons
        raise RequestError(f"{name}={v!r}: must be a number in {what}")
    return f


def check_prompt(prompt) -> str:
    if not isinstance(prompt, str):
        raise RequestError(f"prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise RequestError("prompt is empty: write the opening words for the model to continue")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RequestError(f"prompt is {len(prompt):,} characters: the limit is {MAX_PROMPT_CHARS:,} "
                           "(the model only reads its last few hundred tokens anyway)")
    return prompt


def request_config(prompt, year, lock_year=None, max_new_tokens=200, temperature=0.8, top_k=50, top_p=0.95,
                   seed=None, context: int | None = None) -> tuple[str, GenerationConfig]:
    """Check one generation request as it arrives from a form or an API client (numbers may come as
    strings or floats) and build its GenerationConfig. Raises RequestError naming the field and its range."""
    prompt = check_prompt(prompt)
    year = parse_int("year", year, *YEAR_RANGE)
    lock_year = parse_int("lock_year", lock_year, *LOCK_RANGE, optional=True)
    hi = context or 4096
    max_new_tokens = parse_int("max_new_tokens", max_new_tokens, 1, hi)
    temperature = _float("temperature", temperature, 0.0, 5.0, f"[{MIN_TEMPERATURE}, 5], or 0 (greedy)")
    if 0 < temperature < MIN_TEMPERATURE:  # logits / temperature would overflow (engine/generate.py)
        raise RequestError(f"temperature={temperature!r}: must be a number in [{MIN_TEMPERATURE}, 5], or 0 (greedy)")
    top_k = parse_int("top_k", top_k, 0, 100_000)
    top_p = _float("top_p", top_p, 1e-6, 1.0, "(0, 1] (1 = off)")
    seed = parse_int("seed", seed, 0, 2**63 - 1, optional=True)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                           seed=seed, year=year, lock_year=lock_year)
    return prompt, cfg


# ---------------------------------------------------------------------------------------------- models

def _loader(precision: str):
    """The ModelCache loader for a precision (None = the folder as saved: fp32 or its quantization.json)."""
    if precision == "fp32":
        return None
    if precision == "int8-cpu":
        from engine.quantize import int8_cpu, load_any

        def int8(path):
            from engine.quantize import QUANT_FILE
            model = load_any(path)
            return model if (Path(path) / QUANT_FILE).is_file() else int8_cpu(model)
        int8.__name__ = "int8"
        return int8
    from engine.quantize import _load_bnb

    def bnb(path):
        return _load_bnb(Path(path), precision)
    bnb.__name__ = precision
    return bnb


def check_precision(precision) -> str:
    if precision not in PRECISIONS:
        raise RequestError(f"precision={precision!r}: must be one of {', '.join(PRECISIONS)}")
    if precision.startswith("bnb"):
        from engine.quantize import bnb_status
        if reason := bnb_status():
            raise RequestError(f"precision={precision!r} is not available here: {reason}")
    return precision


def available_precisions() -> list[str]:
    """bitsandbytes only with CUDA (its GPU kernels are the point); on CPU the quantized path is int8-cpu."""
    import torch

    from engine.quantize import bnb_status
    cuda = torch.cuda.is_available()
    return [p for p in PRECISIONS if not p.startswith("bnb") or (cuda and bnb_status() is None)]


def load_model(name, precision: str = "fp32") -> Loaded:
    """Load (or reuse) a model by run folder, model folder or Hub id; errors name the field."""
    if not isinstance(name, str) or not name.strip():
        raise RequestError("model is required: a run folder, a model folder or a Hub id like 'user/anno-tiny'")
    check_precision(precision)
    from engine.hub import HubError

    try:
        return MODELS.get(name.strip(), loader=_loader(precision))
    except (FileNotFoundError, HubError) as e:  # a typo'd folder, or a Hub id that cannot be fetched
        raise RequestError(f"model={name!r}: {e}") from None


_BATCHERS: dict[tuple, object] = {}
_BATCHERS_LOCK = threading.Lock()


def batcher_for(loaded: Loaded):
    """The shared Batcher of a loaded model; batchers of models the cache has evicted are closed."""
    from engine.batching import Batcher

    key = (id(loaded.model),)
    live = {id(i.model) for i in MODELS._items.values()}
    with _BATCHERS_LOCK:
        for k in [k for k in _BATCHERS if k[0] not in live and k != key]:
            _BATCHERS.pop(k).close(timeout=5)
        b = _BATCHERS.get(key)
        if b is None:
            b = _BATCHERS[key] = Batcher(loaded.model, loaded.tokenizer, max_batch=MAX_BATCH)
        return b


def close_batchers() -> None:
    with _BATCHERS_LOCK:
        for b in _BATCHERS.values():
            b.close(timeout=5)
        _BATCHERS.clear()


def generate(loaded: Loaded, prompt: str, cfg: GenerationConfig, stop_event=None, batched: bool = True
             ) -> Iterator[StreamEvent]:
    """`engine.generate.stream`'s events, decoded in the model's shared batch (batched=False decodes alone,
    as on ZeroGPU where each call runs in its own GPU worker). Closing the iterator cancels the request."""
    if batched:
        return batcher_for(loaded).submit(prompt, cfg, stop_event)
    from engine.generate import stream
    return stream(loaded.model, loaded.tokenizer, prompt, cfg, stop_event)


@dataclass(frozen=True)
class Column:
    """One column of a comparison: its text so far and, once done, its Finished event."""

    year: int
    lock_year: int | None
    text: str = ""
    finished: Finished | None = None


def compare(loaded: Loaded, prompt: str, years: Sequence, locks, seed, max_new_tokens, temperature: float = 0.8,
            top_k: int = 50, top_p: float = 0.95, stop_event=None, batched: bool = True) -> Iterator[list[Column]]:
    """One prompt and seed, 2-4 years decoded at once (one batch); yields the list of columns every time a
    column's text grows, the last yield with every column finished. locks: one bool for all columns or one
    per column (a locked column's lock year is its own year)."""
    if not isinstance(years, (list, tuple)) or not 2 <= len(years) <= MAX_COMPARE_YEARS:
        raise RequestError(f"years={years!r}: give 2 to {MAX_COMPARE_YEARS} years in [{YEAR_RANGE[0]}, "
                           f"{YEAR_RANGE[1]}]")
    years = [parse_int(f"years[{i}]", y, *YEAR_RANGE) for i, y in enumerate(years)]
    if isinstance(locks, (bool, type(None))):
        locks = [bool(locks)] * len(years)
    if not isinstance(locks, (list, tuple)) or len(locks) != len(years) or \
            not all(isinstance(x, bool) for x in locks):
        raise RequestError(f"lock={locks!r}: true/false for all columns, or a list of {len(years)} true/false")
    seed = 0 if seed is None or seed == "" else seed
    cfgs = [request_config(prompt, y, y if lk else None, max_new_tokens, temperature, top_k, top_p, seed,
                           context=_context(loaded))[1] for y, lk in zip(years, locks)]
    stop_event = stop_event or threading.Event()
    streams = [generate(loaded, prompt, c, stop_event, batched) for c in cfgs]
    cols = [Column(y, c.lock_year) for y, c in zip(years, cfgs)]
    if not batched:  # one after another, still yielding as each grows
        try:
            for i, s in enumerate(streams):
                for ev in s:
                    cols[i] = _advance(cols[i], ev)
                    yield list(cols)
        finally:
            for s in streams:
                s.close()
        return
    events: queue.Queue = queue.Queue()

    def pump(i: int, s) -> None:
        try:
            for ev in s:
                events.put((i, ev))
        except BaseException as e:  # delivered to the consumer, which re-raises it
            events.put((i, e))
        finally:
            events.put((i, None))

    threads = [threading.Thread(target=pump, args=(i, s), daemon=True) for i, s in enumerate(streams)]
    for t in threads:
        t.start()
    try:
        live = len(streams)
        while live:
            i, ev = events.get()
            if ev is None:
                live -= 1
                continue
            if isinstance(ev, BaseException):
                raise ev
            cols[i] = _advance(cols[i], ev)
            yield list(cols)
    finally:
        # A closed comparison cancels every column still running: the shared stop event reaches each row in
        # the batcher before its next step, and each pump thread then ends on its stream's last event (a
        # stream cannot be closed from here while its pump thread is inside it).
        stop_event.set()


def _advance(col: Column, ev: StreamEvent) -> Column:
    if isinstance(ev, TextDelta):
        return Column(col.year, col.lock_year, col.text + ev.text)
    return Column(col.year, col.lock_year, ev.text, ev)


def _context(loaded: Loaded) -> int:
    from engine.generate import model_context
    return model_context(loaded.model)


# ---------------------------------------------------------------------------------------------- listing

def model_kind(path: Path) -> str | None:
    """"run", "quantized", "model" (a Hub-format folder) or None."""
    if (path / "run.json").is_file() and (path / "model" / "config.json").is_file():
        return "run"
    if (path / "config.json").is_file():
        return "quantized" if (path / "quantization.json").is_file() else "model"
    return None


def find_models(roots: Sequence[str | Path]) -> list[dict]:
    """Every run, model and quantized folder at or up to two levels below each root (checkpoints and a run's
    own model/ excluded: the run stands for it), sorted; each {"name", "kind"} (not "path": gradio_client takes any dict with a "path" for a file)."""
    seen, out = set(), []

    def add(p: Path) -> None:
        kind = model_kind(p)
        key = str(p.resolve())
        if kind and key not in seen:
            seen.add(key)
            out.append({"name": str(p), "kind": kind})

    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        add(root)
        if model_kind(root) == "run":
            continue
        for child in sorted(root.iterdir()):
            if not child.is_dir() or child.name in ("checkpoints", "model"):
                continue
            add(child)
            if model_kind(child) is None:
                for grand in sorted(child.iterdir()) if child.is_dir() else ():
                    if grand.is_dir() and grand.name not in ("checkpoints",):
                        add(grand)
    return sorted(out, key=lambda m: m["name"])


def model_info(name: str) -> dict:
    """The figures the model card line shows, read from the folder (run.json when there is one); never loads
    the model. Keys: folder, kind, preset, params, vocab, n_layer, n_embd, n_ctx, corpus_words, val_bpb,
    quantization."""
    path = resolve_model_path(name)
    run = path.parent if (path.parent / "run.json").is_file() else None
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    info = {"folder": str(path), "kind": model_kind(run or path), "preset": None, "params": None,
            "vocab": cfg.get("vocab_size"), "n_layer": cfg.get("n_layer"), "n_embd": cfg.get("n_embd"),
            "n_ctx": cfg.get("n_positions"), "corpus_words": None, "val_bpb": None, "quantization": None}
    if run is not None:
        r = json.loads((run / "run.json").read_text(encoding="utf-8"))
        info["preset"] = r.get("config", {}).get("preset")
        info["params"] = (r.get("params") or {}).get("total")
        info["val_bpb"] = (r.get("final_eval") or {}).get("val_bpb")
        corpus = Path((r.get("corpus") or {}).get("dir") or "")
        try:
            rep = json.loads((corpus / "report.json").read_text(encoding="utf-8"))
            info["corpus_words"] = rep.get("totals", {}).get("words")
        except (OSError, ValueError):
            pass
    q = path / "quantization.json"
    if q.is_file():
        info["quantization"] = json.loads(q.read_text(encoding="utf-8")).get("method")
    return info


def context_of(name) -> int | None:
    """The model's context length from its config (no loading); None when it cannot be read."""
    try:
        return int(model_info(name)["n_ctx"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def card_line(info: dict) -> str:
    """One line for the model picker: what the model is and how good, from its own records."""
    parts = [info.get("preset") or info.get("kind") or "model"]
    if info.get("n_layer"):
        parts.append(f"{info['n_layer']}x{info['n_embd']}")
    if info.get("params"):
        parts.append(f"{info['params'] / 1e6:.1f}M parameters")
    if info.get("vocab"):
        parts.append(f"vocabulary {info['vocab']:,}")
    if info.get("n_ctx"):
        parts.append(f"context {info['n_ctx']}")
    if info.get("corpus_words"):
        parts.append(f"trained on {info['corpus_words'] / 1e6:.1f}M corpus words")
    if info.get("val_bpb") is not None:
        parts.append(f"validation {info['val_bpb']:.3f} bits/byte")
    if info.get("quantization"):
        parts.append(f"quantized {info['quantization']}")
    return " · ".join(parts)

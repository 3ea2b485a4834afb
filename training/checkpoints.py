"""Run-folder bookkeeping: resumable checkpoints (accelerate state written to a temp dir, then renamed),
rotation (keep the last K plus the best), metrics.jsonl, run.json and the Hub-format model export.

Layout of a run folder:
  run.json                 config, model shape, corpus/tokenizer hashes, code version, status, metrics
  metrics.jsonl            one JSON line per train log / eval, truncated back to the checkpoint on resume
  checkpoints/step_NNNNNNN/ accelerate save_state (model.safetensors, optimizer.bin, scheduler.bin,
                           random_states_R.pkl) + trainer_state.json {step, tokens, val_loss}
  model/                   Hub-format folder: config.json, generation_config.json, model.safetensors, tokenizer
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from engine.checkpoint import save_hf_model

STEP_DIR = re.compile(r"^step_(\d{7})$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "anno_tokenizer.json")


class TrainingError(Exception):
    """Training cannot go on; the message says what happened and what was kept."""


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def checkpoint_dirs(run: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with trainer_state.json), oldest first."""
    root = run / "checkpoints"
    found = []
    for p in root.iterdir() if root.exists() else []:
        m = STEP_DIR.match(p.name)
        if m and (p / "trainer_state.json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run: Path) -> Path | None:
    dirs = checkpoint_dirs(run)
    return dirs[-1][1] if dirs else None


def save_checkpoint(accelerator, run: Path, state: dict, keep_last: int) -> Path:
    """accelerate save_state into a temp dir, then one rename; a failure leaves earlier checkpoints as they
    were. Every process writes its RNG file; the main process renames and rotates."""
    root = run / "checkpoints"
    final = root / f"step_{state['step']:07d}"
    tmp = root / f".tmp-step_{state['step']:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            write_json_atomic(tmp / "trainer_state.json", state)
            if final.exists():  # a step re-reached after resuming from an earlier checkpoint
                shutil.rmtree(final)
            os.replace(tmp, final)
            _rotate(run, keep_last)
    except BaseException as e:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint(run)
        full = isinstance(e, OSError) and e.errno == errno.ENOSPC
        raise TrainingError(f"writing the checkpoint for step {state['step']} failed ({type(e).__name__}: {e}); "
                            + ("the disk is full: free some space, then resume; " if full else "")
                            + f"the last good checkpoint is {last or 'none'}") from e
    accelerator.wait_for_everyone()
    return final


def _rotate(run: Path, keep_last: int) -> None:
    dirs = checkpoint_dirs(run)
    scored = [(json.loads((p / "trainer_state.json").read_text()).get("val_loss"), step) for step, p in dirs]
    scored = [(v, s) for v, s in scored if v is not None]
    best = min(scored)[1] if scored else None
    keep = {s for s, _ in dirs[-keep_last:]} | ({best} if best is not None else set())
    for step, p in dirs:
        if step not in keep:
            shutil.rmtree(p, ignore_errors=True)


def clean_partial_checkpoints(run: Path) -> None:
    for p in (run / "checkpoints").glob(".tmp-step_*"):
        shutil.rmtree(p, ignore_errors=True)


def append_metrics(run: Path, record: dict) -> None:
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(run: Path, step: int) -> None:
    """Drop metric lines logged after `step` (work lost with the process that was killed)."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    tmp = path.with_name(f".metrics.jsonl.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(run: str | Path) -> list[dict]:
    path = Path(run) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def code_version() -> str:
    """git commit of the code that trained (with '+dirty' for uncommitted changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("+dirty" if dirty else "")) if rev else "unknown"


def export_model(model, tokenizer_dir: str | Path, out: Path) -> Path:
    """Hub-format folder: weights (safetensors), config/generation config (ids from the tokenizer, set at
    build time), and the tokenizer files, so AutoModelForCausalLM/AutoTokenizer open it as is."""
    extra = [Path(tokenizer_dir) / f for f in TOKENIZER_FILES if (Path(tokenizer_dir) / f).exists()]
    return save_hf_model(model, out, extra_files=extra)

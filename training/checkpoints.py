"""Run-folder bookkeeping: resumable checkpoints (accelerate state written to a temp dir, then renamed, valid
only with a verified completion marker), rotation (keep the last K plus the best), metrics.jsonl, run.json and
the Hub-format model export.

Layout of a run folder:
  run.json                 config, model shape, corpus/tokenizer hashes, code version, status, metrics
  metrics.jsonl            one JSON line per train log / eval, truncated back to the checkpoint on resume
  checkpoints/step_NNNNNNN/ accelerate save_state (model.safetensors, optimizer.bin, scheduler.bin,
                           random_states_R.pkl) + trainer_state.json {step, tokens, val_loss}
                           + complete.json, written last: every other file's size and sha256
  model/                   Hub-format folder: config.json, generation_config.json, model.safetensors, tokenizer

A checkpoint counts only when its complete.json is there and matches its files. A kill, a full disk or a power
cut during a write leaves a `.tmp-step_*` folder, or a step folder (a re-reached step being replaced, a
rotation cut short, a torn file) whose marker is missing or does not match: resuming names it, skips it and
takes the previous valid checkpoint. `latest_checkpoint` checks markers and file sizes only (cheap: job status
calls it); `verified_checkpoint`, which the training loop uses before loading, also checks every sha256.

The hashes are also what keeps pickles out: accelerate's random_states_R.pkl files are pickles. accelerate
1.15.0 loads them with torch.load(weights_only=True) plus an allowlist (numpy _reconstruct/ndarray/dtype,
codecs.encode: TORCH_SAFE_GLOBALS in accelerate/utils/other.py), a restricted unpickler; on top of that Anno
resumes only from a checkpoint whose every file (listed, none extra) has the size and sha256 Anno recorded when
it wrote it, so the RNG pickles it loads are the ones save_checkpoint wrote. complete.json is a checksum, not a
signature: whoever can rewrite every file of a run folder can rewrite it too; resume reads only run folders the
user names.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from engine.atomic import file_sha256, write_json_atomic  # loop.py calls C.write_json_atomic
from engine.checkpoint import save_hf_model

STEP_DIR = re.compile(r"^step_(\d{7})$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "anno_tokenizer.json")


class TrainingError(Exception):
    """Training cannot go on; the message says what happened and what was kept."""


MARKER = "complete.json"
MARKER_FORMAT = 1


def _files(folder: Path) -> dict[str, Path]:
    """Every regular file under folder but the marker, by its path relative to folder."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def write_marker(folder: Path, step: int) -> None:
    """Write complete.json, the completion marker, after every other file of the checkpoint."""
    files = {name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for name, p in _files(folder).items()}
    write_json_atomic(folder / MARKER, {"format": MARKER_FORMAT, "step": step, "files": files})


def checkpoint_problem(folder: Path, hashes: bool = True) -> str | None:
    """Why folder is not a valid checkpoint, or None when it is: complete.json is missing or unreadable, a file
    it lists is missing or has another size (with hashes: another sha256), or a file is there that it does not
    list."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return (f"no {MARKER}: its write did not finish (checkpoints written before 2026-11-30 have no marker "
                "either and are not resumed: their files cannot be checked)")
    except (OSError, ValueError) as e:
        return f"{MARKER} is unreadable ({type(e).__name__})"
    listed = marker.get("files") if isinstance(marker, dict) and marker.get("format") == MARKER_FORMAT else None
    if not isinstance(listed, dict) or not all(isinstance(w, dict) and {"bytes", "sha256"} <= set(w)
                                               for w in listed.values()):
        return f"{MARKER} is not a format-{MARKER_FORMAT} marker"
    present = _files(folder)
    extra = sorted(set(present) - set(listed))
    if extra:
        return f"{extra[0]} is not listed in {MARKER}"
    for name, want in sorted(listed.items()):
        if name not in present:
            return f"{name} is missing"
        size = present[name].stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, {MARKER} says {want['bytes']} (truncated or rewritten)"
        if hashes and file_sha256(present[name]) != want["sha256"]:
            return f"{name} does not match its sha256 in {MARKER} (corrupted)"
    return None


def _step_dirs(run: Path) -> list[tuple[int, Path]]:
    root = run / "checkpoints"
    found = [(int(m.group(1)), p) for p in (root.iterdir() if root.exists() else [])
             if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return sorted(found)


def checkpoint_dirs(run: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (marker present, listed files there with their sizes), oldest first."""
    return [(step, p) for step, p in _step_dirs(run) if checkpoint_problem(p, hashes=False) is None]


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint (sizes checked, not hashes: cheap enough for status pages)."""
    dirs = checkpoint_dirs(run)
    return dirs[-1][1] if dirs else None


def verified_checkpoint(run: Path, log=print) -> Path | None:
    """The newest checkpoint whose marker verifies in full (every file's size and sha256): what resume loads.
    Each newer one that does not is named in the log with the reason, and skipped."""
    for _, p in reversed(_step_dirs(run)):
        problem = checkpoint_problem(p)
        if problem is None:
            return p
        log(f"checkpoint {p} is not valid ({problem}): skipped, trying the one before it")
    return None


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
            write_marker(tmp, state["step"])  # last: until it is there, the folder is not a checkpoint
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


def clean_partial_checkpoints(run: Path, resumed: Path | None = None, log=print) -> None:
    """Before resuming from `resumed` (main process only): delete unfinished `.tmp-step_*` folders and move
    every step folder that is not complete, or is newer than `resumed` (verified_checkpoint skipped it), aside
    to `.invalid-step_*`, so that rotation never keeps it in place of a valid one; it stays there for a look."""
    root = run / "checkpoints"
    for p in root.glob(".tmp-step_*"):
        shutil.rmtree(p, ignore_errors=True)
    complete = {p for _, p in checkpoint_dirs(run)}
    newest = int(STEP_DIR.match(resumed.name).group(1)) if resumed is not None else None
    for step, p in _step_dirs(run):
        if p not in complete or (newest is not None and step > newest):
            aside = root / f".invalid-{p.name}"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(p, aside)
            log(f"moved the invalid checkpoint {p.name} aside to {aside}")


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

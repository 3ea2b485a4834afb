"""Crash harness for training (issue 17): SIGKILL a tiny training run with dropout on at seeded random points,
at least one of them while a checkpoint is being written, resume after every kill, and compare the final
weights with an uninterrupted run trained the same way. Bit-identical on CPU is the pass mark.

    from tests.reliability.crash_harness import run_crash_harness
    r = run_crash_harness("/tmp/crash", kills=5, seed=0)   # corpus and tokenizer built in workdir if not given
    r["kills_survived"], r["identical"]

Dropout is on so that restoring the RNG state matters: resumed without it, dropout masks differ from the
uninterrupted run's (`control=True` checks that by resuming once with torch.set_rng_state disabled; the
weights must then differ). Every run is a subprocess with the same environment and intra-op thread count:
float sums differ across thread counts, and an in-process reference differed from a subprocess in the last
bits in CI (tests/test_jobs.py). `via="job"` runs the same plan through the job system (training/jobs.py
start / SIGKILL of the job's pid / resume) instead of bare processes.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
if {no_rng_restore!r}:  # the control: resume without restoring the torch RNG state
    import torch
    torch.set_rng_state = lambda state: None
from training.checkpoints import latest_checkpoint
from training.loop import train
from training.train_config import TrainConfig
cfg = TrainConfig(**json.loads(sys.argv[1]))
log = lambda m: print(m, flush=True)
train(resume=cfg.out, log=log) if latest_checkpoint(Path(cfg.out)) is not None else train(cfg, log=log)
"""


def tiny_config(corpus: str | Path, tokenizer: str | Path, out: str | Path, **kw) -> dict:
    """The harness's training arguments: the tiny preset at 32 tokens of context, dropout 0.1, a checkpoint every
    4 steps (a few seconds per segment on 2 CPU cores)."""
    out = Path(out)
    return dict(preset="tiny", corpus=str(corpus), tokenizer=str(tokenizer), out=str(out),
                tokens_cache=str(out.parent / "tokens"), n_ctx=32, batch_size=4, max_steps=40, eval_every=20,
                eval_tokens=512, log_every=1, checkpoint_every=4, keep_last=2, lr=3e-3, dropout=0.1) | kw


def plan_kills(kills: int, max_steps: int, checkpoint_every: int, seed: int) -> list[dict]:
    """`kills` distinct kill points, sorted: one "checkpoint" kill (while the checkpoint of a seeded checkpoint
    step is being written, after a seeded number of its files exist) and the rest "step" kills (as soon as the
    child logs a seeded step). All before max_steps, so that every one is reached."""
    rng = random.Random(seed)
    ckpt_steps = list(range(checkpoint_every, max_steps, checkpoint_every))
    if kills < 1 or not ckpt_steps or kills > max_steps - 2:
        raise ValueError(f"kills={kills} must be in 1..{max_steps - 2} (max_steps={max_steps}) with a checkpoint "
                         f"before the last step (checkpoint_every={checkpoint_every})")
    c = rng.choice(ckpt_steps)
    steps = sorted(rng.sample([s for s in range(2, max_steps) if s != c], kills - 1))
    plan = [{"kind": "step", "step": s} for s in steps] + [{"kind": "checkpoint", "step": c,
                                                           "after_files": rng.randint(1, 3)}]
    return sorted(plan, key=lambda k: (k["step"], k["kind"] == "checkpoint"))


def _partials(run: Path) -> set:
    found = set()
    for tmp in (run / "checkpoints").glob(".tmp-step_*"):
        try:
            found.add((tmp.name, tmp.stat().st_mtime_ns))
        except FileNotFoundError:
            continue
    return found


def _writing(run: Path, stale: set, step: int = 0, files: int = 0) -> Path | None:
    """A checkpoint folder this segment is writing (not one of the `stale` leftovers of a killed segment, which a
    fresh start does not delete first) for `step` or later, with at least `files` files in it."""
    for tmp in sorted((run / "checkpoints").glob(".tmp-step_*")):
        try:
            if (tmp.name, tmp.stat().st_mtime_ns) not in stale and int(tmp.name[len(".tmp-step_"):]) >= step \
                    and len(os.listdir(tmp)) >= files:
                return tmp
        except (FileNotFoundError, ValueError):
            continue
    return None


def _fired(kill: dict, run: Path, last_step: int, stale: set) -> Path | bool:
    """Whether `kill` fires now: a "step" kill once that step is logged; a "checkpoint" kill once the folder of
    that checkpoint (or a later one: a resume may start past the planned step) holds after_files files."""
    if kill["kind"] == "step":
        return last_step >= kill["step"]
    return _writing(run, stale, kill["step"], kill["after_files"])


def _watch(pid_of, is_done, run: Path, kill: dict | None, steps_seen, timeout: float) -> dict | None:
    """Poll every millisecond until `kill` fires (then SIGKILL the process pid_of() names) or the run ends."""
    t0 = checked = time.time()
    stale = _partials(run)  # the child is still importing torch: nothing of this segment's is written yet
    while True:
        if time.time() - checked >= 0.05:  # is_done may be slow (J.status): every 50 ms, the kill point every 1 ms
            if is_done():
                return None
            checked = time.time()
        if time.time() - t0 > timeout:
            raise TimeoutError(f"a training segment ran over {timeout} s")
        if kill is not None and (hit := _fired(kill, run, steps_seen(), stale)):
            try:
                os.kill(pid_of(), signal.SIGKILL)
            except ProcessLookupError:  # it ended just now, before the kill point counted
                return None
            # still there after the kill: the rename that completes the checkpoint had not happened
            writing = hit if isinstance(hit, Path) else _writing(run, stale)
            return {**kill, "last_logged_step": steps_seen(),
                    "during_checkpoint": writing is not None and writing.exists(),
                    "checkpoint_written": writing.name[len(".tmp-"):] if writing is not None else None}
        time.sleep(0.001)


def _process_segment(args: dict, env: dict, kill: dict | None, timeout: float, no_rng_restore=False) -> dict | None:
    script = CHILD.format(root=str(ROOT), no_rng_restore=no_rng_restore)
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    seen, tail = [0], []

    def read():
        for line in proc.stdout:
            tail.append(line)
            del tail[:-40]
            if line.startswith("step ") and "/" in line.split()[1]:
                seen[0] = int(line.split()[1].split("/")[0])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        killed = _watch(lambda: proc.pid, lambda: proc.poll() is not None, Path(args["out"]), kill,
                        lambda: seen[0], timeout)
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.wait()
        reader.join(timeout=10)
    if killed is None and proc.returncode != 0:
        raise RuntimeError(f"training exited with {proc.returncode}:\n{''.join(tail)}")
    return killed


def _job_segment(args: dict, root: Path, job: list, kill: dict | None, timeout: float) -> dict | None:
    from training import jobs as J

    if job:
        J.resume(job[0], root)
    else:
        job.append(J.start("train", root=root, **args))

    def step():  # progress.json, rewritten by the runner at most twice a second
        try:
            return json.loads((J.job_dir(job[0], root) / "progress.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            return 0

    def done():
        return J.status(job[0], root)["state"] not in J.ACTIVE

    def pid():  # the runner records its pid right after it starts; a kill can only fire once steps are logged
        while not (p := J.read_record(J.job_dir(job[0], root)).get("pid")):
            time.sleep(0.01)
        return p

    try:
        killed = _watch(pid, done, Path(args["out"]), kill, step, timeout)
        t0 = time.time()
        while not done():  # a killed job turns "interrupted" once its process is gone (J.status reconciles)
            if time.time() - t0 > timeout:
                raise TimeoutError(f"job {job[0]} did not end within {timeout} s")
            time.sleep(0.05)
    except BaseException:
        rec = J.read_record(J.job_dir(job[0], root))
        if J.alive(rec):
            os.kill(rec["pid"], signal.SIGKILL)
        raise
    s = J.status(job[0], root)
    if killed is None and s["state"] != "done":
        raise RuntimeError(f"job {job[0]} ended {s['state']}: {s['error']}\n{s['log_tail']}")
    if killed is not None and not (s["state"] == "interrupted" and s["resumable"]):
        raise RuntimeError(f"job {job[0]} killed but {s['state']} (resumable={s['resumable']})")
    return killed


def _train(args: dict, plan: list[dict], via: str, env: dict, jobs_root: Path, timeout: float,
           no_rng_restore_after_first_kill=False) -> list[dict]:
    """Run args to the end through `plan` (one segment per kill, then a final one); return what each kill hit."""
    done, job = [], []
    for kill in plan + [None]:
        control = no_rng_restore_after_first_kill and bool(done)
        if via == "job":
            hit = _job_segment(args, jobs_root, job, kill, timeout)
        else:
            hit = _process_segment(args, env, kill, timeout, no_rng_restore=control)
        if kill is None or hit is None:  # the run finished (the last segment, or a kill point never reached)
            break
        done.append(hit)
    return done


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(run) / "model" / "model.safetensors")


def _losses(run: Path) -> list:
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [(m["step"], m["loss"]) for m in map(json.loads, lines) if m["kind"] == "train"]


def _compare(a: Path, b: Path) -> dict:
    import torch

    wa, wb = _weights(a), _weights(b)
    same_keys = wa.keys() == wb.keys()
    diff = max((float((wa[k] - wb[k]).abs().max()) for k in wa if k in wb), default=float("inf"))
    return {"identical": same_keys and all(torch.equal(wa[k], wb[k]) for k in wa),
            "max_abs_diff": diff if same_keys else float("inf"), "losses_identical": _losses(a) == _losses(b)}


def build_inputs(workdir: Path) -> tuple[Path, Path]:
    """A tiny corpus and a 512-token tokenizer (tests/fixtures.py's), built once in workdir."""
    from tests.fixtures import make_corpus
    from training.tok_train import train_corpus_tokenizer

    corpus, tok = workdir / "inputs" / "corpus", workdir / "inputs" / "tok"
    if not (corpus / "report.json").exists():
        make_corpus(workdir / "inputs")
    if not (tok / "tokenizer.json").exists():
        train_corpus_tokenizer(corpus, tok, vocab_size=512, compare_seed=False, log=lambda m: None)
    return corpus, tok


def run_crash_harness(workdir: str | Path, kills: int = 5, seed: int = 0, *, corpus: str | Path | None = None,
                      tokenizer: str | Path | None = None, via: str = "process", threads: int = 1,
                      reference: str | Path | None = None, control: bool = False, timeout: float = 600,
                      **train_overrides) -> dict:
    """Train the tiny config (tiny_config; train_overrides change it) to the end twice in workdir: once straight
    (skipped when `reference` names a finished run of the same config) and once SIGKILLed at the plan_kills
    points, resumed after each. Returns a JSON-friendly dict:
      kills_survived       kills after which the run went on to weights bit-identical to the straight run's
                           (all of them, or 0 when the final weights differ)
      kills_during_checkpoint  kills that landed while a checkpoint folder was still being written
      identical, max_abs_diff, losses_identical   the killed run against the straight one
      kills                what each kill hit (kind, planned step, last logged step, during_checkpoint)
      control_differs      (control=True) a run resumed once without restoring the torch RNG state differs
      reference, run, seconds, config
    via: "process" (bare subprocesses) or "job" (training/jobs.py start, SIGKILL of its pid, resume; the
    straight run is a job too). threads: OMP/MKL threads of every training process (via="process")."""
    if via not in ("process", "job"):
        raise ValueError(f"via={via!r}: allowed process, job")
    if control and via != "process":
        raise ValueError("control=True needs via='process' (the control run is a bare process like the reference)")
    t0 = time.time()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    if corpus is None or tokenizer is None:
        corpus, tokenizer = build_inputs(work)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT)}
    base = tiny_config(corpus, tokenizer, work / "straight", **train_overrides)
    plan = plan_kills(kills, base["max_steps"], base["checkpoint_every"], seed)
    jobs_root = work / "jobs"
    ref = Path(reference) if reference else Path(base["out"])
    if reference is None:
        _train(base, [], via, env, jobs_root, timeout)
    killed_args = base | {"out": str(work / f"killed-{via}-{seed}")}
    hits = _train(killed_args, plan, via, env, jobs_root, timeout)
    result = _compare(ref, Path(killed_args["out"]))
    if control:
        ctrl = base | {"out": str(work / f"control-{seed}")}
        after_first_checkpoint = [{"kind": "step", "step": base["checkpoint_every"] + 2}]
        _train(ctrl, after_first_checkpoint, "process", env, jobs_root, timeout, no_rng_restore_after_first_kill=True)
        result["control_differs"] = not _compare(ref, Path(ctrl["out"]))["identical"]
    return {"kills_survived": len(hits) if result["identical"] else 0,
            "kills_during_checkpoint": sum(h["during_checkpoint"] for h in hits), **result, "kills": hits,
            "via": via, "reference": str(ref), "run": killed_args["out"], "seconds": round(time.time() - t0, 1),
            "config": {k: v for k, v in base.items() if k not in ("corpus", "tokenizer", "out", "tokens_cache")}}


if __name__ == "__main__":  # python tests/reliability/crash_harness.py WORKDIR [KILLS] [SEED]: one JSON line
    a = sys.argv[1:]
    print(json.dumps(run_crash_harness(a[0], int(a[1]) if len(a) > 1 else 5, int(a[2]) if len(a) > 2 else 0)))

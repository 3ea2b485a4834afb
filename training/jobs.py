"""The job registry: long work (corpus build, tokenizer training, training, quantization, evaluation) as jobs
that run in their own detached process (training/job_runner.py) and outlive a page reload, a closed browser
or a restart of the web server. One function per user action, shared by the CLI (`cli.py jobs`), the web UI and
its API: start, status, list_jobs, stop, resume, extend, reconcile. Every function takes and returns plain,
JSON-friendly values.

Storage: one self-describing folder per job, `<root>/<job id>/` (root: `runs/jobs`, or $ANNO_JOBS_DIR):
  job.json      kind, arguments (absolute paths), output folder, state, pid and its start time, times, error,
                result, earlier attempts; replaced atomically (temp file + rename) under the job's own lock
  log.txt       the job process's stdout and stderr
  progress.json step/total, tokens/s, ETA (training), rewritten at most twice a second
Why folders and not SQLite (WAL): a job's artifacts are files already (a run folder is self-describing), a
folder can be read, copied and deleted with no tool, and the only writers of one job.json are its runner and
the user actions on that job, serialised by a per-job `flock`. Readers never lock: `os.replace` means they see
the old or the new record, never half of one. Starting and resuming hold a registry-wide `flock` while they
check that no live job writes the same output folder and record theirs, so two Starts in a row (two browser
tabs, a double click) never start two runs into one folder. (flock needs a local filesystem; SQLite's WAL
mode has the same limit, https://www.sqlite.org/wal.html "does not work over a network filesystem".)

States: queued -> running -> done | failed | stopped; stop() moves a live job to stopping; a job whose
process is gone without recording an outcome (kill -9, reboot) becomes interrupted when it is next looked at
(reconcile). A recorded pid counts as the job's only while that pid's process start time is the recorded
one, so a recycled pid is not mistaken for the job.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from engine.atomic import write_json_atomic  # job.json, progress.json (job_runner uses J.write_json_atomic)

STATES = ("queued", "running", "stopping", "done", "failed", "interrupted", "stopped")
ACTIVE = ("queued", "running", "stopping")
RESUMABLE = ("stopped", "interrupted", "failed")
JOB_ID = re.compile(r"^\d{8}-\d{6}-[a-z]+-[0-9a-f]{6}$")
ROOT = Path(__file__).resolve().parents[1]
QUEUED_GRACE_S = 60  # a queued record with no pid this old: its starter died before spawning the process
LOG_TAIL_LINES = 40


class JobError(ValueError):
    """A job cannot be started or acted on; the message says why and what to do instead."""


def jobs_root(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get("ANNO_JOBS_DIR") or "runs/jobs").resolve()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------------------- records


@contextmanager
def _flock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def job_dir(job_id: str, root: str | Path | None = None) -> Path:
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise JobError(f"job_id={job_id!r} is not a job id (like 20261129-203000-train-3fa2c1); list_jobs() shows them")
    d = jobs_root(root) / job_id
    if not (d / "job.json").exists():
        raise JobError(f"job_id={job_id!r}: no such job in {jobs_root(root)}")
    return d


def read_record(d: Path) -> dict:
    return json.loads((d / "job.json").read_text(encoding="utf-8"))


def update(d: Path, fn=None, **changes) -> dict:
    """Read-modify-write job.json under the job's lock; fn(record) may change it in place."""
    with _flock(d / ".lock"):
        rec = read_record(d)
        rec.update(changes)
        if fn is not None:
            fn(rec)
        write_json_atomic(d / "job.json", rec)
    return rec


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


START_SLACK_S = 1.5


def alive(rec: dict) -> bool:
    """The recorded process still runs (same pid AND same start time; a zombie counts as gone). The start times
    are compared to within START_SLACK_S: psutil's create_time is boot time (/proc/stat's btime, whole seconds,
    recomputed by the kernel from the wall clock) plus the start in ticks, so the same process's value can move
    by a second after a clock adjustment. Seen 2026-12-01: a training job still writing its result reported
    "interrupted" (tests/test_jobs.py, one run of the full suite) under the old 0.01 s tolerance. A pid reused
    within that slack would need the pid counter to wrap onto it within a second and a half."""
    pid, started = rec.get("pid"), rec.get("pid_started")
    if not pid:
        return False
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and (started is None or abs(p.create_time() - started) < START_SLACK_S)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _reconcile_one(d: Path) -> dict:
    rec = read_record(d)
    if rec["state"] not in ACTIVE or alive(rec):
        return rec
    if rec["state"] == "queued" and not rec.get("pid") and time.time() - rec.get("queued_at", 0) < QUEUED_GRACE_S:
        return rec  # being spawned right now

    def settle(r):
        if r["state"] not in ACTIVE or alive(r):
            return  # changed under us
        r["ended"] = now()
        if r["state"] == "stopping":  # asked to stop, and it is gone: that is what was asked
            r["state"] = "stopped"
        else:
            r["state"] = "interrupted"
            again = "continues from its last checkpoint" if r["kind"] == "train" else "runs it again"
            r["error"] = (f"the job's process (pid {r.get('pid')}) ended without recording an outcome (killed, "
                          f"or the machine restarted); resume {again}")
    return update(d, settle)


def reconcile(root: str | Path | None = None) -> list[str]:
    """Match the registry with reality (call on app start): every queued/running/stopping job whose process is
    gone becomes interrupted (or stopped, when a stop was asked). Returns the ids it changed."""
    changed = []
    for d in _job_dirs(root):
        before = read_record(d)["state"]
        if _reconcile_one(d)["state"] != before:
            changed.append(d.name)
    return changed


def _job_dirs(root) -> list[Path]:
    r = jobs_root(root)
    return sorted((d for d in r.iterdir() if JOB_ID.match(d.name) and (d / "job.json").exists()),
                  key=lambda d: d.name) if r.exists() else []


# ------------------------------------------------------------------------------------------- actions


def _spawn(d: Path) -> None:
    """The detached job process: own session (a signal to the server's process group never reaches it),
    stdin closed, output into log.txt. A thread reaps it if it ends while this process still runs."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    with open(d / "log.txt", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "training.job_runner", str(d)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=os.getcwd())
    update(d, lambda r: r.update(pid=proc.pid, pid_started=process_start_time(proc.pid)) if not r.get("pid") else None)
    threading.Thread(target=proc.wait, daemon=True).start()


def _claim(root, out: str, exclude: str | None = None) -> None:
    """Refuse when a live job already writes `out` (call under the registry lock)."""
    for d in _job_dirs(root):
        if d.name == exclude:
            continue
        rec = _reconcile_one(d)
        if rec["state"] in ACTIVE and rec["out"] == out:
            raise JobError(f"out={out} is being written by job {d.name} ({rec['state']}): wait for it, stop it, "
                           f"or pick another output folder")


def start(kind: str, root: str | Path | None = None, **args) -> str:
    """Validate the arguments (clear errors naming the field), claim the output folder, record the job and
    start its process. Returns the job id."""
    return create(kind, root, spawn=True, **args)


def create(kind: str, root: str | Path | None = None, spawn: bool = False, **args) -> str:
    """start() without starting the process when spawn is False: the job stays queued (tests run it in
    process with job_runner.run_job)."""
    from training.job_runner import validate

    args, out, warnings = validate(kind, args)
    r = jobs_root(root)
    with _flock(r / ".registry.lock"):
        _claim(root, out)
        job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}"
        d = r / job_id
        d.mkdir(parents=True)
        write_json_atomic(d / "job.json", {
            "id": job_id, "kind": kind, "args": args, "out": out, "state": "queued", "created": now(),
            "created_ts": time.time(), "queued_at": time.time(), "started": None, "ended": None, "pid": None, "pid_started": None,
            "error": None, "result": None, "warnings": warnings, "attempts": []})
        if spawn:
            _spawn(d)
    return job_id


def _requeue(d: Path, root, args_change: dict | None = None) -> None:
    r = jobs_root(root)
    with _flock(r / ".registry.lock"):
        rec = _reconcile_one(d)
        _claim(root, rec["out"], exclude=d.name)

        def again(x):
            if x["state"] in ACTIVE:
                raise JobError(f"job {d.name} is {x['state']} already")
            x["attempts"].append({k: x[k] for k in ("state", "started", "ended", "pid", "error", "result")})
            x.update(state="queued", queued_at=time.time(), started=None, ended=None, pid=None, pid_started=None,
                     error=None, result=None)
            x["args"].update(args_change or {})
        update(d, again)
        (d / "progress.json").unlink(missing_ok=True)
        if rec["kind"] == "train":
            (Path(rec["out"]) / "STOP").unlink(missing_ok=True)  # a stale stop request would end it at once
        _spawn(d)


def resume(job_id: str, root: str | Path | None = None) -> dict:
    """Continue a stopped, interrupted or failed job in its own record: training resumes exactly from the run
    folder's last checkpoint; the other kinds run again from the start (they write their output atomically,
    so there is nothing half-written to continue). Returns the job's status."""
    d = job_dir(job_id, root)
    rec = _reconcile_one(d)
    if rec["state"] not in RESUMABLE:
        hint = " (extend it to train more steps)" if rec["kind"] == "train" and rec["state"] == "done" else ""
        raise JobError(f"job {job_id} is {rec['state']}; only {', '.join(RESUMABLE)} jobs resume{hint}")
    _requeue(d, root)
    return status(job_id, root)


def extend(job_or_run: str, max_steps: int, root: str | Path | None = None) -> str:
    """Continue a training run (a job id or a run folder) to max_steps steps in all. A job id continues in the
    same record (same id, one history); a run folder gets a new job. Returns the job id."""
    from training.job_runner import check_extend

    if isinstance(job_or_run, str) and JOB_ID.match(job_or_run) and (jobs_root(root) / job_or_run).exists():
        d = job_dir(job_or_run, root)
        rec = _reconcile_one(d)
        if rec["kind"] != "train":
            raise JobError(f"job {job_or_run} is a {rec['kind']} job; only training jobs extend")
        if rec["state"] in ACTIVE:
            raise JobError(f"job {job_or_run} is {rec['state']}; stop it (or let it finish) before extending")
        check_extend(rec["out"], max_steps)
        _requeue(d, root, {"resume": rec["out"], "extend_to": max_steps})
        return job_or_run
    if not (isinstance(job_or_run, str) and (Path(job_or_run) / "run.json").is_file()):
        # the app's /job_extend calls this argument job_id; "resume=... is not a run folder" named a field the
        # caller never saw (tests/reliability/test_fuzz.py)
        raise JobError(f"job_id={job_or_run!r} is not a job in {jobs_root(root)} and is not a run folder (no run.json)")
    return start("train", root=root, resume=job_or_run, extend_to=max_steps)


def stop(job_id: str, root: str | Path | None = None) -> dict:
    """Ask a job to stop. Training checkpoints and stops after the current step (STOP file + SIGTERM, which the
    loop turns into the same cooperative stop); other kinds get SIGTERM in their whole process group and are
    marked stopped. Returns the job's status (state "stopping" until the process has finished)."""
    d = job_dir(job_id, root)
    rec = _reconcile_one(d)
    if rec["state"] not in ACTIVE:
        raise JobError(f"job {job_id} is {rec['state']}: there is nothing to stop")
    rec = update(d, state="stopping")
    if rec["kind"] == "train":
        out = Path(rec["out"])
        if out.is_dir():
            (out / "STOP").touch()
    # A job run inside the web server (ZeroGPU's chained GPU calls, ui/train_tab.py) records the server's pid:
    # signalling it would end the server, and the STOP file already stops the loop.
    if alive(rec) and rec["pid"] != os.getpid():
        try:
            if rec["kind"] == "train":
                os.kill(rec["pid"], signal.SIGTERM)
            else:
                os.killpg(rec["pid"], signal.SIGTERM)  # the runner leads its own session and process group
        except ProcessLookupError:
            pass
    return status(job_id, root)


# ------------------------------------------------------------------------------------------- reading


def _tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 16_384) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def _metrics(run: Path) -> dict:
    """The run's metrics.jsonl as plot-ready series (a file read; no model is loaded)."""
    path = run / "metrics.jsonl"
    train, evals = [], []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being appended right now
        if m.get("kind") == "train":
            train.append({"step": m["step"], "loss": m["loss"], "tokens_per_s": m.get("tokens_per_s")})
        elif m.get("kind") == "eval":
            evals.append({"step": m["step"], "val_loss": m.get("val_loss"), "val_bpb": m.get("val_bpb")})
    return {"train": train, "eval": evals}


def _progress(d: Path, rec: dict, metrics: dict | None) -> dict | None:
    try:
        p = json.loads((d / "progress.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        p = None
    if p is None and metrics is not None and rec["kind"] == "train":  # e.g. after a restart: from the files
        run_json = Path(rec["out"]) / "run.json"
        total = json.loads(run_json.read_text())["config"]["max_steps"] if run_json.exists() \
            else rec["args"].get("extend_to") or rec["args"].get("max_steps")
        last = metrics["train"][-1] if metrics["train"] else None
        p = {"step": last["step"] if last else 0, "total": total,
             "tokens_per_s": last["tokens_per_s"] if last else None, "eta_s": None}
    if p and p.get("total"):
        p["fraction"] = round(min(1.0, p["step"] / p["total"]), 4)
    return p


def status(job_id: str, root: str | Path | None = None) -> dict:
    """Everything a page needs to show a job, from files only (cheap to poll): state, progress (step/total,
    tokens/s, ETA), metrics history of a training run, log tail, error, result, whether it can resume."""
    d = job_dir(job_id, root)
    rec = _reconcile_one(d)
    metrics = _metrics(Path(rec["out"])) if rec["kind"] == "train" else None
    out = {k: rec[k] for k in ("id", "kind", "state", "args", "out", "created", "started", "ended", "pid", "error",
                               "result", "warnings")}
    out.update(attempts=len(rec["attempts"]) + 1, resumable=rec["state"] in RESUMABLE,
               progress=_progress(d, rec, metrics), metrics=metrics, log_tail=_tail(d / "log.txt"))
    return out


def list_jobs(root: str | Path | None = None) -> list[dict]:
    """Every job, newest first: id, kind, state, out, times, progress fraction, error."""
    rows = []
    for d in _job_dirs(root):
        rec = _reconcile_one(d)
        p = _progress(d, rec, None)
        rows.append((rec.get("created_ts", 0), {k: rec[k] for k in ("id", "kind", "state", "out", "created", "started",
                                                                  "ended", "error")}
                     | {"progress": p.get("fraction") if p else None}))
    return [row for _, row in sorted(rows, key=lambda r: r[0], reverse=True)]  # ids only order to the second

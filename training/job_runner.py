"""The job process and the job kinds: `python -m training.job_runner JOB_DIR` runs one job of the registry
(training/jobs.py) and records its outcome in JOB_DIR/job.json.

Each kind is the library function its CLI subcommand calls, behind two small functions: one validates the
JSON arguments before anything starts (a clear error naming the field and the allowed values) and names the
output folder; one runs it in the job process and returns a small JSON summary.
  corpus     training.corpus.build_corpus        (cli.py corpus build)
  tokenizer  training.tok_train.train_corpus_tokenizer (cli.py tokenizer train)
  train      training.loop.train                 (cli.py train; fresh, or resume=RUN [extend_to=N])
  quantize   engine.quantize.quantize            (cli.py quantize)
  eval       evals.suite.run_suite               (cli.py eval)
Stopping: training turns SIGTERM into its cooperative stop (checkpoint after the current step); the other kinds
end on SIGTERM (their outputs are replaced atomically, so nothing half-written is left) and are marked stopped.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import fields
from pathlib import Path

from engine import paths
from training import jobs as J

KINDS = ("corpus", "tokenizer", "train", "quantize", "eval")
CORPUS_NESTED = ("selection", "extract", "clean", "docs")  # sub-configs: selection is flattened, the rest default
TOKENIZER_ARGS = {"corpus": "data/corpus", "out": "runs/tok", "vocab_size": 32_000, "compare_seed": True}
QUANTIZE_ARGS = {"model": None, "method": None, "out": None, "corpus": None, "eval_docs": 20}
EVAL_ARGS = {"model": None, "suite": "quick", "corpus": None, "out": "report.json"}
TRAIN_RESUME_ARGS = {"resume": None, "extend_to": None, "max_steps_this_call": None}
PATH_ARGS = ("manifest", "out", "mirror", "cache_dir", "corpus", "tokenizer", "tokens_cache", "resume")
PROGRESS_EVERY_S = 0.5


class JobStopped(BaseException):
    """SIGTERM in a non-training job (BaseException: library code's `except Exception` must not swallow it)."""


def _fill(kind: str, args: dict, defaults: dict) -> dict:
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        raise J.JobError(f"{kind}: unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(defaults)}")
    out = defaults | {k: v for k, v in args.items() if v is not None}
    missing = [k for k, v in out.items() if v is None and defaults[k] is None and k in ("model", "method", "out")]
    if missing:
        raise J.JobError(f"{kind}: {', '.join(missing)} is required")
    for k in (*PATH_ARGS, "model"):  # in the web app: inside its allowed roots (engine/paths.py)
        if out.get(k):
            paths.check(out[k], k)
    for k in PATH_ARGS:  # the job process may run elsewhere: record absolute paths
        if out.get(k):
            out[k] = str(Path(out[k]).resolve())
    return out


def _int(name: str, v, lo: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise J.JobError(f"{name}={v!r} must be an integer >= {lo}")


def _built_corpus(name: str, path: str) -> None:
    if not (Path(path) / "report.json").is_file():
        raise J.JobError(f"{name}={path} is not a built corpus (no report.json); build one first (corpus job)")


def check_extend(run: str, extend_to) -> None:
    """extend_to must exceed the run's max_steps, and the run must have a checkpoint to continue from."""
    from training.checkpoints import latest_checkpoint

    run_json = Path(run) / "run.json"
    if not run_json.is_file():
        raise J.JobError(f"resume={run} is not a run folder (no run.json)")
    if latest_checkpoint(Path(run)) is None:
        raise J.JobError(f"resume={run} has no complete checkpoint to continue from")
    if extend_to is not None:
        max_steps = json.loads(run_json.read_text())["config"]["max_steps"]
        _int("extend_to", extend_to, max_steps + 1)


def validate(kind: str, args: dict) -> tuple[dict, str, list[str]]:
    """(arguments with defaults and absolute paths, output path, warnings); JobError on bad input."""
    try:
        return _validate(kind, args)
    except J.JobError:
        raise
    except ValueError as e:  # a config's own check (it names the field and the range): say which job kind
        raise J.JobError(f"{kind}: {e}") from None


def _validate(kind: str, args: dict) -> tuple[dict, str, list[str]]:
    if kind not in KINDS:
        raise J.JobError(f"kind={kind!r} is unknown; allowed: {', '.join(KINDS)}")
    warnings: list[str] = []
    if kind == "corpus":
        from training.manifest import read_manifest

        a = _fill(kind, args, _corpus_defaults())
        try:
            _corpus_config(a)
            _, errors = read_manifest(a["manifest"])
        except Exception as e:  # ManifestError, ValueError: already clear; say which job argument
            raise J.JobError(f"corpus: {e}") from None
        if a["mirror"] and not Path(a["mirror"]).is_dir():
            raise J.JobError(f"mirror={a['mirror']}: no such folder")
        warnings = [f"manifest {e.message}" for e in errors]
        if errors and a["strict"]:
            raise J.JobError(f"manifest={a['manifest']} has {len(errors)} bad line(s) and strict is on: "
                             + "; ".join(warnings[:3]))
    elif kind == "tokenizer":
        from engine.tokenizer import TokenizerConfig

        a = _fill(kind, args, TOKENIZER_ARGS)
        _built_corpus("corpus", a["corpus"])
        TokenizerConfig(vocab_size=a["vocab_size"])
    elif kind == "train":
        a = _train_args(args)
    elif kind == "quantize":
        from engine.quantize import METHODS

        a = _fill(kind, args, QUANTIZE_ARGS)
        if a["method"] not in METHODS:
            raise J.JobError(f"method={a['method']!r} is unknown; allowed: {', '.join(METHODS)}")
        if not Path(a["model"]).is_dir():
            raise J.JobError(f"model={a['model']}: no such folder (give a run folder or a model folder)")
        a["model"] = str(Path(a["model"]).resolve())
        _int("eval_docs", a["eval_docs"], 0)
        if a["eval_docs"] > 0:
            a["corpus"] = a["corpus"] or _run_corpus(a["model"])
            _built_corpus("corpus", a["corpus"])
    else:
        a = _fill(kind, args, EVAL_ARGS)
        if a["suite"] not in ("quick", "full"):
            raise J.JobError(f"suite={a['suite']!r} is unknown; allowed: quick, full")
        if not Path(a["model"]).is_dir():
            raise J.JobError(f"model={a['model']}: no such folder (jobs evaluate local run or model folders)")
        a["model"] = str(Path(a["model"]).resolve())
        a["corpus"] = a["corpus"] or _run_corpus(a["model"])
        _built_corpus("corpus", a["corpus"])
    return a, a.get("out") or a.get("resume"), warnings


def _corpus_defaults() -> dict:
    """The corpus job's arguments: CorpusConfig's plain fields plus Selection's, with their defaults."""
    from training.corpus import CorpusConfig
    from training.manifest import Selection

    plain = {f.name: f.default for f in fields(CorpusConfig) if f.name not in CORPUS_NESTED}
    return plain | {f.name: (list(f.default) if isinstance(f.default, tuple) else f.default) for f in fields(Selection)}


def _corpus_config(a: dict):
    from training.corpus import CorpusConfig
    from training.manifest import Selection

    names = {f.name for f in fields(Selection)}
    sel = Selection(**{k: (tuple(v) if k == "sources" else v) for k, v in a.items() if k in names})
    return CorpusConfig(**{k: v for k, v in a.items() if k not in names}, selection=sel)


def _run_corpus(model: str) -> str:
    for cand in (Path(model) / "run.json", Path(model).parent / "run.json"):
        if cand.is_file():
            return json.loads(cand.read_text())["config"]["corpus"]
    raise J.JobError(f"corpus is required: model={model} is not a run folder whose run.json names its corpus")


def _train_args(args: dict) -> dict:
    from training.checkpoints import latest_checkpoint
    from training.train_config import TrainConfig

    if args.get("resume"):
        a = _fill("train", args, TRAIN_RESUME_ARGS)
        check_extend(a["resume"], a["extend_to"])
        a["out"] = a["resume"]
    else:
        known = {f.name: f.default for f in fields(TrainConfig)} | {"max_steps_this_call": None}
        a = _fill("train", {k: v for k, v in args.items() if k != "resume"}, known)
        try:
            TrainConfig(**{k: v for k, v in a.items() if k != "max_steps_this_call"})
        except ValueError as e:
            raise J.JobError(f"train: {e}") from None
        _built_corpus("corpus", a["corpus"])
        if not (Path(a["tokenizer"]) / "tokenizer.json").is_file():
            raise J.JobError(f"tokenizer={a['tokenizer']} has no tokenizer.json; train or pick a tokenizer first")
        if latest_checkpoint(Path(a["out"])) is not None:
            raise J.JobError(f"out={a['out']} already holds a run: resume or extend it, or pick another out")
    if a["max_steps_this_call"] is not None:
        _int("max_steps_this_call", a["max_steps_this_call"], 1)
    return a


# ------------------------------------------------------------------------------------------- running


def _run_train(a: dict, rec: dict, d: Path, log, stop_event: threading.Event) -> tuple[str, dict]:
    from training.checkpoints import latest_checkpoint
    from training.loop import train
    from training.train_config import TrainConfig

    last = [0.0]

    def progress(p: dict) -> None:
        if time.time() - last[0] >= PROGRESS_EVERY_S or p["step"] >= p["total"]:
            last[0] = time.time()
            J.write_json_atomic(d / "progress.json", p)

    run = Path(a["out"])
    common = dict(max_steps_this_call=a["max_steps_this_call"], stop_event=stop_event, log=log, progress=progress)
    if a.get("resume") or latest_checkpoint(run) is not None:  # an explicit resume, or a resumed fresh job
        ext = a.get("extend_to")
        if ext is not None and json.loads((run / "run.json").read_text())["config"]["max_steps"] >= ext:
            ext = None  # an earlier attempt already extended the run (run.json records it)
        info = train(resume=run, extend_to=ext, **common)
    else:
        info = train(TrainConfig(**{k: v for k, v in a.items() if k != "max_steps_this_call"}), **common)
    state = {"completed": "done", "stopped": "stopped", "paused": "stopped"}[info["status"]]
    return state, {k: info.get(k) for k in ("status", "step", "final_eval", "bpb_ratio_vs_untrained")}


def _run_other(kind: str, a: dict, log) -> dict:
    if kind == "corpus":
        from training.corpus import build_corpus

        report = build_corpus(_corpus_config(a))
        return {**report["totals"], "errors": len(report["errors"])}
    if kind == "tokenizer":
        from training.tok_train import train_corpus_tokenizer

        r = train_corpus_tokenizer(a["corpus"], a["out"], a["vocab_size"], compare_seed=a["compare_seed"], log=log)
        return {k: r[k] for k in ("vocab_size", "fertility", "bytes_per_token", "validation_round_trip_failures")}
    if kind == "quantize":
        from itertools import islice

        from engine.corpus_io import iter_documents
        from engine.quantize import quantize

        texts = [x["text"] for x in islice(iter_documents(a["corpus"], "validation"), a["eval_docs"])] \
            if a["eval_docs"] > 0 else []
        info = quantize(a["model"], a["method"], a["out"], texts, log=log)
        return {k: info[k] for k in ("method", "weights_on_disk_bytes", "memory_bytes", "speed", "perplexity")}
    from evals.suite import run_suite

    return run_suite(a["model"], a["suite"], corpus_dir=a["corpus"], out=a["out"], log=log)["summary"]


def run_job(d: str | Path) -> str:
    """Run the job recorded in folder d in this process; returns its final state. The job process's main."""
    d, claimed = Path(d), []
    kind, stop_event, inside = J.read_record(d)["kind"], threading.Event(), []

    def on_term(signum, frame):
        stop_event.set()  # training: the loop's cooperative stop (the loop installs its own handler once it runs)
        if kind != "train" and inside:
            raise JobStopped

    # Installed before the claim records this pid: stop() signals the recorded pid at once, and a SIGTERM
    # landing before the handler would kill the process without a record of the outcome.
    before = signal.signal(signal.SIGTERM, on_term)

    def claim(r):  # under the job's lock, so a stop() landing now is seen here or sees "running"
        if r["state"] == "queued":
            r.update(state="running", started=J.now(), pid=os.getpid(), pid_started=J.process_start_time(os.getpid()))
            claimed.append(True)
        elif r["state"] == "stopping":  # stopped before this process got going
            r.update(state="stopped", ended=J.now())

    rec = J.update(d, claim)
    if not claimed:  # stopped already, or another process runs it: do nothing
        signal.signal(signal.SIGTERM, before)
        return rec["state"]

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.time()
    try:
        inside.append(True)
        if kind == "train":
            state, result = _run_train(rec["args"], rec, d, log, stop_event)
        else:
            if stop_event.is_set():  # SIGTERM between the claim and here
                raise JobStopped
            state, result = "done", _run_other(kind, rec["args"], log)
        error = None
    except (JobStopped, KeyboardInterrupt):
        state, result, error = "stopped", None, None
        log("stopped")
    except BaseException as e:
        traceback.print_exc()
        state, result, error = "failed", None, str(e) or type(e).__name__
    finally:
        signal.signal(signal.SIGTERM, before)
    log(f"job {d.name}: {state} in {time.time() - t0:.1f} s" + (f": {error}" if error else ""))
    J.update(d, state=state, ended=J.now(), result=result, error=error)
    return state


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m training.job_runner JOB_DIR")
    run_job(sys.argv[1])

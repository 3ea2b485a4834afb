"""Train tab: a tokenizer (train one as a job, or pick a folder), the preset form with the derived figures shown
before start (parameters, tokens per step, estimated time from a tokens/s figure measured on this machine),
Start / Stop / Resume / Extend, and the attached job's live view (loss and bits/byte plot, tokens/s, ETA, log
tail) polled with gr.Timer; the attached job id lives in gr.BrowserState, so a reload or a new browser
re-attaches to it with its whole history. Also the job list every session shares, and the public job
endpoints `/train_start`, `/job_status`, `/job_stop`, `/job_resume`, `/job_extend`, `/jobs`.

Every action is one call into training/jobs.py (the registry the CLI's `jobs` subcommand uses too); the job
itself runs in its own process, so closing the page never stops it. The callbacks here only format."""
from __future__ import annotations

import functools
import json
import os
import shlex
import statistics
import threading
from pathlib import Path

import gradio as gr
import pandas as pd

from engine.model import PRESETS, model_config, param_count
from training import jobs as J
from training.train_config import PRESET_LR
from ui.common import Ctx, user_errors

POLL_S = 1.0  # a status read is a few small file reads (~1 ms); once a second keeps the plot live
JOB_COLUMNS = ["id", "kind", "state", "progress", "out", "started", "ended", "error"]
# The job id in the browser is not a secret (anyone on the page can list jobs); the fixed secret only keeps
# the stored value readable after a server restart (a random one would be new on every start).
JOB_STORE = dict(storage_key="anno-train-job", secret="anno-jobs-v1")
# On ZeroGPU each chunk is one @spaces.GPU call: this many steps, then a checkpoint. Not measured on a Space
# (no ZeroGPU here); a tiny/small step takes well under a second on an A100-class GPU, so 200 steps fit 120 s.
ZEROGPU_CHUNK_STEPS = 200
ZEROGPU_CHUNK_S = 120


# ------------------------------------------------------------------------------------------- formatting


def _dur(s) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def status_md(s: dict | None) -> str:
    """One job's state as a few Markdown lines (shared by every job tab)."""
    if not s:
        return "No job attached: start one, or pick one in the job list below."
    p = s.get("progress") or {}
    line = f"**Job `{s['id']}`** ({s['kind']}, attempt {s['attempts']}): **{s['state']}**"
    if p.get("total"):
        line += f" · step {p['step']}/{p['total']} ({100 * p.get('fraction', 0):.0f}%)"
    if p.get("tokens_per_s"):
        line += f" · {p['tokens_per_s']:,.0f} tokens/s"
    if s["state"] in J.ACTIVE and p.get("eta_s") is not None:
        line += f" · ETA {_dur(p['eta_s'])}"
    lines = [line, f"Output: `{s['out']}`"]
    if s.get("metrics"):
        m = s["metrics"]
        lines.append(f"History: {len(m['train'])} train-loss points, {len(m['eval'])} validation points")
    if s.get("error"):
        lines.append(f"**Error:** {s['error']}")
    if s.get("resumable"):
        lines.append("This job can be resumed (Resume continues a training run from its last checkpoint).")
    lines += [f"Warning: {w}" for w in s.get("warnings") or []]
    return "\n\n".join(lines)


SERIES = ("train loss", "validation loss", "validation bits/byte")


def loss_frame(s: dict | None) -> pd.DataFrame:
    # One empty (NaN) point per series, always: Gradio 6.31's LinePlot fixes its colour domain from the first
    # value it draws, so a plot that starts empty and is then updated drew axes without lines (screenshot of
    # the Train tab, 2026-11-29). Vega-Lite skips NaN points, so these draw nothing themselves.
    rows = [(0, float("nan"), name) for name in SERIES]
    for m in ((s or {}).get("metrics") or {}).get("train", []):
        rows.append((m["step"], m["loss"], "train loss"))
    for m in ((s or {}).get("metrics") or {}).get("eval", []):
        rows += [(m["step"], m["val_loss"], "validation loss")] if m.get("val_loss") is not None else []
        rows += [(m["step"], m["val_bpb"], "validation bits/byte")] if m.get("val_bpb") is not None else []
    # explicit dtypes: an empty frame is otherwise "object", and the plot then reads value as a category
    return pd.DataFrame(rows, columns=["step", "value", "series"]).astype({"step": "int64", "value": "float64"})


def jobs_rows(jobs: list[dict]) -> list[list]:
    return [[j["id"], j["kind"], j["state"], "" if j["progress"] is None else f"{100 * j['progress']:.0f}%",
             j["out"], j["started"] or "", j["ended"] or "", j["error"] or ""] for j in jobs]


# ------------------------------------------------------------------------------------------- figures


@functools.lru_cache(maxsize=16)
def _vocab(tokenizer: str, mtime: float) -> int:
    from engine.tokenizer import load_tokenizer

    return len(load_tokenizer(tokenizer))


def measured_speed(roots: list[str], preset: str) -> tuple[float, str] | None:
    """Training tokens/s of the newest finished run of this preset on this machine: the median of its logged
    steps after the first (the first includes start-up). None when no such run exists here."""
    runs = [p for r in roots for p in (*Path(r).glob("*/run.json"), *Path(r).glob("*/*/run.json"))]
    for run_json in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            cfg = json.loads(run_json.read_text())["config"]
            if cfg["preset"] != preset:
                continue
            lines = (run_json.parent / "metrics.jsonl").read_text().splitlines()
            tps = [m["tokens_per_s"] for m in map(json.loads, lines)
                   if m.get("kind") == "train" and m.get("tokens_per_s")]
        except (OSError, ValueError, KeyError):
            continue
        if len(tps) >= 2:
            return statistics.median(tps[1:]), (f"median of {len(tps) - 1} logged steps of `{run_json.parent}` "
                                                f"(context {cfg['n_ctx']}, batch {cfg['batch_size']})")
    return None


def derived_md(roots, preset, tokenizer, n_ctx, batch_size, grad_accum, max_steps) -> str:
    """Parameters (engine.model.param_count for the preset and the tokenizer's vocabulary), tokens per step,
    and the time the run would take at a measured speed."""
    if preset not in PRESETS:
        return f"preset={preset!r} is unknown; allowed: {', '.join(PRESETS)}"
    tok = Path(tokenizer or "") / "tokenizer.json"
    if not tok.is_file():
        return f"Pick a tokenizer (a folder with tokenizer.json) to see the model's size; `{tokenizer}` has none."
    try:
        ctx = int(n_ctx or 0) or PRESETS[preset]["n_ctx"]
        vocab = _vocab(str(tok.parent), tok.stat().st_mtime)
        n = param_count(model_config(preset, vocab, n_ctx=ctx))
        per_step = int(batch_size) * int(grad_accum or 1) * ctx
    except (ValueError, TypeError) as e:
        return f"Cannot size this model: {e}"
    p = PRESETS[preset]
    out = [f"**{preset}**: {p['n_layer']} layers × {p['n_embd']} wide, context {ctx}, vocabulary {vocab:,} → "
           f"**{n['total'] / 1e6:.2f} M parameters** ({n['non_embedding'] / 1e6:.2f} M non-embedding); "
           f"default peak learning rate {PRESET_LR[preset]}",
           f"**{per_step:,} tokens per step** (batch {int(batch_size)} × accumulation {int(grad_accum or 1)} × "
           f"context {ctx}); {int(max_steps):,} steps = {per_step * int(max_steps):,} tokens"]
    speed = measured_speed(roots, preset)
    if speed:
        out.append(f"Estimated time on this machine: **{_dur(per_step * int(max_steps) / speed[0])}** at "
                   f"{speed[0]:,.0f} tokens/s ({speed[1]}; other work on the machine slows it down)")
    else:
        out.append(f"No finished {preset} run on this machine to measure its speed yet: the live ETA appears once "
                   "the job runs.")
    return "\n\n".join(out)


def cli_command(args: dict) -> str:
    """The equivalent `python cli.py train ...` line for a form's arguments."""
    words = ["python", "cli.py", "train"]
    for k, v in args.items():
        if v is None or v == "" or (k in ("n_ctx", "lr") and not v):
            continue
        words += [f"--{k.replace('_', '-')}", str(v)]
    return " ".join(shlex.quote(w) for w in words)


def tokenizer_folders(roots: list[str]) -> list[str]:
    """Folders with a tokenizer.json that are not model folders, up to two levels below each root."""
    found = [p.parent for r in roots for p in (*Path(r).glob("*/tokenizer.json"), *Path(r).glob("*/*/tokenizer.json"))]
    return sorted(str(p) for p in found if not (p / "config.json").exists() and not (p / "run.json").exists())


# ------------------------------------------------------------------------------------------- starting


def start_training(ctx: Ctx, args: dict) -> str:
    """Start a training job: locally in its own process; on ZeroGPU as chained time-boxed GPU calls."""
    if ctx.batched:
        return J.start("train", **args)
    job = J.create("train", **args)  # queued, no process: the chain below runs it in this server
    threading.Thread(target=_zerogpu_chain, args=(ctx, job), name=f"anno-{job}", daemon=True).start()
    return job


def _zerogpu_chain(ctx: Ctx, job: str) -> None:
    """Run a training job as @spaces.GPU chunks of ZEROGPU_CHUNK_STEPS steps, each resuming from the last
    checkpoint, until the run completes, is stopped (the STOP file) or fails. Exercised here only with the
    decorator as a no-op (off ZeroGPU); the forked GPU worker of a real Space was not available to test."""
    from training.checkpoints import latest_checkpoint
    from training.loop import train
    from training.train_config import TrainConfig

    d = J.job_dir(job)

    @ctx.gpu(duration=ZEROGPU_CHUNK_S)
    def chunk(job_dir: str) -> dict:
        rec = J.read_record(Path(job_dir))
        a, run = rec["args"], Path(rec["out"])
        progress = lambda p: J.write_json_atomic(Path(job_dir) / "progress.json", p)  # noqa: E731
        kw = dict(max_steps_this_call=ZEROGPU_CHUNK_STEPS, log=print, progress=progress)
        if latest_checkpoint(run) is not None:
            info = train(resume=run, **kw)
        else:
            info = train(TrainConfig(**{k: v for k, v in a.items() if k != "max_steps_this_call"}), **kw)
        return {k: info.get(k) for k in ("status", "step", "final_eval", "bpb_ratio_vs_untrained")}

    # The record names this server's pid: if the server dies, reconcile marks the job interrupted.
    J.update(d, state="running", started=J.now(), pid=os.getpid(), pid_started=J.process_start_time(os.getpid()))
    try:
        while (result := chunk(str(d)))["status"] == "paused":
            pass
        state, error = {"completed": "done", "stopped": "stopped"}[result["status"]], None
    except Exception as e:  # noqa: BLE001  (the job records its error; the server keeps serving)
        state, result, error = "failed", None, str(e) or type(e).__name__
    J.update(d, state=state, ended=J.now(), result=result, error=error)


# ------------------------------------------------------------------------------------------- the tab


def build(ctx: Ctx, picker=None) -> None:
    roots = ctx.model_roots
    toks = tokenizer_folders(roots)
    saved = gr.BrowserState("", **JOB_STORE)
    with gr.Row():
        corpus = gr.Textbox(ctx.corpus or "data/corpus", label="Corpus (a built corpus folder)", scale=3,
                            elem_id="train-corpus")
        tokenizer = gr.Dropdown(toks, value=toks[0] if toks else "runs/tok", allow_custom_value=True, scale=3,
                                label="Tokenizer folder", info="pick one, or train one below", elem_id="train-tok")
        rescan = gr.Button("↻", scale=0, min_width=50)
    with gr.Accordion("Train a tokenizer (a job)", open=False):
        with gr.Row(equal_height=True):
            tok_vocab = gr.Number(8000, precision=0, label="Vocabulary size", elem_id="tok-vocab")
            tok_out = gr.Textbox(f"{roots[0]}/tok-new", label="Save the tokenizer to", elem_id="tok-out")
            tok_go = gr.Button("Train tokenizer", elem_id="tok-go")
    with gr.Row():
        preset = gr.Radio(list(PRESETS), value="tiny", label="Preset", info="tiny trains on a CPU in minutes",
                          elem_id="train-preset")
        out = gr.Textbox(f"{roots[0]}/my-tiny", label="Run folder (must be new)", elem_id="train-out")
    with gr.Row():
        max_steps = gr.Number(300, precision=0, label="Steps", minimum=1, elem_id="train-steps")
        batch = gr.Number(16, precision=0, label="Batch (sequences)", minimum=1, elem_id="train-batch")
        accum = gr.Number(1, precision=0, label="Gradient accumulation", minimum=1, elem_id="train-accum")
        n_ctx = gr.Number(128, precision=0, label="Context (0: the preset's)", minimum=0, elem_id="train-ctx")
        lr = gr.Number(0.0, label="Peak LR (0: preset's)", minimum=0, elem_id="train-lr")
        eval_every = gr.Number(50, precision=0, label="Validate every N steps", minimum=1, elem_id="train-eval")
        ckpt_every = gr.Number(100, precision=0, label="Checkpoint every N steps", minimum=1, elem_id="train-ckpt")
    with gr.Accordion("More settings", open=False):
        with gr.Row():
            log_every = gr.Number(10, precision=0, minimum=1, label="Log the training loss every N steps",
                                  elem_id="train-log-every")
            eval_tokens = gr.Number(32_768, precision=0, minimum=1, label="Validation tokens per evaluation",
                                    elem_id="train-eval-tokens")
            tokens_cache = gr.Textbox("data/tokens", label="Token cache folder (shared by runs of one corpus)",
                                      elem_id="train-tokens-cache")
    figures = gr.Markdown(derived_md(roots, "tiny", tokenizer.value, 128, 16, 1, 300), elem_id="train-figures")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop (checkpoint first)", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
        extend_to = gr.Number(600, precision=0, label="Extend to (steps in all)", scale=0, min_width=160,
                              elem_id="train-extend-to")
        extend = gr.Button("Extend", elem_id="train-extend")
        show_cli = gr.Button("Show CLI command", elem_id="train-cli")
    cli = gr.Markdown(elem_id="train-cli-line")
    with gr.Row(equal_height=True):
        job = gr.Textbox(label="Attached job", placeholder="a job id; pick one from the list below", scale=4,
                         elem_id="train-job")
        attach = gr.Button("Attach", scale=0, min_width=90)
    status = gr.Markdown(status_md(None), elem_id="train-status")
    with gr.Row():
        plot = gr.LinePlot(loss_frame(None), x="step", y="value", color="series", label="Loss and bits/byte",
                           elem_id="train-plot", height=360)
        log = gr.Textbox(label="Log (last lines)", lines=14, max_lines=14, autoscroll=True, elem_id="train-log")
    jobs_table = gr.Dataframe(jobs_rows(J.list_jobs()), headers=JOB_COLUMNS, interactive=False, wrap=True,
                              label="All jobs (every session sees the same list; click a row to attach)",
                              elem_id="jobs-table")
    seen = gr.State("")
    timer = gr.Timer(POLL_S)

    form = [corpus, tokenizer, out, preset, max_steps, batch, accum, n_ctx, lr, eval_every, ckpt_every, log_every,
            eval_tokens, tokens_cache]

    def args_of(corpus, tokenizer, out, preset, steps, batch, accum, n_ctx, lr, eval_every, ckpt_every, log_every,
                eval_tokens, tokens_cache) -> dict:
        ints = dict(max_steps=steps, batch_size=batch, grad_accum=accum, n_ctx=n_ctx, eval_every=eval_every,
                    checkpoint_every=ckpt_every, log_every=log_every, eval_tokens=eval_tokens)
        return dict(preset=preset, corpus=corpus, tokenizer=tokenizer, out=out, tokens_cache=tokens_cache or None,
                    **{k: int(v) if v is not None else None for k, v in ints.items()}, lr=float(lr or 0))

    @user_errors
    def on_start(*form_values):
        job_id = start_training(ctx, args_of(*form_values))
        return job_id, job_id

    @user_errors
    def on_tokenizer(corpus, vocab, out):
        job_id = J.start("tokenizer", corpus=corpus, out=out, vocab_size=int(vocab or 0))
        return job_id, job_id, gr.Dropdown(value=out)

    @user_errors
    def on_stop(job_id):
        J.stop(job_id)
        return gr.skip()

    @user_errors
    def on_resume(job_id):
        J.resume(job_id)
        return gr.skip()

    @user_errors
    def on_extend(job_id, to):
        return J.extend(job_id, int(to or 0))

    def on_cli(job_id, *form_values):
        rec = J.status(job_id) if job_id and J.JOB_ID.match(job_id or "") else None
        if rec and rec["kind"] == "train" and rec["state"] not in ("queued",) and rec["args"].get("resume"):
            line = cli_command({"resume": rec["out"], "extend_to": rec["args"].get("extend_to")})
        else:
            line = cli_command(args_of(*form_values))
        return f"```\n{line}\n```"

    def poll(job_id, last):
        try:
            s = J.status(job_id) if job_id else None
        except J.JobError as e:
            s = {"error": str(e)}
        listed = J.list_jobs()
        key = json.dumps([s, listed], default=str)
        if key == last:
            return [gr.skip()] * 5
        if s is not None and "id" not in s:
            return f"**Error:** {s['error']}", loss_frame(None), "", jobs_rows(listed), key
        return status_md(s), loss_frame(s), (s or {}).get("log_tail", ""), jobs_rows(listed), key

    def pick_row(evt: gr.SelectData):
        row = evt.row_value
        return (row[0], row[0]) if row and row[0] else (gr.skip(), gr.skip())

    private = dict(api_visibility="private")
    for comp in (preset, tokenizer, n_ctx, batch, accum, max_steps):
        comp.change(lambda *v: derived_md(roots, *v), [preset, tokenizer, n_ctx, batch, accum, max_steps], figures,
                    queue=False, **private)
    rescan.click(lambda cur: gr.Dropdown(choices=tokenizer_folders(roots), value=cur), tokenizer, tokenizer,
                 queue=False, **private)
    start.click(on_start, form, [job, saved], **private)
    tok_go.click(on_tokenizer, [corpus, tok_vocab, tok_out], [job, saved, tokenizer], **private)
    stop.click(on_stop, job, job, **private)
    resume.click(on_resume, job, job, **private)
    extend.click(on_extend, [job, extend_to], job, **private)
    show_cli.click(on_cli, [job, *form], cli, queue=False, **private)
    attach.click(lambda j: (j.strip(), j.strip()), job, [job, saved], queue=False, **private)
    jobs_table.select(pick_row, None, [job, saved], queue=False, **private)
    timer.tick(poll, [job, seen], [status, plot, log, jobs_table, seen], queue=False, **private)
    def reattach(j):
        """On page load: the job this browser saved, else the newest training job still running (from the
        registry: a reload, another browser or a restarted app finds it), else the newest training job."""
        if j:
            return j
        runs = [r for r in J.list_jobs() if r["kind"] == "train"]
        live = [r for r in runs if r["state"] in J.ACTIVE]
        return (live or runs or [{"id": None}])[0]["id"] or gr.skip()

    if gr.context.Context.root_block is not None:
        gr.context.Context.root_block.load(reattach, saved, job, queue=False, **private)

    # ---------------------------------------------------------------------------------------- API
    def train_start(corpus: str, tokenizer: str, out: str, preset: str = "tiny", max_steps: int = 300,
                    batch_size: int = 16, n_ctx: int = 0, lr: float = 0.0, eval_every: int = 50,
                    checkpoint_every: int = 100, options: dict | None = None) -> dict:
        """Start training a fresh run as a job; returns the job's status (poll /job_status with its id).
        options: further TrainConfig fields (grad_accum, log_every, eval_tokens, keep_last, seed, tokens_cache,
        warmup_steps, dropout, decade_power, ...)."""
        args = dict(corpus=corpus, tokenizer=tokenizer, out=out, preset=preset, max_steps=max_steps,
                    batch_size=batch_size, n_ctx=n_ctx, lr=lr, eval_every=eval_every, checkpoint_every=checkpoint_every)
        return J.status(start_training(ctx, args | (options or {})))

    def job_status(job_id: str) -> dict:
        """A job's state, progress (step/total, tokens/s, ETA), metrics history, log tail, error and result."""
        return J.status(job_id)

    def job_stop(job_id: str) -> dict:
        """Ask a job to stop (training checkpoints after the current step); returns its status."""
        return J.stop(job_id)

    def job_resume(job_id: str) -> dict:
        """Resume a stopped, interrupted or failed job (training: exactly from its last checkpoint)."""
        return J.resume(job_id)

    def job_extend(job_id: str, max_steps: int) -> dict:
        """Continue a finished or stopped training job (or a run folder) to max_steps steps in all."""
        return J.status(J.extend(job_id, max_steps))

    def jobs() -> list[dict]:
        """Every job, newest first: id, kind, state, out, times, progress fraction, error."""
        return J.list_jobs()

    for fn in (job_status, jobs):  # polls: cheap file reads, answered without the queue
        gr.api(user_errors(fn), api_name=fn.__name__, queue=False)
    for fn in (train_start, job_stop, job_resume, job_extend):
        gr.api(user_errors(fn), api_name=fn.__name__, concurrency_limit=4, concurrency_id="jobs")

"""Evaluate tab: the picked model + the quick or full suite -> `eval` as a job -> the summary table, validation
loss per century, era fidelity per era token, and the report (JSON and Markdown) to download. Also the public
`/evaluate` endpoint."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd

from training import jobs as J
from ui.common import Ctx, user_errors
from ui.train_tab import POLL_S, status_md

JOB_STORE = dict(storage_key="anno-eval-job", secret="anno-jobs-v1")  # not a secret: see ui/train_tab.py


def default_out(model: str, suite: str) -> str:
    """The report goes into the model's own folder (publish stages it from there)."""
    return str(Path(model) / f"eval_{suite}.json")


def eval_args(model, suite, corpus="", out="") -> dict:
    if not model:
        raise ValueError("model is required: pick a run or model folder")
    return dict(model=model, suite=suite, corpus=corpus or None, out=out or default_out(model, suite))


def century_frame(report: dict) -> pd.DataFrame:
    """Validation loss per century, token-weighted from the report's per-decade losses ("1650s")."""
    acc: dict[str, list[float]] = {}
    for decade, v in report["lm"]["per_decade"].items():
        c = f"{decade[:2]}00s"
        a = acc.setdefault(c, [0.0, 0.0])
        a[0] += v["loss"] * v["tokens"]
        a[1] += v["tokens"]
    keys = sorted(acc)
    return pd.DataFrame({"century": keys, "loss": [acc[k][0] / acc[k][1] if acc[k][1] else 0.0 for k in keys]})


def era_frame(report: dict) -> pd.DataFrame:
    per = report.get("era_fidelity", {}).get("per_year", {})
    keys = sorted(per, key=int)
    return pd.DataFrame({"era token": keys, "mean abs error (years)": [per[k]["mean_abs_error"] for k in keys]})


def report_outputs(out: str):
    """(summary rows, loss per century, era fidelity, files) of a finished evaluation's report."""
    r = json.loads(Path(out).read_text(encoding="utf-8"))
    rows = [[k, round(v, 4) if isinstance(v, float) else v] for k, v in r["summary"].items()]
    files = [p for p in (out, str(Path(out).with_suffix(".md"))) if Path(p).is_file()]
    return rows, century_frame(r), era_frame(r), files


def build(ctx: Ctx, picker) -> None:
    saved = gr.BrowserState("", **JOB_STORE)
    gr.Markdown("Evaluates the model chosen at the top: validation loss and bits/byte, period probes (anachronisms "
                "per 1,000 words), era fidelity (does a decade token make it write that decade?), continuations "
                "(ROUGE, BLEU). quick: a few minutes on CPU for a tiny model; full: more samples, time-locked probes.")
    with gr.Row(equal_height=True):
        suite = gr.Radio(["quick", "full"], value="quick", label="Suite", elem_id="eval-suite")
        corpus = gr.Textbox("", label="Corpus (empty: the one the run was trained on)", elem_id="eval-corpus")
        go = gr.Button("Evaluate", variant="primary", elem_id="eval-go")
    job = gr.Textbox(label="Evaluation job", elem_id="eval-job")
    status = gr.Markdown(status_md(None), elem_id="eval-status")
    with gr.Row():
        summary = gr.Dataframe(headers=["metric", "value"], label="Summary", interactive=False, elem_id="eval-summary")
        centuries = gr.BarPlot(x="century", y="loss", label="Validation loss per century", elem_id="eval-centuries")
        eras = gr.BarPlot(x="era token", y="mean abs error (years)", label="Era fidelity: dating error per era token",
                          elem_id="eval-eras")
    files = gr.File(label="Report (JSON and Markdown)", file_count="multiple", interactive=False, elem_id="eval-files")
    timer = gr.Timer(POLL_S)

    @user_errors
    def on_go(model, suite, corpus):
        job_id = J.start("eval", **eval_args(model, suite, corpus))
        return job_id, job_id, gr.Timer(active=True)

    def poll(job_id):
        if not job_id:
            return gr.skip(), *[gr.skip()] * 4, gr.Timer(active=False)
        try:
            s = J.status(job_id)
        except J.JobError as e:
            return f"**Error:** {e}", *[gr.skip()] * 4, gr.Timer(active=False)
        if s["state"] in J.ACTIVE:
            return status_md(s), *[gr.skip()] * 4, gr.skip()
        view = report_outputs(s["out"]) if s["state"] == "done" else [gr.skip()] * 4
        return status_md(s), *view, gr.Timer(active=False)

    private = dict(api_visibility="private")
    go.click(on_go, [picker.model, suite, corpus], [job, saved, timer], **private)
    job.submit(lambda j: (j, gr.Timer(active=True)), job, [saved, timer], **private)
    timer.tick(poll, job, [status, summary, centuries, eras, files, timer], queue=False, **private)
    if gr.context.Context.root_block is not None:
        gr.context.Context.root_block.load(lambda j: j or gr.skip(), saved, job, queue=False, **private)

    def evaluate(model: str, suite: str = "quick", corpus: str = "", out: str = "") -> dict:
        """Evaluate a run or model folder as a job (suite quick or full; corpus empty: the run's own; out empty:
        eval_<suite>.json in the model folder). Returns the job's status; its result, once done, is the summary."""
        return J.status(J.start("eval", **eval_args(model, suite, corpus, out)))

    gr.api(user_errors(evaluate), api_name="evaluate", concurrency_limit=4, concurrency_id="jobs")

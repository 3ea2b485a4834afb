"""Quantize tab: the picked model + a method -> `quantize` as a job -> a table of what it changed (weights on disk,
weights in memory, greedy tokens/s, validation perplexity; from the new folder's quantization.json), and the new
folder in the model picker. Also the public `/quantize` endpoint."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine.quantize import METHODS, bnb_status
from training import jobs as J
from ui.common import Ctx, user_errors
from ui.picker import _choices
from ui.train_tab import POLL_S, status_md

JOB_STORE = dict(storage_key="anno-quantize-job", secret="anno-jobs-v1")  # not a secret: see ui/train_tab.py
COLUMNS = ["", "fp32", "quantized", "change"]


def default_out(model: str, method: str) -> str:
    """A sibling of the model folder named after the method (so the picker's roots list it)."""
    p = Path(model)
    return str(p.parent / f"{p.name}-{method}")


def quantize_args(model, method, out, eval_docs, corpus="") -> dict:
    if not model:
        raise ValueError("model is required: pick a run or model folder")
    return dict(model=model, method=method, out=out or default_out(model, method), eval_docs=int(eval_docs),
                corpus=corpus or None)


def result_rows(r: dict | None) -> list[list]:
    """quantization.json's figures as rows: quantity, fp32, quantized, change."""
    if not r:
        return []
    mb = lambda b: f"{b / 1e6:.2f} MB"  # noqa: E731
    pct = lambda q, b: f"{100 * (q / b - 1):+.1f}%" if b else ""  # noqa: E731
    d, m, s = r["weights_on_disk_bytes"], r["memory_bytes"], r["speed"]
    rows = [["weights on disk", mb(d["fp32"]), mb(d["quantized"]), pct(d["quantized"], d["fp32"])],
            ["weights in memory", mb(m["fp32"]), mb(m["quantized"]), pct(m["quantized"], m["fp32"])],
            [f"greedy tokens/s ({s['device']}, {s['threads']} threads)", s["fp32_tok_s"], s["tok_s"],
             f"×{s['ratio']}"]]
    if p := r.get("perplexity"):
        rows.append([f"perplexity ({p['documents']} validation documents)", p["fp32_ppl"], p["ppl"],
                     f"{p['delta_pct']:+.3f}%"])
    return rows


def build(ctx: Ctx, picker) -> None:
    note = bnb_status()
    saved = gr.BrowserState("", **JOB_STORE)
    gr.Markdown("Quantizes the model chosen at the top. int8-cpu: ~2.5x faster decoding on CPU (12x768); "
                "bnb-int8 / bnb-nf4 need bitsandbytes" + (f" (here: {note})." if note else "."))
    with gr.Row(equal_height=True):
        method = gr.Radio(list(METHODS), value="int8-cpu", label="Method", elem_id="quant-method")
        eval_docs = gr.Number(20, precision=0, minimum=0, label="Validation documents for perplexity (0: none)",
                              elem_id="quant-docs")
        out = gr.Textbox("", label="Save to (empty: beside the model, named after the method)", elem_id="quant-out")
        go = gr.Button("Quantize", variant="primary", elem_id="quant-go")
    job = gr.Textbox(label="Quantize job", elem_id="quant-job")
    status = gr.Markdown(status_md(None), elem_id="quant-status")
    table = gr.Dataframe(headers=COLUMNS, label="What quantization changed (from quantization.json)",
                         interactive=False, elem_id="quant-table")
    timer = gr.Timer(POLL_S)

    @user_errors
    def on_go(model, method, out, docs):
        job_id = J.start("quantize", **quantize_args(model, method, out, docs))
        return job_id, job_id, gr.Timer(active=True)

    def poll(job_id, current):
        if not job_id:
            return gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)
        try:
            s = J.status(job_id)
        except J.JobError as e:
            return f"**Error:** {e}", gr.skip(), gr.skip(), gr.Timer(active=False)
        if s["state"] in J.ACTIVE:
            return status_md(s), gr.skip(), gr.skip(), gr.skip()
        models = gr.Dropdown(choices=_choices(ctx, (current,) if current else ()), value=current)
        return status_md(s), result_rows(s["result"]), models, gr.Timer(active=False)

    private = dict(api_visibility="private")
    go.click(on_go, [picker.model, method, out, eval_docs], [job, saved, timer], **private)
    job.submit(lambda j: (j, gr.Timer(active=True)), job, [saved, timer], **private)
    timer.tick(poll, [job, picker.model], [status, table, picker.model, timer], queue=False, **private)
    if gr.context.Context.root_block is not None:
        gr.context.Context.root_block.load(lambda j: j or gr.skip(), saved, job, queue=False, **private)

    def quantize(model: str, method: str = "int8-cpu", out: str = "", eval_docs: int = 20, corpus: str = "") -> dict:
        """Quantize a run or model folder as a job (out empty: <model>-<method> beside it; eval_docs validation
        documents of corpus, default the run's own, for the perplexity change). Returns the job's status; its
        result, once done, is quantization.json's figures."""
        return J.status(J.start("quantize", **quantize_args(model, method, out, eval_docs, corpus)))

    gr.api(user_errors(quantize), api_name="quantize", concurrency_limit=4, concurrency_id="jobs")

"""Corpus tab: a manifest (the shipped training/sources.jsonl or an upload), the raw files (a local mirror or a
download), the selection (years, London only, sources) and the validation/test shares -> `corpus build` as a
job; when it is done (or for any built corpus folder), its report: words per decade, rejects by reason,
licences and attribution, from report.json. Also the public `/corpus_build` endpoint."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pandas as pd

from training import jobs as J
from ui.common import Ctx, user_errors
from ui.train_tab import POLL_S, status_md

SHIPPED_MANIFEST = "training/sources.jsonl"
# The shared mirror sits beside the repository on the machines Anno is developed on (DEVELOPERS.md).
MIRROR_GUESS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
JOB_STORE = dict(storage_key="anno-corpus-job", secret="anno-jobs-v1")  # not a secret: see ui/train_tab.py


def source_names(manifest: str) -> list[str]:
    """The source names a manifest's records carry (for the selection), or [] when it cannot be read."""
    from training.manifest import ManifestError, read_manifest

    try:
        records, _ = read_manifest(manifest)
    except (ManifestError, OSError):
        return []
    return sorted({r["source"] for r in records if r.get("source")})


def report_view(corpus: str) -> tuple[str, pd.DataFrame, list[list], list[list], str]:
    """(summary, words per decade, rejects by reason, licences, attribution) of a built corpus's report.json."""
    from engine import paths

    if corpus:
        paths.check(corpus, "corpus")  # in the web app: inside its allowed roots
    path = Path(corpus or "") / "report.json"
    if not path.is_file():
        raise ValueError(f"corpus={corpus!r} is not a built corpus (no report.json)")
    r = json.loads(path.read_text(encoding="utf-8"))
    t = r["totals"]
    splits = ", ".join(f"{k} {v['documents']:,} documents / {v['words']:,} words" for k, v in r["splits"].items())
    summary = (f"**{t['documents']:,} documents, {t['words']:,} words** from {t['texts_kept']:,} of "
               f"{t['sources_selected']:,} selected sources ({t['source_errors']} source errors). Splits: {splits}. "
               + (f"Decades with no text: {', '.join(map(str, r['decades_missing']))}." if r.get("decades_missing")
                  else ""))
    decades = pd.DataFrame({"decade": [f"{d}s" for d in r["by_decade"]],
                            "words": [v["words"] for v in r["by_decade"].values()]})
    rejects = [[k, v["documents"], v["words"]] for k, v in r["rejects"].items()]
    licences = [[k, v["documents"], v["words"]] for k, v in r["licenses"].items()]
    attribution = "\n".join(f"- {a}" if isinstance(a, str) else f"- {json.dumps(a, ensure_ascii=False)}"
                            for a in r.get("attribution") or []) or "No attribution required by these licences."
    return summary, decades, rejects, licences, attribution


def corpus_args(manifest, mirror, out, year_from, year_to, london_only, sources, val_fraction, test_fraction,
                workers, strict=False) -> dict:
    year = lambda v: None if v in (None, "") else int(v)  # noqa: E731
    return dict(manifest=manifest or SHIPPED_MANIFEST, mirror=mirror or None, out=out, year_from=year(year_from),
                year_to=year(year_to), london_only=bool(london_only), sources=list(sources or []),
                val_fraction=float(val_fraction), test_fraction=float(test_fraction), workers=int(workers),
                strict=bool(strict))


def build(ctx: Ctx, picker=None) -> None:
    mirror_default = str(MIRROR_GUESS) if (MIRROR_GUESS / "sources.jsonl").is_file() else ""
    saved = gr.BrowserState("", **JOB_STORE)
    with gr.Row():
        with gr.Column(scale=2):
            manifest = gr.Textbox(SHIPPED_MANIFEST, label="Manifest (JSONL, one source a line)",
                                  info="the shipped list of 197 dated sources, or upload your own",
                                  elem_id="corpus-manifest")
            upload = gr.File(label="…or upload a manifest (.jsonl)", file_types=[".jsonl"], type="filepath",
                             height=90)
            mirror = gr.Textbox(mirror_default, label="Raw files: a local mirror folder",
                                info="empty: download each source from its URL (needs internet)",
                                elem_id="corpus-mirror")
            out = gr.Textbox("data/corpus-new", label="Save the corpus to (replaced atomically when done)",
                             elem_id="corpus-out")
        with gr.Column(scale=2):
            with gr.Row():
                year_from = gr.Number(None, precision=0, label="From year", elem_id="corpus-from")
                year_to = gr.Number(None, precision=0, label="To year", elem_id="corpus-to")
                london = gr.Checkbox(False, label="London only", elem_id="corpus-london")
            sources = gr.Dropdown(source_names(SHIPPED_MANIFEST), multiselect=True, allow_custom_value=True,
                                  label="Sources (empty: all)", info="source names or record ids")
            with gr.Row():
                val = gr.Slider(0, 0.5, 0.05, step=0.01, label="Validation share (whole sources)")
                test = gr.Slider(0, 0.5, 0.05, step=0.01, label="Test share (whole sources)")
                workers = gr.Number(2, precision=0, minimum=1, label="Worker processes")
            go = gr.Button("Build corpus", variant="primary", elem_id="corpus-go")
    with gr.Row(equal_height=True):
        job = gr.Textbox(label="Build job", scale=3, elem_id="corpus-job")
        stop = gr.Button("Stop", variant="stop", scale=0, min_width=80)
        shown = gr.Textbox(ctx.corpus or "", label="Report of corpus folder", scale=3, elem_id="corpus-shown")
        show = gr.Button("Show report", scale=0, min_width=120, elem_id="corpus-show")
    status = gr.Markdown(status_md(None), elem_id="corpus-status")
    log = gr.Textbox(label="Log (last lines)", lines=6, max_lines=8, autoscroll=True)
    summary = gr.Markdown(elem_id="corpus-summary")
    with gr.Row():
        decades = gr.BarPlot(x="decade", y="words", label="Words per decade", sort="x", x_label_angle=-45,
                             elem_id="corpus-decades")
        with gr.Column():
            rejects = gr.Dataframe(headers=["reason", "documents", "words"], label="Rejected, by reason",
                                   interactive=False)
            licences = gr.Dataframe(headers=["licence", "documents", "words"], label="Licences", interactive=False)
    attribution = gr.Markdown(label="Attribution")
    timer = gr.Timer(POLL_S)
    report_outs = [summary, decades, rejects, licences, attribution]

    @user_errors
    def on_build(*values):
        job_id = J.start("corpus", **corpus_args(*values))
        return job_id, job_id, gr.Timer(active=True)

    @user_errors
    def on_show(folder):
        return report_view(folder)

    def poll(job_id):
        if not job_id:
            return gr.skip(), gr.skip(), gr.Timer(active=False), *[gr.skip()] * 6
        try:
            s = J.status(job_id)
        except J.JobError as e:
            return f"**Error:** {e}", "", gr.Timer(active=False), *[gr.skip()] * 6
        if s["state"] in J.ACTIVE:
            return status_md(s), s["log_tail"], gr.skip(), *[gr.skip()] * 6
        done = s["state"] == "done" and (Path(s["out"]) / "report.json").is_file()
        view = report_view(s["out"]) if done else [gr.skip()] * 5
        return status_md(s), s["log_tail"], gr.Timer(active=False), s["out"] if done else gr.skip(), *view

    private = dict(api_visibility="private")
    upload.upload(lambda p: (p, gr.Dropdown(choices=source_names(p))), upload, [manifest, sources], **private)
    go.click(on_build, [manifest, mirror, out, year_from, year_to, london, sources, val, test, workers],
             [job, saved, timer], **private)
    stop.click(user_errors(lambda j: status_md(J.stop(j))), job, status, **private)
    show.click(on_show, shown, report_outs, **private)
    job.submit(lambda j: (j, gr.Timer(active=True)), job, [saved, timer], **private)
    timer.tick(poll, job, [status, log, timer, shown, *report_outs], queue=False, **private)
    if gr.context.Context.root_block is not None:  # re-attach to this browser's build, or show the app's corpus
        gr.context.Context.root_block.load(lambda j: j or gr.skip(), saved, job, queue=False, **private)
        if ctx.corpus:
            gr.context.Context.root_block.load(on_show, shown, report_outs, **private)

    def corpus_build(out: str, manifest: str = SHIPPED_MANIFEST, mirror: str = "", year_from: int | None = None,
                     year_to: int | None = None, london_only: bool = False, sources: list[str] | None = None,
                     val_fraction: float = 0.05, test_fraction: float = 0.05, workers: int = 2,
                     strict: bool = False) -> dict:
        """Build a corpus as a job (mirror: a local folder of the raw files; empty: download). Returns the job's
        status, with the manifest's bad lines as warnings (strict: refuse instead); poll /job_status."""
        return J.status(J.start("corpus", **corpus_args(manifest, mirror, out, year_from, year_to, london_only,
                                                        sources, val_fraction, test_fraction, workers, strict)))

    gr.api(user_errors(corpus_build), api_name="corpus_build", concurrency_limit=4, concurrency_id="jobs")

"""Judge a text tab: paste or upload (.txt, .md, TEI .xml, read by the corpus extractor) + the year it claims ->
highlighted anachronisms with explanations, the estimated date with its interval and per-decade plot, the
linguistic profile against period percentiles, and a downloadable JSON report. Also the public `/check`,
`/date` and `/profile` endpoints."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from evals import judge as J
from training.extract import read_upload
from ui.common import FINDING_COLUMNS, Ctx, date_line, findings_rows, highlighted, user_errors


def decade_frame(d: dict | None) -> pd.DataFrame:
    probs = (d or {}).get("decade_probs") or {}
    keys = sorted(probs, key=int)
    return pd.DataFrame({"decade": [f"{k}s" for k in keys], "probability": [probs[k] for k in keys]})


def profile_frame(p: dict) -> pd.DataFrame:
    pct = p.get("percentiles") or {}
    return pd.DataFrame({"metric": list(pct), "percentile": [v if v is not None else 0.0 for v in pct.values()]})


def build(ctx: Ctx) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(label="Text", lines=12, elem_id="judge-text",
                              placeholder="Paste a passage; raw early-modern text (ſ, ligatures, vv) is fine")
            upload = gr.File(label="…or upload a .txt, .md or TEI .xml file", file_types=[".txt", ".md", ".xml"],
                             type="filepath", elem_id="judge-upload")
            with gr.Row():
                year = gr.Number(1660, label="Year the text claims (1000–2100)", precision=0, elem_id="judge-year")
                go = gr.Button("Judge", variant="primary", elem_id="judge-go")
        with gr.Column(scale=4):
            marked = gr.HighlightedText(label="Anachronisms", elem_id="judge-findings", combine_adjacent=False,
                                        show_legend=False)
            table = gr.Dataframe(headers=FINDING_COLUMNS, label="Why each word is flagged", wrap=True,
                                 interactive=False, elem_id="judge-table")
            dated = gr.Markdown(elem_id="judge-date")
            with gr.Row():
                decades = gr.BarPlot(x="decade", y="probability", label="Date estimate: probability per decade",
                                     elem_id="judge-decades", sort="x", x_label_angle=-45)
                prof = gr.BarPlot(x="metric", y="percentile", label="Profile: percentile among period passages",
                                  elem_id="judge-profile", y_lim=[0, 100], x_label_angle=-45)
            report = gr.File(label="JSON report (findings, date, profile)", interactive=False,
                             elem_id="judge-report")

    @user_errors
    def load_file(path):
        return read_upload(path) if path else gr.skip()

    @user_errors
    def run(text, year):
        r = J.judge(text, year, ctx.corpus)
        head = (f"{len(r['findings'])} finding(s) in {r['words']:,} words ({r['per_1000_words']} per 1,000) for "
                f"a text of {r['year']}. ")
        out = Path(tempfile.mkdtemp(prefix="anno-judge-")) / "judge_report.json"
        out.write_text(json.dumps({"text": text, **r}, ensure_ascii=False, indent=1), encoding="utf-8")
        notes = " ".join(r["profile"].get("notes") or [])
        return (highlighted(text, r["findings"]), findings_rows(r["findings"]),
                head + date_line(r["date"]) + (f"\n\n_Profile: {notes}_" if notes else ""),
                decade_frame(r["date"]), profile_frame(r["profile"]),
                str(out))

    upload.upload(load_file, upload, text, api_visibility="private")
    go.click(run, [text, year], [marked, table, dated, decades, prof, report], api_visibility="private",
             concurrency_limit=2)

    def check(text: str, year: int) -> dict:
        """Anachronisms for a text claimed to be from `year` (1000-2100): {year, words, findings: [{start, end,
        word, year, basis, confidence, explanation}], per_1000_words}."""
        return J.findings(text, year, ctx.corpus)

    def date(text: str) -> dict:
        """Estimated year of a text with an interval: {year, low, high, interval, decade_probs, words, flag}."""
        return J.date(text, ctx.corpus)

    def profile(text: str, year: int | None = None) -> dict:
        """Linguistic profile of a text with percentiles against the corpus passages of `year`'s period."""
        return J.profile(text, year, ctx.corpus)

    for fn in (check, date, profile):
        gr.api(user_errors(fn), api_name=fn.__name__, concurrency_limit=2, concurrency_id="judge")

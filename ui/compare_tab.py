"""Compare eras tab: one prompt and seed, 2-4 years side by side, streamed at once through the shared batcher,
the time lock on or off per column; under each column its findings per 1,000 words and its estimated date.
This is the screen that shows whether era conditioning works. Also the public `/compare` endpoint."""
from __future__ import annotations

import gradio as gr

from engine import serving
from evals.judge import generation_summary
from ui.common import Ctx, date_line, throttled, user_errors
from ui.picker import Picker

DEFAULT_YEARS = (1550, 1650, 1750, 1840)


def duration(prompt, years=(), lock=False, seed=0, max_new_tokens=150, *rest, **kw) -> int:
    try:
        n = int(max_new_tokens)
    except (TypeError, ValueError):
        n = 150
    return int(min(120, 15 + n / 30))


def columns_stream(ctx: Ctx, model, precision, prompt, years, locks, seed, max_new_tokens, temperature=0.8):
    loaded = serving.load_model(model or ctx.default_model, precision)
    yield from serving.compare(loaded, prompt, years, locks, seed, max_new_tokens, temperature=temperature,
                               batched=ctx.batched)


def summary_line(text: str, year: int, corpus) -> str:
    if not text:
        return ""
    s = generation_summary(text, int(year), corpus)
    return f"**{s['per_1000_words']}** findings per 1,000 words ({len(s['findings'])}) · " + date_line(s["date"])


def build(ctx: Ctx, picker: Picker) -> None:
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", lines=2, scale=4, elem_id="cmp-prompt",
                            value="In this yeare there came to the citie of London")
        with gr.Column(scale=1):
            seed = gr.Number(1, label="Seed", precision=0, info="the same seed for every column")
            n_ctx = serving.context_of(ctx.default_model) or 1024
            max_new = gr.Slider(10, min(400, n_ctx), min(120, n_ctx // 2), step=10, label="Max new tokens")
            temperature = gr.Slider(0, 1.5, 0.8, step=0.05, label="Temperature", info="0 = greedy")
    gr.Markdown("Each column continues the prompt for its year, with the same seed; leave a year empty to turn "
                "its column off. Under each column: its anachronisms per 1,000 words and the date the dater gives it.")
    years, locks, outs, notes = [], [], [], []
    with gr.Row():
        for i, y in enumerate(DEFAULT_YEARS):
            with gr.Column(min_width=200):
                with gr.Row():
                    years.append(gr.Number(y, label=f"Year {i + 1}", precision=0,
                                           elem_id=f"cmp-year-{i}"))
                    locks.append(gr.Checkbox(False, label="Time lock", elem_id=f"cmp-lock-{i}"))
                outs.append(gr.Textbox(label=f"Column {i + 1}", lines=10, elem_id=f"cmp-out-{i}"))
                notes.append(gr.Markdown(elem_id=f"cmp-note-{i}"))
    with gr.Row():
        go = gr.Button("Compare", variant="primary", elem_id="cmp-go")
        stop = gr.Button("Stop", variant="stop", elem_id="cmp-stop")

    @ctx.gpu(duration)
    def run(prompt, seed, max_new_tokens, temperature, model, precision, *cols):
        ys, ls = cols[:len(DEFAULT_YEARS)], cols[len(DEFAULT_YEARS):]
        used = [i for i, y in enumerate(ys) if y is not None and y != ""]
        if len(used) < 2:
            raise gr.Error("years: fill in at least 2 of the 4 year boxes (1500-1859)")
        blank = [""] * len(DEFAULT_YEARS)
        for columns in throttled(columns_stream(ctx, model, precision, prompt, [ys[i] for i in used],
                                                [bool(ls[i]) for i in used], seed, max_new_tokens, temperature)):
            texts = list(blank)
            for i, c in zip(used, columns):
                texts[i] = c.text
            yield texts

    run = user_errors(run)

    @user_errors
    def summarise(*vals):
        texts, ys = vals[:len(DEFAULT_YEARS)], vals[len(DEFAULT_YEARS):]
        return [summary_line(t, y, ctx.corpus) if t and y else "" for t, y in zip(texts, ys)]

    def fit_context(model, n):
        hi = min(400, serving.context_of(model) or 1024)
        return gr.Slider(maximum=hi, value=min(n, hi))

    picker.model.change(fit_context, [picker.model, max_new], max_new, api_visibility="private", queue=False)
    clear = go.click(lambda: [""] * (2 * len(DEFAULT_YEARS)), None, outs + notes, api_visibility="private",
                     queue=False)
    event = clear.then(run, [prompt, seed, max_new, temperature, picker.model, picker.precision, *years, *locks],
                       outs, api_visibility="private", concurrency_id="decode",
                       concurrency_limit=4 * serving.MAX_BATCH)
    event.then(summarise, outs + years, notes, api_visibility="private")
    stop.click(None, None, None, cancels=[event], api_visibility="private")

    @ctx.gpu(duration)
    def compare(prompt: str, years: list[int], lock: bool | list[bool] = False, seed: int = 0,
                max_new_tokens: int = 150, model: str | None = None) -> list[dict]:
        """Stream 2-4 continuations of one prompt, one per year, decoded together with one seed. lock: true/false
        for all columns or one per column (a locked column forbids words after its own year). Yields a list of
        {year, lock_year, text, finished}; the last one adds each column's per_1000_words findings and date."""
        columns = None
        for columns in throttled(columns_stream(ctx, model, "fp32", prompt, years, lock, seed, max_new_tokens)):
            yield [{"year": c.year, "lock_year": c.lock_year, "text": c.text, "finished": c.finished is not None}
                   for c in columns]
        final = []
        for c in columns or ():
            s = generation_summary(c.text, c.year, ctx.corpus)
            final.append({"year": c.year, "lock_year": c.lock_year, "text": c.text, "finished": True,
                          "finish_reason": c.finished.finish_reason if c.finished else None,
                          "per_1000_words": s["per_1000_words"], "findings": s["findings"], "date": s["date"]})
        yield final

    gr.api(user_errors(compare), api_name="compare", concurrency_id="decode",
           concurrency_limit=4 * serving.MAX_BATCH)

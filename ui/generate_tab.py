"""Generate tab: prompt, year (era token), time lock, sampling, seed; streamed text with a Stop that cancels
the request inside the shared batcher; then the text's anachronisms for its year and its estimated date.
Also the public `/generate` endpoint (streaming)."""
from __future__ import annotations

import gradio as gr

from engine import serving
from evals.judge import generation_summary
from ui.common import FINDING_COLUMNS, Ctx, date_line, findings_rows, highlighted, throttled, user_errors
from ui.picker import Picker

EXAMPLES = [["It was in the yeare of the great fire, that", 1666],
            ["Upon the Thames this morning I beheld", 1600],
            ["The coffee-house was full of talk of", 1720],
            ["My dear sister, I write to tell you that", 1840]]


def duration(prompt, year, lock_year=None, max_new_tokens=200, *rest, **kw) -> int:
    """ZeroGPU seconds for one generation: model load + ~40 tokens/s on a shared GPU slice, capped."""
    try:
        n = int(max_new_tokens)
    except (TypeError, ValueError):
        n = 200
    return int(min(120, 15 + n / 40))


def text_stream(ctx: Ctx, model, precision, prompt, year, lock_year, max_new_tokens, temperature, top_k, top_p,
                seed):
    """The growing text of one generation (the API's and the page's stream)."""
    loaded = serving.load_model(model or ctx.default_model, precision)
    from engine.generate import model_context, TextDelta
    prompt, cfg = serving.request_config(prompt, year, lock_year, max_new_tokens, temperature, top_k, top_p, seed,
                                         context=model_context(loaded.model))
    events = serving.generate(loaded, prompt, cfg, batched=ctx.batched)
    text = ""
    try:
        for ev in events:
            text = text + ev.text if isinstance(ev, TextDelta) else ev.text
            yield text
    finally:
        events.close()  # page closed or Stop pressed: the row leaves the batch before the next step


def build(ctx: Ctx, picker: Picker) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="gen-prompt",
                                placeholder="The opening words the model continues, e.g. 'It was in the yeare'")
            with gr.Row():
                year = gr.Number(1666, label="Year (era token), 1500–1859", precision=0,
                                 info="the decade's era token goes in front of the prompt", elem_id="gen-year")
                lock = gr.Checkbox(False, label="Time lock", info="forbid words first attested after the lock year",
                                   elem_id="gen-lock")
                lock_year = gr.Number(1666, label="Lock year", precision=0, interactive=False,
                                      elem_id="gen-lock-year")
            with gr.Accordion("Sampling", open=False, elem_id="gen-sampling"):
                with gr.Row():
                    n_ctx = serving.context_of(ctx.default_model) or 1024
                    max_new = gr.Slider(1, n_ctx, min(200, n_ctx // 2), step=1, label="Max new tokens",
                                        info="at most the model's context", elem_id="gen-max")
                    temperature = gr.Slider(0, 2, 0.8, step=0.05, label="Temperature", info="0 = greedy",
                                            elem_id="gen-temp")
                with gr.Row():
                    top_k = gr.Slider(0, 500, 50, step=1, label="Top-k", info="0 = off")
                    top_p = gr.Slider(0.05, 1, 0.95, step=0.01, label="Top-p", info="1 = off")
                    seed = gr.Textbox("", label="Seed", placeholder="empty = random",
                                      info="the same seed gives the same text", elem_id="gen-seed")
            with gr.Row():
                go = gr.Button("Generate", variant="primary", elem_id="gen-go")
                stop = gr.Button("Stop", variant="stop", elem_id="gen-stop")
            gr.Examples(EXAMPLES, [prompt, year])
        with gr.Column(scale=4):
            out = gr.Textbox(label="Generated text", lines=12, elem_id="gen-out", buttons=["copy"])
            marked = gr.HighlightedText(label="Anachronisms for the chosen year", elem_id="gen-findings",
                                        combine_adjacent=False, show_legend=False)
            table = gr.Dataframe(headers=FINDING_COLUMNS, label="Why each word is flagged", wrap=True,
                                 elem_id="gen-table", interactive=False)
            dated = gr.Markdown(elem_id="gen-date")

    def toggle_lock(on, y):
        return gr.Number(value=y, interactive=bool(on))

    lock.change(toggle_lock, [lock, year], lock_year, api_visibility="private", queue=False)

    def fit_context(model, n):  # the slider's range follows the chosen model's context
        hi = serving.context_of(model) or 1024
        return gr.Slider(maximum=hi, value=min(n, hi))

    picker.model.change(fit_context, [picker.model, max_new], max_new, api_visibility="private", queue=False)

    @ctx.gpu(duration)
    def run(prompt, year, lock, lock_year, max_new_tokens, temperature, top_k, top_p, seed, model, precision):
        yield from throttled(text_stream(ctx, model, precision, prompt, year, lock_year if lock else None,
                                         max_new_tokens, temperature, top_k, top_p, seed))

    run = user_errors(run)

    @user_errors
    def summarise(text, year):
        if not text:
            return None, None, ""
        s = generation_summary(text, int(year), ctx.corpus)
        head = f"{len(s['findings'])} finding(s), {s['per_1000_words']} per 1,000 words · "
        return highlighted(text, s["findings"]), findings_rows(s["findings"]), head + date_line(s["date"])

    inputs = [prompt, year, lock, lock_year, max_new, temperature, top_k, top_p, seed, picker.model, picker.precision]
    clear = go.click(lambda: (None, None, ""), None, [marked, table, dated], api_visibility="private", queue=False)
    event = clear.then(run, inputs, out, api_visibility="private", concurrency_id="decode",
                       concurrency_limit=4 * serving.MAX_BATCH)
    event.then(summarise, [out, year], [marked, table, dated], api_visibility="private")
    stop.click(None, None, None, cancels=[event], api_visibility="private")

    @ctx.gpu(duration)
    def generate(prompt: str, year: int, lock_year: int | None = None, max_new_tokens: int = 200,
                 temperature: float = 0.8, top_k: int = 50, top_p: float = 0.95, seed: int | None = None,
                 model: str | None = None) -> str:
        """Stream a generation: yields the text so far. year picks the era token (1500-1859); lock_year (or
        null) forbids words first attested after it; temperature 0 is greedy; the same seed gives the same
        text; model is a run/model folder or Hub id (default: the app's model)."""
        yield from throttled(text_stream(ctx, model, "fp32", prompt, year, lock_year, max_new_tokens,
                                         temperature, top_k, top_p, seed))

    gr.api(user_errors(generate), api_name="generate", concurrency_id="decode",
           concurrency_limit=4 * serving.MAX_BATCH)

"""The model picker (top row, shared by every tab): local run, model and quantized folders, a Hub id box
with download progress, the precision, and the model card line; plus the public `/models` endpoint."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from engine import serving
from ui.common import Ctx, user_errors


@dataclass
class Picker:
    model: gr.Dropdown
    precision: gr.Radio


def _choices(ctx: Ctx, extra: tuple[str, ...] = ()) -> list[str]:
    paths = [m["name"] for m in serving.find_models(ctx.model_roots)]
    for name in (ctx.default_model, *extra):
        if name and name not in paths:
            paths.insert(0, name)
    return paths


def models(ctx: Ctx) -> list[dict]:
    """Local models with their card line."""
    out = []
    for m in serving.find_models(ctx.model_roots):
        try:
            info = serving.model_info(m["name"])
            out.append({**m, "card": serving.card_line(info), "info": info})
        except (OSError, ValueError) as e:
            out.append({**m, "card": f"unreadable: {e}", "info": None})
    return out


def build(ctx: Ctx) -> Picker:
    with gr.Row(equal_height=True):
        model = gr.Dropdown(_choices(ctx), value=ctx.default_model, label="Model", allow_custom_value=True,
                            info="a run folder, a model or quantized folder, or a Hub id", scale=4,
                            elem_id="model")
        precision = gr.Radio(serving.available_precisions(), value="fp32", label="Precision", scale=2,
                             info="int8-cpu: ~2.5x faster on CPU (12x768), perplexity within 0.1%")
        refresh = gr.Button("↻ Rescan", scale=0, min_width=90)
    with gr.Accordion("Download a model from the Hugging Face Hub", open=False):
        with gr.Row(equal_height=True):
            hub_id = gr.Textbox(label="Hub id", placeholder="user/anno-tiny", scale=4)
            download = gr.Button("Download", scale=1)
    card = gr.Markdown(initial_card(ctx), elem_id="model-card")
    corpus_note = (f"Corpus for checks, dating and profiles: `{ctx.corpus}`" if ctx.corpus else
                   "No corpus: anachronism checks use the dated lexicon only; dating is off (start with --corpus).")
    gr.Markdown(corpus_note, elem_id="corpus-note")

    @user_errors
    def show_card(name):
        if not name:
            return "No model chosen."
        try:
            return serving.card_line(serving.model_info(name))
        except (OSError, ValueError):
            return f"`{name}`: a Hub id (downloaded on first use) or not a model folder."

    def rescan(current):
        return gr.Dropdown(choices=_choices(ctx, (current,) if current else ()), value=current)

    @user_errors
    def fetch(repo_id, progress=gr.Progress()):
        from engine.hub import download_model, hub_unavailable_reason

        repo_id = (repo_id or "").strip()
        if repo_id.count("/") != 1:
            raise gr.Error(f"Hub id={repo_id!r}: must look like 'user/name'")
        if reason := hub_unavailable_reason():
            raise gr.Error(f"The Hub cannot be reached from this machine: {reason}")
        progress(0, desc=f"downloading {repo_id}")
        path = download_model(repo_id)
        progress(1, desc="done")
        return gr.Dropdown(choices=_choices(ctx, (repo_id,)), value=repo_id), serving.card_line(
            serving.model_info(str(path)))

    model.change(show_card, model, card, api_visibility="private", queue=False)
    refresh.click(rescan, model, model, api_visibility="private", queue=False)
    download.click(fetch, hub_id, [model, card], api_visibility="private")

    def models_api() -> list[dict]:
        """Local models (run, model and quantized folders) with their card line."""
        return models(ctx)

    gr.api(models_api, api_name="models", queue=False)
    return Picker(model, precision)


def initial_card(ctx: Ctx) -> str:
    if not ctx.default_model:
        return "No model chosen: train one (`make demo`) or give --model."
    try:
        return serving.card_line(serving.model_info(ctx.default_model))
    except (OSError, ValueError) as e:
        return f"`{ctx.default_model}`: {e}"

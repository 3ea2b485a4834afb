"""Anno web app: builds the Gradio Blocks from the ui/ tabs and launches it, locally or as a Hugging Face Space
on ZeroGPU. `python app.py [--model DIR_OR_HUB_ID] [--corpus DIR] [--host 127.0.0.1] [--port 7860] [--threads N]` (port
also from GRADIO_SERVER_PORT). The only module that imports `spaces`, and it does so before anything that could touch
CUDA: on ZeroGPU the GPU-using callbacks carry @spaces.GPU with a duration derived from their arguments; off
Spaces the decorator returns the function unchanged and everything runs on CPU (or a local GPU)."""
import spaces  # noqa: I001  (first import: ZeroGPU patches CUDA before torch initialises it)

import argparse
import os
import sys
import threading
from pathlib import Path

import gradio as gr

from engine import serving
from ui import compare_tab, corpus_tab, eval_tab, generate_tab, judge_tab, picker, quantize_tab, train_tab
from ui import publish_tab
from ui.common import Ctx

ON_ZEROGPU = bool(os.environ.get("SPACES_ZERO_GPU"))
DEFAULT_MODEL = "runs/tiny"  # what `make demo` trains
DEFAULT_CORPUS = "data/corpus"  # what `make demo` builds
CSS = ".gradio-container {max-width: 1500px !important}"


def gpu(duration):
    """@spaces.GPU(duration=fn of the callback's arguments); a no-op off ZeroGPU (spaces checks itself)."""
    return lambda fn: spaces.GPU(duration=duration)(fn)


def build_app(ctx: Ctx) -> gr.Blocks:
    with gr.Blocks(title="Anno: period language models") as demo:
        gr.Markdown("# Anno\nSmall language models of dated London English, 1500–1850, and the tools to judge "
                    "whether a text belongs to its time.")
        pick = picker.build(ctx)
        with gr.Tab("Generate", id="generate"):
            generate_tab.build(ctx, pick)
        with gr.Tab("Compare eras", id="compare"):
            compare_tab.build(ctx, pick)
        with gr.Tab("Judge a text", id="judge"):
            judge_tab.build(ctx)
        # Long work runs as jobs in their own processes (training/jobs.py): these tabs start and watch them.
        # render_children: their gr.BrowserState (the attached job id) must be mounted at page load, or the
        # load event that re-attaches after a reload reads the empty default (seen in Chromium, Gradio 6.31).
        with gr.Tab("Corpus", id="corpus", render_children=True):
            corpus_tab.build(ctx, pick)
        with gr.Tab("Train", id="train", render_children=True):
            train_tab.build(ctx, pick)
        with gr.Tab("Quantize", id="quantize", render_children=True):
            quantize_tab.build(ctx, pick)
        with gr.Tab("Evaluate model", id="evaluate", render_children=True):
            eval_tab.build(ctx, pick)
        with gr.Tab("Publish", id="publish"):
            publish_tab.build(ctx, pick)
    return demo


def warm_up(ctx: Ctx, compile_step: bool = False) -> None:
    """Load the default model and build the corpus tables (first-seen words, the dater) in the background, so
    the first user does not wait for them; failures only log (the request that needs them will report).
    compile_step: then start building the model's compiled decode step (`start_compile_step`)."""
    def model():
        loaded = serving.load_model(ctx.default_model)
        if compile_step:
            import torch

            start_compile_step(ctx.default_model, loaded.model, torch.get_num_threads())
        return loaded

    def run():
        from evals import judge as J

        t = [("model", lambda: ctx.default_model and model()),
             ("anachronism tables", lambda: J.findings("warm up", 1700, ctx.corpus)),
             ("dating model", lambda: ctx.corpus and J.date("warm up the dater", ctx.corpus))]
        for name, fn in t:
            try:
                fn()
                print(f"anno: {name} ready", file=sys.stderr)
            except Exception as e:  # noqa: BLE001  (startup must not die on a missing corpus or model)
                print(f"anno: {name} not ready: {type(e).__name__}: {e}", file=sys.stderr)
    threading.Thread(target=run, name="anno-warm-up", daemon=True).start()


def make_ctx(model: str | None, corpus: str | None, roots: list[str] | None = None) -> Ctx:
    """The app's settings, checked at start: a missing model or corpus is an error, never silently dropped."""
    if corpus and not (Path(corpus) / "report.json").is_file():
        raise SystemExit(f"--corpus {corpus}: not a built corpus (no report.json); build it with "
                         "`make corpus`, or pass --corpus '' to run without one (lexicon-only checks, no dating)")
    if model:
        try:
            serving.model_info(model) if Path(model).exists() else None
        except (OSError, ValueError) as e:
            raise SystemExit(f"--model {model}: {e}")
        if not Path(model).exists() and model.count("/") != 1:
            raise SystemExit(f"--model {model}: no such folder (train the demo model with `make demo`), and not "
                             "a Hub id; pass --model '' to start without a default model")
    return Ctx(model_roots=roots or ["runs"], default_model=model or None, corpus=corpus or None,
               batched=not ON_ZEROGPU, gpu=gpu)


def app_roots(ctx: Ctx) -> list[str]:
    """The folders visitors' paths may point into (engine/paths.py): the model roots, data/ (corpus, token
    cache and other outputs), the model and corpus chosen at launch, the shipped manifest, the corpus tab's
    mirror, gradio's upload folder (an uploaded manifest is passed on by its path), and $ANNO_ALLOWED_ROOTS."""
    import gradio.utils

    from engine import paths

    launch_model = ctx.default_model if ctx.default_model and Path(ctx.default_model).exists() else None
    return [*ctx.model_roots, "data", launch_model, ctx.corpus, str(Path(__file__).resolve().parent / "training" /
            "sources.jsonl"), str(corpus_tab.MIRROR_GUESS), gradio.utils.get_upload_folder(), *paths.env_roots()]


def launch(demo: gr.Blocks, host: str, port: int | None, **kw):
    # Generation events share one limit of 4x the batch width, so users reach the batcher together; the
    # queue's max_size must be set explicitly (ZeroGPU silently defaults it to 1).
    return demo.queue(default_concurrency_limit=2, max_size=256).launch(
        server_name=host, server_port=port, css=CSS, **kw)


def start_compile_step(model_name: str, model, threads: int) -> None:
    """Build the compiled decode step's packages for this model (engine/compiled_step.py: ~3x the lean step
    on the demo model) in a separate, low-priority process (`cli.py compile-step`), so the server never waits
    for a compile: its engines run the eager step until each package appears. No-op when the model is not
    compiled (too large, int8, on a GPU, no C++ compiler) or every package exists."""
    import subprocess

    from engine import compiled_step as C

    if C.unsupported(model) is not None:
        return
    missing = [s for s in C.serving_shapes(model, serving.MAX_BATCH) if not C.package_path(model, *s).is_file()]
    if not missing:
        return
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "cli.py"), "compile-step", "--model", model_name,
           "--threads", str(threads), "--max-batch", str(serving.MAX_BATCH)]
    print(f"anno: compiling the decode step for {len(missing)} shape(s) in the background: {' '.join(cmd[1:])}",
          file=sys.stderr)
    subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=lambda: os.nice(10))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"default model: run folder, model folder or Hub id (default {DEFAULT_MODEL}; '' = none)")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS,
                    help=f"built corpus for checks, dating and profiles (default {DEFAULT_CORPUS}; '' = none)")
    ap.add_argument("--models-dir", action="append", default=None, help="folders to list models from (runs)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    # Why: on a 2-core machine a small model decodes faster on one intra-op thread (demo model, the app bench:
    # 225 / 338 / 370 tok/s for 1 / 4 / 8 clients with 1 thread against 119 / 291 / 269 with 2, 2026-11-30),
    # while a 12x768 model's GEMVs gain from the second one. Default: torch's own (one per core).
    ap.add_argument("--threads", type=serving.threads_arg, default=None,
                    help="torch intra-op threads for decoding (default: one per core; 1 is faster for small models "
                         "on 2 cores)")
    ap.add_argument("--no-compile-step", action="store_true",
                    help="do not build the default model's compiled decode step (cli.py compile-step) in the "
                         "background")
    a = ap.parse_args(argv)
    if a.threads is not None:
        import torch

        torch.set_num_threads(a.threads)
    ctx = make_ctx(a.model, a.corpus, a.models_dir)
    print(f"anno: model {ctx.default_model or '(none)'}, corpus {ctx.corpus or '(none: lexicon-only checks)'}",
          file=sys.stderr)
    from training import jobs

    if changed := jobs.reconcile():  # jobs whose process died while no server was watching: now interrupted
        print(f"anno: jobs interrupted since the last start: {', '.join(changed)}", file=sys.stderr)
    from engine import paths

    paths.confine(app_roots(ctx))  # before the first visitor: every path they name stays inside these
    print(f"anno: paths confined to {', '.join(map(str, paths.allowed_roots()))}", file=sys.stderr)
    warm_up(ctx, compile_step=not a.no_compile_step)
    launch(build_app(ctx), a.host, a.port)


if __name__ == "__main__":
    main()

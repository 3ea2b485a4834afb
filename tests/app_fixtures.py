"""Session fixtures for the web-app tests: a tiny trained run folder (a real run.json, so the model card line
has figures), a slow random-init model beside it, and the app launched on a free 127.0.0.1 port with the tiny
run as its default model and the tiny corpus."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from benchmarks.app_launch import api_client  # noqa: F401  (the tests' API clients: one TLS context reused)

CHROMIUM = Path(os.environ.get("ANNO_CHROMIUM", "/usr/bin/chromium"))
# As the machine notes say: without the background-networking flags Chromium keeps trying Google's hosts,
# which this closed network refuses, many at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_run(tiny_corpus, tiny_tokenizer, tmp_path_factory) -> Path:
    """A 4x128 model trained 24 steps on the tiny corpus (seconds): enough for text, not for quality."""
    from training.loop import train
    from training.train_config import TrainConfig

    root = tmp_path_factory.mktemp("app_runs")
    cfg = TrainConfig(preset="tiny", corpus=str(tiny_corpus), tokenizer=str(tiny_tokenizer), out=str(root / "tiny"),
                      tokens_cache=str(root / "tokens"), n_ctx=128, batch_size=4, max_steps=24, eval_every=24,
                      eval_tokens=512, log_every=24, checkpoint_every=24, keep_last=1, lr=3e-3)
    train(cfg, log=lambda m: None)
    return root / "tiny"


@pytest.fixture(scope="session")
def app_url(app_run, slow_model, tiny_corpus):
    """The real app (app.build_app) serving app_run with the tiny corpus; yields its URL."""
    import app
    from engine import serving

    ctx = app.make_ctx(str(app_run), str(tiny_corpus), roots=[str(app_run.parent)])
    demo = app.build_app(ctx)
    port = free_port()
    app.launch(demo, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    serving.close_batchers()


@pytest.fixture(scope="session")
def slow_model(app_run, tiny_tokenizer) -> Path:
    """A random-init 6x384 model with a 1,024-token context beside app_run: greedy decoding runs its full length
    (no <|endoftext|>; checked for 300 tokens), slowly enough on CPU that a Stop lands mid-stream."""
    import torch

    from engine.checkpoint import save_hf_model
    from engine.model import build_model, model_config
    from engine.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer)
    torch.manual_seed(0)
    model = build_model(model_config("small", len(tok), n_ctx=1024), 0, 0, 0)
    files = [p for p in Path(tiny_tokenizer).iterdir() if p.name != "tokenizer_report.json"]
    return save_hf_model(model, app_run.parent / "slow", extra_files=files)


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory):
    """A job registry of the test module's own (the app under test reads ANNO_JOBS_DIR at every call); jobs
    still active at the end are stopped."""
    from training import jobs as J

    d = tmp_path_factory.mktemp("app_jobs")
    before = os.environ.get("ANNO_JOBS_DIR")
    os.environ["ANNO_JOBS_DIR"] = str(d / "jobs")
    yield d
    for j in J.list_jobs():
        if j["state"] in J.ACTIVE:
            J.stop(j["id"])
    os.environ.pop("ANNO_JOBS_DIR") if before is None else os.environ.__setitem__("ANNO_JOBS_DIR", before)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser: no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()

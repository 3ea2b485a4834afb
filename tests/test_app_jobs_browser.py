"""The job tabs in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): start a tiny training
from the Train tab (twice in a row: one run), watch its history grow, reload the page and find the same job
re-attached with its history, stop it (resumable), resume it to the end, and compare the final weights with an
uninterrupted run's; a second browser sees the same job list; the Corpus, Quantize and Evaluate tabs render
their forms. Each test saves a screenshot under data/screenshots/ (look at them)."""
from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file

from test_app_browser import SHOTS, wait_until
from training import jobs as J

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_tab(ctx, url: str, tab: str):
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    pg.goto(url)
    pg.wait_for_selector("#gen-go")
    pg.get_by_role("tab", name=tab).click()
    return pg


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def fill(pg, elem: str, value) -> None:
    box = pg.locator(f"#{elem} textarea, #{elem} input").first
    box.fill(str(value))
    box.press("Tab")


def points(pg) -> int:
    m = re.search(r"History: (\d+) train-loss points", pg.locator("#train-status").inner_text())
    return int(m.group(1)) if m else -1


def plot_ink(pg, elem: str = "train-plot") -> int:
    """Saturated pixels in the plot: the series' lines and legend (axes and grid are grey). Vega draws on a
    canvas, so the page's text cannot say whether a line was drawn; an empty-then-updated plot drew none."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(pg.locator(f"#{elem}").screenshot())).convert("RGB")
    return sum(max(px) - min(px) > 60 for px in img.getdata())


def status_has(pg, text: str) -> bool:
    return text in pg.locator("#train-status").inner_text()


def test_train_tab_start_watch_reload_stop_resume_exact(browser, app_url, jobs_dir, tiny_corpus, tiny_tokenizer):
    from training.loop import train
    from training.train_config import TrainConfig

    run, cache = jobs_dir / "run", jobs_dir / "tokens"
    cfg = TrainConfig(preset="tiny", corpus=str(tiny_corpus), tokenizer=str(tiny_tokenizer), out=str(run),
                      tokens_cache=str(cache), max_steps=300, batch_size=4, n_ctx=32, eval_every=50,
                      checkpoint_every=10, log_every=1, eval_tokens=512)
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = open_tab(ctx, app_url, "Train")
    for elem, v in (("train-corpus", tiny_corpus), ("train-out", run), ("train-steps", 300), ("train-batch", 4),
                    ("train-ctx", 32), ("train-eval", 50), ("train-ckpt", 10)):
        fill(pg, elem, v)
    pg.locator("#train-tok input").fill(str(tiny_tokenizer))
    pg.locator("#train-tok input").press("Enter")
    pg.get_by_text("More settings").click()
    for elem, v in (("train-log-every", 1), ("train-eval-tokens", 512), ("train-tokens-cache", cache)):
        fill(pg, elem, v)
    assert wait_until(lambda: "tokens per step" in pg.locator("#train-figures").inner_text() and
                      "128 tokens per step" in pg.locator("#train-figures").inner_text(), 30)
    pg.locator("#train-start").click()
    pg.locator("#train-start").click()  # a second Start in a row: refused, one run into the folder
    assert wait_until(lambda: pg.locator("#train-job textarea, #train-job input").first.input_value() != "", 60)
    job = pg.locator("#train-job textarea, #train-job input").first.input_value()
    assert wait_until(lambda: points(pg) >= 2, 300), pg.locator("#train-status").inner_text()
    first = points(pg)
    assert wait_until(lambda: points(pg) > first, 120), "the history did not grow"
    assert [j["id"] for j in J.list_jobs() if j["out"] == str(run)] == [job]
    assert wait_until(lambda: plot_ink(pg) > 200, 30), "the loss plot has axes but no line"
    shot(pg, "jobs_train_running")

    pg.reload()  # the page forgets everything but what the browser stored: the job id
    pg.wait_for_selector("#gen-go")
    pg.get_by_role("tab", name="Train").click()
    assert wait_until(lambda: pg.locator("#train-job textarea, #train-job input").first.input_value() == job, 60)
    seen = points(pg)
    assert wait_until(lambda: points(pg) >= max(seen, first), 60) and job in pg.locator("#train-status").inner_text()

    other = browser.new_context(viewport={"width": 1500, "height": 1100})  # a second browser: same job list
    pg2 = open_tab(other, app_url, "Train")
    assert wait_until(lambda: job in pg2.locator("#jobs-table").inner_text(), 60)
    shot(pg2, "jobs_second_browser_list")
    other.close()

    pg.locator("#train-stop").click()
    assert wait_until(lambda: status_has(pg, "**stopped**") or status_has(pg, ": stopped"), 120), \
        pg.locator("#train-status").inner_text()
    s = J.status(job)
    assert s["state"] == "stopped" and s["resumable"] and s["result"]["step"] < 300, s["log_tail"]
    assert wait_until(lambda: "can be resumed" in pg.locator("#train-status").inner_text(), 30)
    shot(pg, "jobs_train_stopped")
    pg.locator("#train-resume").click()
    assert wait_until(lambda: J.status(job)["state"] not in J.ACTIVE + ("stopped",), 600)
    assert J.status(job)["state"] == "done", J.status(job)["log_tail"]
    assert wait_until(lambda: "step 300/300" in pg.locator("#train-status").inner_text(), 30)
    pg.locator("#train-cli").click()
    assert wait_until(lambda: "cli.py train" in pg.locator("#train-cli-line").inner_text(), 30)
    shot(pg, "jobs_train_done")
    ctx.close()

    train(cfg.__class__(**{**cfg.to_dict(), "out": str(jobs_dir / "straight")}), log=lambda m: None)
    a = load_file(run / "model" / "model.safetensors")
    b = load_file(jobs_dir / "straight" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corpus_quantize_evaluate_tabs_show_their_forms(browser, app_url, jobs_dir, tiny_corpus):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = open_tab(ctx, app_url, "Corpus")
    # the app's corpus report is shown on load: words per decade, licences
    assert wait_until(lambda: "documents" in pg.locator("#corpus-summary").inner_text(), 60)
    shot(pg, "jobs_corpus_tab")
    pg.get_by_role("tab", name="Quantize").click()
    pg.wait_for_selector("#quant-go")
    shot(pg, "jobs_quantize_tab")
    pg.get_by_role("tab", name="Evaluate model").click()
    pg.wait_for_selector("#eval-go")
    shot(pg, "jobs_evaluate_tab")
    ctx.close()

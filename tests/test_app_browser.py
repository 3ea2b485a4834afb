"""The web app in headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no browser download):
load it, stream a generation and stop it, see a highlighted anachronism with its explanation, run a 3-year
comparison, judge an uploaded TEI file. Each test saves a screenshot under data/screenshots/ (look at them)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

SHOTS = Path(__file__).resolve().parents[1] / "data" / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.slow]
@pytest.fixture
def page(browser, app_url, request):
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(120_000)
    pg.goto(app_url)
    pg.wait_for_selector("#gen-go")
    yield pg
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{request.node.name}.png"), full_page=True)
    ctx.close()


def value(pg, selector: str) -> str:
    return pg.locator(selector).input_value()


def wait_until(cond, timeout: float = 120, every: float = 0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(every)
    return False


def test_page_loads_with_model_card_and_tabs(page, app_run):
    assert "tiny · 4x128" in page.locator("#model-card").inner_text()
    for name in ("Generate", "Compare eras", "Judge a text"):
        assert page.get_by_role("tab", name=name).is_visible()
    assert str(app_run) == page.locator("#model input").input_value()


def test_generate_streams_then_stop_stops_it(page, slow_model):
    from engine import serving

    page.locator("#model input").fill(str(slow_model))
    page.locator("#model input").press("Enter")
    page.wait_for_function("document.querySelector('#model-card').innerText.includes('6x384')")
    page.locator("#gen-prompt textarea").fill("The king and the")
    page.locator("#gen-sampling").get_by_text("Sampling").click()
    page.locator("#gen-max input[type=number]").fill("1000")
    page.locator("#gen-max input[type=number]").press("Enter")
    page.locator("#gen-temp input[type=number]").fill("0")
    page.locator("#gen-temp input[type=number]").press("Enter")
    page.locator("#gen-go").click()
    assert wait_until(lambda: len(value(page, "#gen-out textarea")) > 20), "no streamed text appeared"
    grown = len(value(page, "#gen-out textarea"))
    page.locator("#gen-stop").click()
    # Stop cancels the request inside the batcher: no row left decoding, and the text stops growing
    assert wait_until(lambda: not any(b.running for b in serving._BATCHERS.values()), timeout=30)
    time.sleep(1.0)
    stopped = value(page, "#gen-out textarea")
    time.sleep(2.0)
    assert value(page, "#gen-out textarea") == stopped and len(stopped) >= grown
    assert len(stopped) < 1000  # 1,000 greedy tokens of this model are far longer (it never ends early)


def test_generated_text_gets_findings_and_a_date(page):
    page.locator("#gen-prompt textarea").fill("The king and the")
    page.locator("#gen-go").click()
    page.wait_for_function("document.querySelector('#gen-date').innerText.includes('Estimated date')")
    assert "per 1,000 words" in page.locator("#gen-date").inner_text()


def test_judge_highlights_an_anachronism_with_its_explanation(page):
    page.get_by_role("tab", name="Judge a text").click()
    page.locator("#judge-text textarea").fill("Upon my return I sent him an email, and he rang me on the "
                                              "telephone before the sermon at Paules.")
    page.locator("#judge-year input").fill("1610")
    page.locator("#judge-go").click()
    page.wait_for_selector("#judge-findings .highlighted")
    marked = page.locator("#judge-findings .highlighted").all_inner_texts()
    assert any("email" in m for m in marked) and any("telephone" in m for m in marked)
    assert not any("sermon" in m for m in marked)
    table = page.locator("#judge-table").inner_text()
    assert "is first recorded" in table and "the text is dated 1610" in table
    assert "Estimated date" in page.locator("#judge-date").inner_text()


def test_compare_three_years(page):
    page.get_by_role("tab", name="Compare eras").click()
    page.locator("#cmp-year-3 input").fill("")
    page.locator("#cmp-year-3 input").press("Tab")
    page.locator("#cmp-lock-1 input").check()
    page.locator("#cmp-go").click()
    for i in range(3):
        page.wait_for_function(f"document.querySelector('#cmp-note-{i}').innerText.includes('per 1,000 words')")
        assert value(page, f"#cmp-out-{i} textarea")
    assert value(page, "#cmp-out-3 textarea") == ""


def test_judge_an_uploaded_tei_file(page, tmp_path):
    tei = tmp_path / "letter.xml"
    tei.write_text('<?xml version="1.0" encoding="UTF-8"?><TEI xmlns="http://www.tei-c.org/ns/1.0"><teiHeader>'
                   '<fileDesc><titleStmt><title>A letter</title></titleStmt></fileDesc></teiHeader><text><body>'
                   '<div type="letter"><p>Moſt honoured Sir, I write to tell you of the newes from the citie, '
                   'where the plague is abated and the markets are full againe.</p><p>I rang him on the '
                   'telephone from the Exchange.</p></div></body></text></TEI>', encoding="utf-8")
    page.get_by_role("tab", name="Judge a text").click()
    page.locator("#judge-upload input[type=file]").set_input_files(str(tei))
    page.wait_for_function("document.querySelector('#judge-text textarea').value.includes('honoured')")
    text = value(page, "#judge-text textarea")
    assert "Most honoured Sir" in text and "ſ" not in text  # read as the corpus reads it: long s -> s
    assert "A letter" not in text  # the TEI header is not text
    page.locator("#judge-year input").fill("1625")
    page.locator("#judge-go").click()
    page.wait_for_selector("#judge-findings .highlighted")
    assert any("telephone" in m for m in page.locator("#judge-findings .highlighted").all_inner_texts())
    assert "Estimated date" in page.locator("#judge-date").inner_text()
    page.locator("#judge-report").get_by_text("judge_report").first.wait_for()  # the JSON report (name and .json are separate spans)


def test_bad_input_in_the_page_is_a_clear_message_and_the_app_keeps_serving(page):
    page.locator("#gen-prompt textarea").fill("")
    page.locator("#gen-go").click()
    page.get_by_text("prompt is empty").first.wait_for()
    page.locator("#gen-prompt textarea").fill("The king")
    page.locator("#gen-year input").fill("3000")
    page.locator("#gen-go").click()
    page.get_by_text("year=3000: must be an integer in [1500, 1859]").first.wait_for()
    page.locator("#gen-year input").fill("1600")
    page.locator("#gen-go").click()  # the next good call succeeds
    assert wait_until(lambda: len(value(page, "#gen-out textarea")) > 0)

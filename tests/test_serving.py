"""engine/serving.py: request checks (field names and ranges), model listing and card line, the shared batcher
per model, and the multi-year comparison (columns equal solo streams; closing it cancels every column)."""
from __future__ import annotations

import json
import threading

import pytest

from engine import serving
from engine.generate import Finished, GenerationConfig, stream

pytestmark = pytest.mark.usefixtures("one_thread")


def test_request_config_accepts_form_values_and_names_bad_fields():
    prompt, cfg = serving.request_config("The king", "1666", None, 50.0, 0, 0, 1, "7")
    assert prompt == "The king" and cfg.year == 1666 and cfg.max_new_tokens == 50 and cfg.seed == 7
    assert cfg.lock_year is None and cfg.temperature == 0
    for args, msg in [(("", 1600), "prompt is empty"), (("a", 1499), "year=1499: must be an integer in [1500, 1859]"),
                      (("a", 1600.5), "year=1600.5"), (("a", True), "year=True"),
                      (("a", 1600, "x"), "lock_year='x'"), (("a", 1600, None, 0), "max_new_tokens=0"),
                      (("a", 1600, None, 10, float("nan")), "temperature=nan"),
                      (("a", 1600, None, 10, 1, -2), "top_k=-2"), (("a", 1600, None, 10, 1, 5, 0), "top_p=0"),
                      (("a", 1600, None, 10, 1, 5, 1, -1), "seed=-1")]:
        with pytest.raises(serving.RequestError) as e:
            serving.request_config(*args)
        assert msg in str(e.value)
    with pytest.raises(serving.RequestError, match=r"max_new_tokens=300: must be an integer in \[1, 256\]"):
        serving.request_config("a", 1600, None, 300, context=256)


def test_find_models_and_card_line(app_run, tmp_path):
    q = tmp_path / "q8"
    q.mkdir()
    (q / "config.json").write_text("{}")
    (q / "quantization.json").write_text(json.dumps({"method": "int8-cpu"}))
    found = serving.find_models([str(app_run.parent), str(tmp_path), str(tmp_path / "absent")])
    kinds = {m["name"]: m["kind"] for m in found}
    assert kinds[str(app_run)] == "run" and kinds[str(q)] == "quantized"
    assert not any(n.endswith(("model", "checkpoints")) for n in kinds)  # a run stands for its own model/
    info = serving.model_info(str(app_run))
    run = json.loads((app_run / "run.json").read_text())
    assert info["params"] == run["params"]["total"] and info["val_bpb"] == run["final_eval"]["val_bpb"]
    line = serving.card_line(info)
    assert line.startswith("tiny · 4x128 ·") and f"{info['val_bpb']:.3f} bits/byte" in line


def test_load_model_errors_name_the_field():
    with pytest.raises(serving.RequestError, match="model is required"):
        serving.load_model("  ")
    with pytest.raises(serving.RequestError, match="precision='fp16': must be one of fp32, int8-cpu"):
        serving.load_model("x", "fp16")


def test_shared_batcher_and_compare_columns_equal_solo_streams(app_run):
    loaded = serving.load_model(str(app_run))
    assert serving.batcher_for(loaded) is serving.batcher_for(loaded)
    years = [1550, 1650, 1750]
    cols = list(serving.compare(loaded, "The king", years, [False, True, False], 5, 16))[-1]
    assert [c.year for c in cols] == years and [c.lock_year for c in cols] == [None, 1650, None]
    for c in cols:
        cfg = GenerationConfig(max_new_tokens=16, temperature=0.8, top_k=50, top_p=0.95, seed=5, year=c.year,
                               lock_year=c.lock_year)
        solo = [e for e in stream(loaded.model, loaded.tokenizer, "The king", cfg) if isinstance(e, Finished)][0]
        assert c.finished is not None and c.text == solo.text


def test_closing_a_comparison_cancels_every_column(app_run):
    loaded = serving.load_model(str(app_run))
    b = serving.batcher_for(loaded)
    stop = threading.Event()
    it = serving.compare(loaded, "The king", [1550, 1650], False, 5, 120, stop_event=stop)
    next(it)
    it.close()
    assert stop.is_set()
    b_steps = b.steps
    deadline = __import__("time").monotonic() + 10
    while b.running and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.01)
    assert b.running == 0 and b.steps - b_steps < 120  # left long before 120 tokens


def test_compare_checks_years_and_locks(app_run):
    loaded = serving.load_model(str(app_run))
    for years, locks, msg in [([1600], False, "give 2 to 4 years"), ([1600] * 5, False, "give 2 to 4"),
                              ([1600, "x"], False, "years[1]='x'"), ([1600, 1700], [True], "lock=[True]")]:
        with pytest.raises(serving.RequestError) as e:
            next(serving.compare(loaded, "The king", years, locks, 1, 8))
        assert msg in str(e.value)

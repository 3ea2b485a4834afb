"""The web app through its public API (gradio_client against the app launched on 127.0.0.1): every named
endpoint, streaming, greedy /generate equal to `cli.py generate`, 4 concurrent clients each getting their solo
text, and bad input answered with a clear message while the app keeps serving."""
from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app_url):
    from app_fixtures import api_client

    return api_client(app_url)


def test_named_endpoints_with_python_parameter_names(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    expect = {"/generate": ["prompt", "year", "lock_year", "max_new_tokens", "temperature", "top_k", "top_p", "seed",
                            "model"],
              "/compare": ["prompt", "years", "lock", "seed", "max_new_tokens", "model"],
              "/check": ["text", "year"], "/date": ["text"], "/profile": ["text", "year"], "/models": []}
    for name, params in expect.items():
        assert name in api, f"{name} missing from {sorted(api)}"
        assert [p["parameter_name"] for p in api[name]["parameters"]] == params
    # UI-only events (timers, toggles, the page's own generate) are private: nothing else is exposed beyond the
    # job and publishing endpoints (tests/test_app_jobs.py, tests/test_publish_tab.py check their parameters)
    jobs = {"/corpus_build", "/train_start", "/job_status", "/job_stop", "/job_resume", "/job_extend", "/jobs",
            "/quantize", "/evaluate", "/publish_preview", "/publish", "/publish_status"}
    assert set(api) == set(expect) | jobs


def test_models_lists_the_run_with_its_card_line(client, app_run):
    models = client.predict(api_name="/models")
    mine = [m for m in models if m["name"] == str(app_run)]
    assert mine and mine[0]["kind"] == "run"
    info = mine[0]["info"]
    assert info["preset"] == "tiny" and info["n_layer"] == 4 and info["vocab"] == 512
    assert f"validation {info['val_bpb']:.3f} bits/byte" in mine[0]["card"]


def test_generate_streams_growing_text_and_greedy_equals_cli(client, app_run):
    job = client.submit(prompt="The king and the", year=1600, max_new_tokens=40, temperature=0,
                        api_name="/generate")
    outs = list(job)
    assert len(outs) >= 2 and outs[0]
    assert all(outs[i + 1].startswith(outs[i]) for i in range(len(outs) - 1)), "streamed text must only grow"
    cli = subprocess.run([sys.executable, "cli.py", "generate", "--model", str(app_run), "--prompt", "The king and the",
                          "--year", "1600", "--max-new-tokens", "40", "--temperature", "0", "--stream"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    assert cli.stdout[:-1] == outs[-1]  # --stream prints the text, then one newline


def test_same_seed_same_text_and_lock_year_accepted(client):
    kw = dict(prompt="The towne", year=1550, max_new_tokens=24, temperature=0.9, seed=11, api_name="/generate")
    assert client.predict(**kw) == client.predict(**kw)
    locked = client.predict(**(kw | {"lock_year": 1560}))
    assert isinstance(locked, str)


def test_four_concurrent_clients_get_their_solo_text(client, app_url):
    from app_fixtures import api_client

    prompts = ["The king", "Upon the river", "The merchant sayd", "In the church of"]
    solo = [client.predict(prompt=p, year=1600 + 50 * i, max_new_tokens=30, temperature=0.7, seed=i,
                           api_name="/generate") for i, p in enumerate(prompts)]

    def one(i):
        c = api_client(app_url)
        return list(c.submit(prompt=prompts[i], year=1600 + 50 * i, max_new_tokens=30, temperature=0.7, seed=i,
                             api_name="/generate"))[-1]

    with ThreadPoolExecutor(4) as ex:
        together = list(ex.map(one, range(4)))
    assert together == solo


def test_compare_streams_columns_and_summarises_them(client):
    job = client.submit(prompt="The king and the", years=[1550, 1700, 1840], lock=[False, True, False], seed=3,
                        max_new_tokens=20, api_name="/compare")
    outs = list(job)
    assert len(outs) >= 2
    last = outs[-1]
    assert [c["year"] for c in last] == [1550, 1700, 1840]
    assert [c["lock_year"] for c in last] == [None, 1700, None]
    assert all(c["finished"] and "per_1000_words" in c and c["date"]["low"] <= c["date"]["high"] for c in last)
    # each column's text equals a solo /generate with that column's settings
    solo = client.predict(prompt="The king and the", year=1700, lock_year=1700, max_new_tokens=20, seed=3,
                          api_name="/generate")
    assert last[1]["text"] == solo


def test_check_date_profile(client):
    r = client.predict(text="He sent me an email about the telephone.", year=1600, api_name="/check")
    words = {f["word"].lower(): f for f in r["findings"]}
    assert {"email", "telephone"} <= set(words)
    f = words["telephone"]
    assert r["year"] == 1600 and f["year"] > 1600 and f["explanation"]
    text = "the king of the towne went to the church and the market with his horse and his sword " * 12
    d = client.predict(text=text, api_name="/date")
    assert d["low"] <= d["year"] <= d["high"] and abs(sum(d["decade_probs"].values()) - 1) < 0.05
    p = client.predict(text=text, year=1600, api_name="/profile")
    assert p["words"] == len(text.split()) and set(p["percentiles"]) <= set(p["metrics"])


@pytest.mark.parametrize("bad,field", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="x" * 100_000), "the limit is 20,000"),
    (dict(year="abc"), "year='abc': must be an integer in [1500, 1859]"),
    (dict(year=3000), "year=3000: must be an integer in [1500, 1859]"),
    (dict(temperature=-1), "temperature=-1: must be a number in [0.001, 5], or 0 (greedy)"),
    (dict(max_new_tokens=10**6), "max_new_tokens=1000000: must be an integer in [1, 128]"),
    (dict(model="nobody/no-such-model-here"), "model="),
    (dict(lock_year=99), "lock_year=99: must be an integer in [1500, 2100]"),
])
def test_bad_generate_input_is_a_clear_message_and_the_app_keeps_serving(client, bad, field):
    from gradio_client.exceptions import AppError

    kw = dict(prompt="The king", year=1600, max_new_tokens=8, temperature=0) | bad
    with pytest.raises(AppError) as e:
        client.predict(**kw, api_name="/generate")
    assert field in str(e.value)
    assert client.predict(prompt="The king", year=1600, max_new_tokens=4, temperature=0, api_name="/generate")


@pytest.mark.parametrize("api,kw,field", [
    ("/check", dict(text="", year=1600), "text is empty"),
    ("/check", dict(text="a telephone", year="soon"), "year='soon'"),
    ("/check", dict(text="a telephone", year=3000), "year=3000: must be an integer in [1000, 2100]"),
    ("/date", dict(text=" "), "text is empty"),
    ("/compare", dict(prompt="The king", years=[1600]), "give 2 to 4 years"),
    ("/compare", dict(prompt="The king", years=[1600, 2000]), "years[1]=2000"),
])
def test_bad_judge_and_compare_input(client, api, kw, field):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        client.predict(**kw, api_name=api)
    assert field in str(e.value)



def test_gpu_decorator_is_a_no_op_off_zerogpu_and_durations_follow_arguments(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    import app
    from ui import compare_tab, generate_tab

    def f(prompt, year):
        yield prompt

    assert app.gpu(generate_tab.duration)(f) is f  # off ZeroGPU: the very same function, generators included
    short = generate_tab.duration("p", 1600, None, 20)
    long = generate_tab.duration("p", 1600, None, 1000)
    assert 15 <= short < long <= 120
    assert compare_tab.duration("p", [1600, 1700], False, 0, 400) > compare_tab.duration("p", [1600, 1700], False, 0, 20)
    assert generate_tab.duration("p", 1600, None, "junk") == generate_tab.duration("p", 1600, None, 200)


@pytest.mark.parametrize("bad", ["0", "abc", "100000"])
def test_threads_flag_out_of_range_is_refused_before_anything_starts(bad, capsys):
    import app

    with pytest.raises(SystemExit):
        app.main(["--threads", bad, "--model", "", "--corpus", ""])
    err = capsys.readouterr().err
    assert "--threads" in err and "must be an integer in [1," in err


def test_compile_step_starts_in_its_own_process_only_when_there_is_something_to_build(monkeypatch):
    """app.start_compile_step launches `cli.py compile-step` at the server's thread count for a small CPU
    model with packages missing, and nothing when they exist or the model is not compiled."""
    import app
    from engine import compiled_step as C
    from engine import serving

    if C.cxx_compiler() is None:
        pytest.skip("no C++ compiler: the compiled step is not offered")
    from engine.model import build_model, model_config

    model = build_model(model_config("tiny", 512, n_ctx=64, n_embd=32, n_head=2, n_layer=1), 0, 0, 0).eval()
    launched = []
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: launched.append((cmd, kw)))
    app.start_compile_step("runs/x", model, 1)
    (cmd, kw), = launched
    assert cmd[1:] == [str(Path(app.__file__).resolve().parent / "cli.py"), "compile-step", "--model", "runs/x",
                       "--threads", "1", "--max-batch", str(serving.MAX_BATCH)]
    assert kw["start_new_session"] and kw["stdin"] is subprocess.DEVNULL
    monkeypatch.setattr(C, "package_path", lambda *a: Path(__file__))  # every package "exists"
    app.start_compile_step("runs/x", model, 1)
    monkeypatch.undo()
    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: launched.append((cmd, kw)))
    monkeypatch.setattr(C, "MAX_WEIGHTS", 10)  # too large to compile
    app.start_compile_step("runs/x", model, 1)
    assert len(launched) == 1

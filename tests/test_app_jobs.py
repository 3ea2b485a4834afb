"""The web app's job endpoints through gradio_client (ui/corpus_tab.py, train_tab.py, quantize_tab.py,
eval_tab.py over training/jobs.py): every endpoint named with its Python parameters, bad input answered with a
message naming the field, a corpus build from a manifest with a bad line, a full tiny train -> quantize ->
evaluate chain, stop -> resume ending with the weights of an uninterrupted run, two clients seeing one job list
and unable to start two runs into one folder, and an app server SIGKILLed while a job trains: a new server shows
the job still running, and a job whose own process is killed shows as interrupted and resumes exactly."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app_fixtures import free_port
from training import jobs as J

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(app_url, jobs_dir):
    from app_fixtures import api_client

    return api_client(app_url)


def train_kw(tiny_corpus, tiny_tokenizer, out, **kw) -> dict:
    """/train_start arguments of a tiny run (seconds on CPU); kw overrides."""
    base = dict(corpus=str(tiny_corpus), tokenizer=str(tiny_tokenizer), out=str(out), preset="tiny", max_steps=12,
                batch_size=4, n_ctx=32, lr=3e-3, eval_every=6, checkpoint_every=4,
                options={"tokens_cache": str(Path(out).parent / "tokens"), "eval_tokens": 512, "log_every": 1,
                         "keep_last": 2})
    return base | kw


def config_of(kw: dict):
    from training.train_config import TrainConfig

    return TrainConfig(**{k: v for k, v in kw.items() if k != "options"}, **kw["options"])


def wait(client, job: str, until, timeout: float = 600) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        s = client.predict(job_id=job, api_name="/job_status")
        if until(s):
            return s
        time.sleep(0.3)
    raise AssertionError(f"timed out: {s['state']} {s['progress']}\n{s['log_tail']}")


def step(s: dict) -> int:
    return (s["progress"] or {}).get("step") or 0


def over(s: dict) -> bool:
    return s["state"] not in J.ACTIVE


def test_job_endpoints_are_named_with_their_python_parameters(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    expect = {"/corpus_build": ["out", "manifest", "mirror", "year_from", "year_to", "london_only", "sources",
                                "val_fraction", "test_fraction", "workers", "strict"],
              "/train_start": ["corpus", "tokenizer", "out", "preset", "max_steps", "batch_size", "n_ctx", "lr",
                               "eval_every", "checkpoint_every", "options"],
              "/job_status": ["job_id"], "/job_stop": ["job_id"], "/job_resume": ["job_id"],
              "/job_extend": ["job_id", "max_steps"], "/jobs": [],
              "/quantize": ["model", "method", "out", "eval_docs", "corpus"],
              "/evaluate": ["model", "suite", "corpus", "out"]}
    for name, params in expect.items():
        assert [p["parameter_name"] for p in api[name]["parameters"]] == params, name


def test_bad_input_gets_a_message_naming_the_field(client, tiny_corpus, tiny_tokenizer, tmp_path):
    from gradio_client.exceptions import AppError

    good = json.loads((tiny_corpus.parent / "m.jsonl").read_text().splitlines()[0])
    bad_manifest = tmp_path / "m.jsonl"
    bad_manifest.write_text(json.dumps(good) + "\n{not json\n")
    a = train_kw(tiny_corpus, tiny_tokenizer, tmp_path / "run")
    cases = [
        ((a | {"max_steps": -5}, "/train_start"), "max_steps=-5 must be an integer >= 1"),
        ((a | {"preset": "huge"}, "/train_start"), "preset='huge' is unknown; allowed: tiny, small, slm, regular"),
        ((a | {"corpus": str(tmp_path)}, "/train_start"), f"corpus={tmp_path} is not a built corpus (no report.json)"),
        (({"out": str(tmp_path / "c"), "manifest": str(bad_manifest), "strict": True}, "/corpus_build"),
         "has 1 bad line(s) and strict is on: manifest line 2 is not valid JSON"),
        (({"out": str(tmp_path / "c"), "year_from": 1900, "year_to": 1800}, "/corpus_build"), "year_from=1900"),
        (({"job_id": "../../etc"}, "/job_status"), "is not a job id"),
        (({"job_id": "20260101-000000-train-abcdef"}, "/job_stop"), "no such job"),
        (({"model": str(tmp_path / "nope")}, "/quantize"), "no such folder"),
        (({"model": str(tmp_path), "suite": "huge"}, "/evaluate"), "suite='huge' is unknown; allowed: quick, full"),
    ]
    for (kw, api_name), message in cases:
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(**kw, api_name=api_name)
    assert not [j for j in client.predict(api_name="/jobs") if j["out"].startswith(str(tmp_path))]  # none recorded


def test_corpus_build_with_a_bad_manifest_line_warns_and_builds(client, tiny_corpus, tmp_path):
    from ui.corpus_tab import report_view

    lines = (tiny_corpus.parent / "m.jsonl").read_text().splitlines()[:8]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n{not json\n")
    s = client.predict(out=str(tmp_path / "corpus"), manifest=str(manifest), mirror=str(tiny_corpus.parent / "src"),
                       val_fraction=0.25, test_fraction=0.0, workers=1, api_name="/corpus_build")
    assert s["kind"] == "corpus" and s["warnings"] == [
        "manifest line 9 is not valid JSON (Expecting property name enclosed in double quotes)"]
    s = wait(client, s["id"], over)
    assert s["state"] == "done" and s["result"]["documents"] == 8, s["log_tail"]
    summary, decades, rejects, licences, _ = report_view(s["out"])
    report = json.loads((tmp_path / "corpus" / "report.json").read_text())
    assert decades["words"].sum() == report["totals"]["words"] == s["result"]["words"]
    assert list(decades["decade"]) == ["1550s", "1560s", "1570s", "1580s"]  # years 1550 + 5 i, i < 8
    assert licences == [["CC0-1.0", 8, report["totals"]["words"]]] and "**8 documents" in summary


def test_train_quantize_evaluate_chain(client, tiny_corpus, tiny_tokenizer, app_run, jobs_dir):
    run = app_run.parent / "chain"  # under the app's model root, so the picker lists what the chain makes
    kw = train_kw(tiny_corpus, tiny_tokenizer, run, n_ctx=256, max_steps=8, eval_every=8, checkpoint_every=8)
    # n_ctx 256: the quick suite generates 150-token era samples (n_ctx 128 fails the job: "max_new_tokens=150")
    s = client.predict(**kw, api_name="/train_start")
    assert s["state"] in ("queued", "running") and s["out"] == str(run)
    s = wait(client, s["id"], over)
    assert s["state"] == "done" and s["result"]["step"] == 8, s["log_tail"]
    assert [m["step"] for m in s["metrics"]["train"]] == list(range(1, 9)) and s["progress"]["fraction"] == 1.0

    q = client.predict(model=str(run), method="int8-cpu", eval_docs=3, api_name="/quantize")
    q = wait(client, q["id"], over)
    assert q["state"] == "done" and q["out"] == str(app_run.parent / "chain-int8-cpu"), q["log_tail"]
    r = json.loads((Path(q["out"]) / "quantization.json").read_text())
    assert q["result"]["perplexity"] == r["perplexity"] and r["perplexity"]["documents"] == 3
    assert r["memory_bytes"]["quantized"] < r["memory_bytes"]["fp32"]
    assert {"name": q["out"], "kind": "quantized"} in [{k: m[k] for k in ("name", "kind")}
                                                        for m in client.predict(api_name="/models")]

    e = client.predict(model=str(run), suite="quick", api_name="/evaluate")
    e = wait(client, e["id"], over, timeout=900)
    assert e["state"] == "done" and e["out"] == str(run / "eval_quick.json"), e["log_tail"]
    report = json.loads((run / "eval_quick.json").read_text())
    assert e["result"] == report["summary"] and report["corpus"] == str(tiny_corpus)
    from ui.eval_tab import century_frame, report_outputs

    rows, centuries, eras, files = report_outputs(e["out"])
    assert ["val_bpb", round(report["summary"]["val_bpb"], 4)] in rows and files[1].endswith("eval_quick.md")
    assert set(centuries["century"]) <= {"1500s", "1600s"} and len(eras) == len(report["era_fidelity"]["per_year"])
    assert century_frame(report)["loss"].between(0, 20).all()
    ids = {j["id"] for j in client.predict(api_name="/jobs")}
    assert {s["id"], q["id"], e["id"]} <= ids


def test_stop_resume_equals_an_uninterrupted_run(client, tiny_corpus, tiny_tokenizer, tmp_path):
    from training.loop import train

    kw = train_kw(tiny_corpus, tiny_tokenizer, tmp_path / "run", max_steps=30)
    straight = train(config_of(kw | {"out": str(tmp_path / "straight")}), log=lambda m: None)
    assert straight["status"] == "completed"
    s = client.predict(**kw, api_name="/train_start")
    # Stop as soon as it runs: progress.json is written every 0.5 s, so waiting for "step >= 2" once let the
    # 30 tiny steps (~3 s) finish before the stop landed (a CI run: "done", not "stopped"). Stopped during its
    # start-up, the loop stops after step 1 (the runner's SIGTERM handler is in place before it records its pid).
    s = wait(client, s["id"], lambda s: s["state"] != "queued")
    assert s["state"] == "running", s["log_tail"]
    assert client.predict(job_id=s["id"], api_name="/job_stop")["state"] in ("stopping", "stopped")
    s = wait(client, s["id"], over)
    assert s["state"] == "stopped" and s["resumable"] and s["result"]["step"] < 30, s["log_tail"]
    s = client.predict(job_id=s["id"], api_name="/job_resume")
    assert s["state"] in ("queued", "running") and s["attempts"] == 2
    s = wait(client, s["id"], over)
    assert s["state"] == "done" and s["result"]["step"] == 30, s["log_tail"]
    a = load_file(tmp_path / "run" / "model" / "model.safetensors")
    b = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    s = client.predict(job_id=s["id"], max_steps=34, api_name="/job_extend")  # explicit, in the same record
    s = wait(client, s["id"], over)
    assert s["state"] == "done" and s["result"]["step"] == 34 and s["attempts"] == 3, s["log_tail"]


def test_two_clients_one_job_list_and_no_second_run_into_one_folder(client, app_url, tiny_corpus, tiny_tokenizer,
                                                                    tmp_path):
    from app_fixtures import api_client
    from gradio_client.exceptions import AppError

    other = api_client(app_url)
    kw = train_kw(tiny_corpus, tiny_tokenizer, tmp_path / "run", max_steps=400)
    s = client.predict(**kw, api_name="/train_start")
    with pytest.raises(AppError, match=re.escape(f"out={tmp_path / 'run'} is being written by job {s['id']}")):
        other.predict(**kw, api_name="/train_start")
    # the same records for both clients; state, started and progress may move between the two calls (a CI run
    # saw the job go from queued to running in between)
    same = ("id", "kind", "out", "created")
    assert [[j[k] for k in same] for j in client.predict(api_name="/jobs")] == \
        [[j[k] for k in same] for j in other.predict(api_name="/jobs")]
    mine = [j for j in other.predict(api_name="/jobs") if j["out"] == str(tmp_path / "run")]
    assert [j["id"] for j in mine] == [s["id"]]
    other.predict(job_id=s["id"], api_name="/job_stop")
    assert wait(client, s["id"], over)["state"] == "stopped"


def _serve(port: int, env: dict, corpus: Path, roots: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "app.py", "--model", "", "--corpus", str(corpus), "--models-dir",
                             str(roots), "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _client_of(port: int, proc: subprocess.Popen, timeout: float = 180):
    from app_fixtures import api_client

    t0 = time.time()
    while time.time() - t0 < timeout:
        assert proc.poll() is None, "the app server exited"
        try:
            return api_client(f"http://127.0.0.1:{port}/")
        except Exception:  # noqa: BLE001  (not listening yet)
            time.sleep(0.5)
    raise AssertionError("the app server did not start")


def test_sigkill_of_the_app_server_leaves_the_job_running_and_shown(tiny_corpus, tiny_tokenizer, tmp_path):
    from training.loop import train

    # `python app.py` confines visitors' paths (engine/paths.py): the tokenizer lives outside its default roots
    env = {**os.environ, "ANNO_JOBS_DIR": str(tmp_path / "jobs"), "ANNO_ALLOWED_ROOTS": str(tiny_tokenizer)}
    kw = train_kw(tiny_corpus, tiny_tokenizer, tmp_path / "run", max_steps=40)
    servers = []
    try:
        servers.append(_serve(port := free_port(), env, tiny_corpus, tmp_path))
        c = _client_of(port, servers[-1])
        s = c.predict(**kw, api_name="/train_start")
        job = s["id"]
        s = wait(c, job, lambda s: step(s) >= 1 or over(s))
        servers[-1].kill()  # SIGKILL: no handler runs, nothing is cleaned up
        servers[-1].wait()
        servers.append(_serve(port := free_port(), env, tiny_corpus, tmp_path))
        c = _client_of(port, servers[-1])
        assert job in [j["id"] for j in c.predict(api_name="/jobs")]
        s = c.predict(job_id=job, api_name="/job_status")
        assert s["state"] in ("running", "done"), s["log_tail"]
        if s["state"] == "running":  # now kill the job's own process: interrupted, and resume is exact
            os.kill(s["pid"], signal.SIGKILL)
            s = wait(c, job, over)
            assert s["state"] == "interrupted" and s["resumable"] and "ended without recording" in s["error"]
            c.predict(job_id=job, api_name="/job_resume")
            s = wait(c, job, over)
        assert s["state"] == "done" and s["result"]["step"] == 40, s["log_tail"]
    finally:
        for p in servers:
            p.kill()
            p.wait()
    straight = tmp_path / "straight"
    train(config_of(kw | {"out": str(straight)}), log=lambda m: None)
    a = load_file(tmp_path / "run" / "model" / "model.safetensors")
    b = load_file(straight / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_zerogpu_path_chains_gpu_chunks_to_the_end(tiny_corpus, tiny_tokenizer, tmp_path, monkeypatch, jobs_dir):
    """ctx.batched False (ZeroGPU): the job runs in this process as chained ctx.gpu calls of ZEROGPU_CHUNK_STEPS
    steps, each resuming from the last checkpoint; the decorator here only counts its calls (no Space)."""
    from ui import train_tab
    from ui.common import Ctx

    calls = []

    def gpu(duration):
        def wrap(fn):
            def call(*a):
                calls.append(duration)
                return fn(*a)
            return call
        return wrap

    monkeypatch.setattr(train_tab, "ZEROGPU_CHUNK_STEPS", 5)
    ctx = Ctx(model_roots=[str(tmp_path)], default_model=None, corpus=str(tiny_corpus), batched=False, gpu=gpu)
    kw = train_kw(tiny_corpus, tiny_tokenizer, tmp_path / "run", max_steps=12)
    job = train_tab.start_training(ctx, {k: v for k, v in kw.items() if k != "options"} | kw["options"])
    t0 = time.time()
    while J.status(job)["state"] in J.ACTIVE and time.time() - t0 < 300:
        time.sleep(0.2)
    s = J.status(job)
    assert s["state"] == "done" and s["result"]["step"] == 12 and calls == [train_tab.ZEROGPU_CHUNK_S] * 3
    assert [m["step"] for m in s["metrics"]["train"]] == list(range(1, 13)) and s["pid"] == os.getpid()

"""The Hub token never leaks: two canary tokens, one as HF_TOKEN (the server owner's) and one typed into the
publish form's token field, go through the real publish flow of the running app against the 127.0.0.1 Hub
stand-in (tests/hub_standin.py): a publish with each, a publish that the Hub refuses mid-way, a dry-run
preview, and a quantize job run meanwhile. Then every place a token could surface is scanned for either canary
(in full, or its secret part after the first 8 characters): every API output, the page config, the publish task
records, every captured log record and all stdout/stderr of the process, every file under the jobs folder (job.json,
log.txt, progress.json), the job's output folder, the run folder, a staged publish folder, and the files the Hub
received. The canaries demonstrably reached the Hub (as Authorization headers), so the scan is not vacuous."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import constants

from engine import hub
from hub_standin import StandIn, new_state

ENV_CANARY = "hf_CANARYenvTOKENenvTOKEN000001"
FIELD_CANARY = "hf_CANARYfieldTOKENfield0000002"
CANARIES = (ENV_CANARY, FIELD_CANARY)


def leaks(blob: str | bytes, where: str) -> list[str]:
    """Where either canary, or its secret part (everything after 'hf_CANAR'), occurs in blob."""
    b = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    return [f"{where}: {c[:9]}…" for c in CANARIES for needle in (c, c[8:]) if needle.encode() in b][:1]


def scan_tree(root: Path) -> list[str]:
    out = []
    for f in sorted(Path(root).rglob("*")):
        if f.is_file() and not f.is_symlink():
            out += leaks(f.read_bytes(), str(f))
    return out


@pytest.fixture
def standin(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", ENV_CANARY)
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS, not xet
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # CI exports HF_HUB_OFFLINE=1; this is 127.0.0.1
    monkeypatch.setattr(hub, "_WHOAMI", {})
    monkeypatch.setenv("ANNO_JOBS_DIR", str(tmp_path / "jobs"))  # the app reads it at every call
    who = {"type": "user", "name": "alice", "orgs": [],
           "auth": {"type": "access_token", "accessToken": {"displayName": "t", "role": "write"}}}
    with StandIn(new_state({ENV_CANARY: who, FIELD_CANARY: who})) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        yield srv


def _wait(client, first: dict, api: str, key: str, done=("done", "failed", "stopped"), limit_s=180) -> list[dict]:
    seen, s, deadline = [first], first, time.monotonic() + limit_s
    while s["state"] not in done and time.monotonic() < deadline:
        time.sleep(0.3)
        s = client.predict(**{key: s["id"]}, api_name=api)
        seen.append(s)
    assert s["state"] in done, s
    return seen


def test_no_token_in_logs_outputs_records_or_files(app_url, app_run, standin, tmp_path, caplog, capfd):
    from app_fixtures import api_client

    from engine.publish import publish
    from ui import publish_tab

    caplog.set_level(logging.DEBUG)
    c = api_client(app_url)
    outputs: list = []
    # a background job meanwhile: its record, log and output are scanned (the server's environment has HF_TOKEN)
    job = c.predict(model=str(app_run), method="int8-cpu", out=str(tmp_path / "q"), eval_docs=0, api_name="/quantize")
    # 1. HF_TOKEN (no token argument), 2. the form's token field
    for token in ("", FIELD_CANARY):
        s = c.predict(model=str(app_run), repo_id=f"alice/anno-{len(token)}", private=True, token=token,
                      api_name="/publish")
        outputs += _wait(c, s, "/publish_status", "task_id")
        assert outputs[-1]["state"] == "done", outputs[-1]
    # 3. a publish the Hub refuses after the token check: its error message is shown, redacted
    standin.state["faults"].append(["POST", r"/api/models/.*/commit/", 403, 10])
    s = c.predict(model=str(app_run), repo_id="alice/anno-refused", token=FIELD_CANARY, api_name="/publish")
    outputs += _wait(c, s, "/publish_status", "task_id")
    assert outputs[-1]["state"] == "failed" and "403" in outputs[-1]["error"], outputs[-1]
    # 4. a rejected token's error, a dry run, the model list, the page config
    with pytest.raises(Exception) as e:
        c.predict(model=str(app_run), repo_id="bob/x", token=FIELD_CANARY + "x", api_name="/publish")
    outputs.append(str(e.value))
    outputs.append(c.predict(model=str(app_run), repo_id="alice/anno-preview", api_name="/publish_preview"))
    outputs.append(c.predict(api_name="/models"))
    job_seen = _wait(c, job, "/job_status", "job_id")
    outputs += job_seen
    outputs.append(c.predict(api_name="/jobs"))
    outputs.append(httpx.get(app_url + "config", timeout=30).text)
    staged = tmp_path / "staged"
    publish(app_run, "alice/anno-staged", dry_run_dir=staged)  # with HF_TOKEN set, as a CLI dry run

    # the canaries did reach the Hub, as headers: the scan below is not vacuous
    auth = {r[2] for r in standin.state["requests"]}
    assert f"Bearer {ENV_CANARY}" in auth and f"Bearer {FIELD_CANARY}" in auth
    assert job_seen[-1]["state"] == "done", job_seen[-1]  # the quantize job finished

    found = leaks(json.dumps(outputs, default=str), "API outputs")
    found += leaks(json.dumps(publish_tab._TASKS, default=str), "publish task records")
    found += leaks("\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records), "log records")
    out, err = capfd.readouterr()
    found += leaks(out, "stdout") + leaks(err, "stderr")
    for folder in (tmp_path / "jobs", tmp_path / "q", app_run, staged):
        found += scan_tree(folder)
    for repo in standin.state["repos"].values():
        for branch in repo["branches"].values():
            for commit in branch:
                found += [x for name, data in commit["files"].items() for x in leaks(data, f"Hub file {name}")]
    found += [x for oid, data in standin.state["lfs"].items() for x in leaks(data, f"Hub LFS object {oid}")]
    assert len(list((tmp_path / "jobs").rglob("job.json"))) == 1 and (staged / "README.md").is_file()
    assert found == [], found


def test_the_scan_finds_a_planted_leak(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "log.txt").write_text(f"Authorization: Bearer {ENV_CANARY[:8]}…{ENV_CANARY[8:]}")
    (tmp_path / "clean.json").write_text(json.dumps({"token": "***"}))
    assert scan_tree(tmp_path) == [f"{tmp_path / 'a' / 'b' / 'log.txt'}: {ENV_CANARY[:9]}…"]
    assert leaks(FIELD_CANARY.encode(), "x") and not leaks("hf_CANAR", "x")

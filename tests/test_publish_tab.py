"""The Publish tab (ui/publish_tab.py) in the running app: the dry-run preview through gradio_client, a publish
through `/publish` + `/publish_status` against tests/hub_standin.py with the token never in any result, task
record or log line, a rejected token failing at once with a redacted message, and the tab in headless
Chromium previewing a card (screenshot under data/screenshots/)."""
from __future__ import annotations

import json
import logging
import time

import pytest
from huggingface_hub import constants

from engine import hub
from hub_standin import StandIn, new_state
from test_app_browser import SHOTS

WRITE = "hf_TABwriteTABwrite00001"
OAUTH = "hf_oauth_VISITORvisitor0002"


@pytest.fixture(scope="module")
def client(app_url):
    from app_fixtures import api_client

    return api_client(app_url)


def test_publish_endpoints_are_named_with_their_python_parameters(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    expect = {"/publish_preview": ["model", "repo_id"], "/publish": ["model", "repo_id", "private", "token"],
              "/publish_status": ["task_id"]}
    for name, params in expect.items():
        assert [p["parameter_name"] for p in api[name]["parameters"]] == params, name


def test_preview_lists_the_staged_files_and_the_card(client, app_run):
    p = client.predict(model=str(app_run), repo_id="anno-org/tiny-preview", api_name="/publish_preview")
    names = {f["name"] for f in p["files"]}
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= names
    assert all(f["bytes"] > 0 for f in p["files"])
    assert p["card"].startswith("---\n") and "anno-org/tiny-preview" in p["card"]


def test_preview_of_a_bad_repo_id_names_the_field(client, app_run):
    with pytest.raises(Exception, match="repo_id="):
        client.predict(model=str(app_run), repo_id="no-slash", api_name="/publish_preview")


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS, not xet
    # CI exports HF_HUB_OFFLINE=1 and huggingface_hub read it at import: the stand-in is on 127.0.0.1
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_WHOAMI", {})
    who = {"type": "user", "name": "alice", "orgs": [],
           "auth": {"type": "access_token", "accessToken": {"displayName": "t", "role": "write"}}}
    visitor = {"type": "user", "name": "vera", "orgs": [], "auth": {"type": "oauth"}}
    with StandIn(new_state({WRITE: who, OAUTH: visitor})) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)  # the app runs in this process: its hub calls go here
        yield srv


def test_publish_pushes_and_never_returns_the_token(client, app_run, standin, caplog):
    from ui import publish_tab

    caplog.set_level(logging.DEBUG)
    s = client.predict(model=str(app_run), repo_id="alice/anno-tiny", private=True, token=WRITE,
                       api_name="/publish")
    seen = [s]
    deadline = time.monotonic() + 120
    while s["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        s = client.predict(task_id=s["id"], api_name="/publish_status")
        seen.append(s)
    assert s["state"] == "done", s["error"]
    head = standin.state["repos"]["alice/anno-tiny"]["branches"]["main"][-1]
    assert head["oid"] in s["commit_url"] and "model.safetensors" in head["files"]
    assert WRITE not in json.dumps(seen) and WRITE not in json.dumps(publish_tab._TASKS)
    assert WRITE not in caplog.text
    # the token did reach the Hub, as a header (the check above is not vacuous)
    assert ("GET", "/api/whoami-v2", f"Bearer {WRITE}") in standin.state["requests"]


def test_a_rejected_token_fails_before_any_work_and_is_redacted(client, app_run, standin):
    bad = "hf_REJECTEDrejected000009"
    with pytest.raises(Exception) as e:
        client.predict(model=str(app_run), repo_id="alice/anno-tiny", token=bad, api_name="/publish")
    assert "401" in str(e.value) and bad not in str(e.value)
    assert not standin.state["repos"]


def test_on_a_space_visitors_never_publish_with_the_owners_hf_token(app_run, standin, monkeypatch):
    from types import SimpleNamespace

    from ui import publish_tab

    monkeypatch.setenv("SPACE_ID", "alice/anno")
    monkeypatch.setenv("HF_TOKEN", WRITE)  # the owner's secret on the Space
    with pytest.raises(ValueError, match="token is required on a Space"):
        publish_tab.start(str(app_run), "vera/anno-tiny")
    # the visitor's sign-in is what gets checked (and its missing scope named), not HF_TOKEN
    sign_in = SimpleNamespace(token=OAUTH, scope="openid profile write-repos")
    with pytest.raises(ValueError, match="lacks the OAuth scope.*manage-repos") as e:
        publish_tab.start(str(app_run), "vera/anno-tiny", oauth_token=sign_in)
    assert OAUTH not in str(e.value)
    assert [r for r in standin.state["requests"] if r[2] == f"Bearer {WRITE}"] == []
    assert not standin.state["repos"]


@pytest.mark.browser
@pytest.mark.slow
def test_browser_preview_shows_the_card(app_url, app_run, browser):
    pg = browser.new_page(viewport={"width": 1500, "height": 1100})
    pg.set_default_timeout(120_000)
    pg.goto(app_url)
    pg.get_by_role("tab", name="Publish").click()
    pg.locator("#pub-repo textarea, #pub-repo input").first.fill("anno-org/tiny-preview")
    pg.locator("#pub-token input").fill(WRITE)
    pg.locator("#pub-preview").click()
    pg.wait_for_function("document.querySelector('#pub-card').innerText.includes('library_name')")
    assert "model.safetensors" in pg.locator("#pub-files").inner_text()
    assert WRITE not in pg.locator("#pub-card").inner_text()
    assert pg.locator("#pub-token input").get_attribute("type") == "password"
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / "test_publish_tab_preview.png"), full_page=True)
    pg.close()

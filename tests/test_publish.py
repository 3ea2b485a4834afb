"""Publishing (engine/publish.py, engine/hub.py's token and upload parts): the dry run's staged folder (loads
with stock transformers, the card's usage snippet runs against it, no token or local path in any file), and
the real huggingface_hub client against tests/hub_standin.py on 127.0.0.1: whoami with roles and scopes,
401, 403 on create, 429 and 500-then-success, a failing commit leaving nothing committed, one commit per
publish. A live test marked `network` runs only with HF_TOKEN."""
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, constants

from engine import hub
from engine.publish import PublishError, find_leaks, publish
from hub_standin import StandIn, new_state

ROOT = Path(__file__).resolve().parents[1]
WRITE = "hf_WRITEwriteWRITE0001"
READ = "hf_READreadREAD00000002"
FINE = "hf_FINEfineFINE00000003"
OAUTH_OK = "hf_oauth_OKokOKokOK0004"
OAUTH_NO = "hf_oauth_NOnoNOnoNO0005"


def _who(name, role=None, orgs=(), kind="access_token", scoped=None):
    auth = {"type": kind}
    if kind == "access_token":
        auth["accessToken"] = {"displayName": "t", "role": role}
        if scoped is not None:
            auth["accessToken"]["fineGrained"] = {"scoped": [{"entity": {"type": "user", "name": n},
                                                             "permissions": p} for n, p in scoped.items()]}
    return {"type": "user", "name": name, "orgs": [{"name": o, "roleInOrg": r} for o, r in orgs], "auth": auth}


@pytest.fixture
def standin(monkeypatch):
    for var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    # the stand-in speaks the LFS protocol, not xet (see its docstring)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    # CI exports HF_HUB_OFFLINE=1 and huggingface_hub read it at import: the stand-in is on 127.0.0.1
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_WHOAMI", {})
    state = new_state({
        WRITE: _who("alice", "write", orgs=[("anno-org", "write"), ("readers", "read")]),
        READ: _who("bob", "read"),
        FINE: _who("carol", "fineGrained", scoped={"carol": ["repo.content.read"]}),
        OAUTH_OK: _who("dave", kind="oauth"), OAUTH_NO: _who("erin", kind="oauth"),
    })
    with StandIn(state) as srv:
        yield srv


def _head(srv, repo, branch="main"):
    return srv.state["repos"][repo]["branches"][branch][-1]


def test_dry_run_stages_a_loadable_folder_whose_card_snippet_runs(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "stage"
    r = publish(tiny_run, "anno/tiny-test", dry_run_dir=out, token=WRITE)
    assert r.commit_url is None and set(r.files) == {p.name for p in out.iterdir()}
    assert set(r.files) == {"README.md", "config.json", "generation_config.json", "model.safetensors",
                            "tokenizer.json", "tokenizer_config.json", "anno_tokenizer.json", "eval_report.json"}
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids("<|endoftext|>") == model.config.eos_token_id == 0
    card = ModelCard.load(out / "README.md")
    assert {e.metric_type: e.metric_value for e in card.data.eval_results} == \
        json.loads((out / "eval_report.json").read_text())["summary"]
    # the usage snippet, executed against the staged folder in a fresh interpreter
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    assert 'repo = "anno/tiny-test"' in snippet
    script = snippet.replace('repo = "anno/tiny-test"', f"repo = {str(out)!r}")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip()  # it printed a continuation
    # nothing local, no token: not in any file (weights headers included)
    assert find_leaks(out, WRITE) == []
    for p in out.iterdir():
        data = p.read_bytes()
        for needle in (WRITE, str(Path.home()), str(tiny_run), str(tmp_path), "/tmp/"):
            assert needle.encode() not in data, (p.name, needle)


def test_find_leaks_catches_paths_and_tokens(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"dir": "/home/someone/runs/x", "t": "hf_abcdefghijkl"}))
    leaks = find_leaks(tmp_path, "hf_abcdefghijkl")
    assert any("the token" in x for x in leaks) and any("absolute path" in x for x in leaks)


def test_publish_one_commit_naming_the_run(tiny_run, standin):
    r = publish(tiny_run, "alice/anno-tiny", token=WRITE, endpoint=standin.url, backoff_s=0.01)
    repo = standin.state["repos"]["alice/anno-tiny"]
    commits = repo["branches"]["main"]
    assert len(commits) == 2 and commits[-1]["oid"] in r.commit_url  # initial + exactly one
    assert commits[-1]["message"].startswith("Publish Anno run 'tiny' (step 12, preset tiny")
    assert set(commits[-1]["files"]) == {".gitattributes", *r.files}
    assert commits[-1]["files"]["model.safetensors"] == (tiny_run / "model" / "model.safetensors").read_bytes()
    assert commits[-1]["files"]["README.md"].decode() == r.card
    reqs = standin.state["requests"]
    assert [p for m, p, _ in reqs if p == "/api/whoami-v2"] == ["/api/whoami-v2"]
    assert any("/info/lfs/objects/batch" in p for _, p, _ in reqs)  # the weights went through LFS
    assert {a for _, p, a in reqs if p.startswith("/api/")} == {f"Bearer {WRITE}"}
    # a second publish of the same token reuses the cached whoami; an org where alice may write works
    publish(tiny_run, "anno-org/tiny", token=WRITE, endpoint=standin.url, private=True, backoff_s=0.01)
    assert [p for _, p, _ in standin.state["requests"]].count("/api/whoami-v2") == 1
    assert standin.state["repos"]["anno-org/tiny"]["private"] is True


def test_revision_branch(tiny_run, standin):
    publish(tiny_run, "alice/anno-tiny", token=WRITE, endpoint=standin.url, revision="v1", backoff_s=0.01)
    repo = standin.state["repos"]["alice/anno-tiny"]
    assert len(repo["branches"]["main"]) == 1 and len(repo["branches"]["v1"]) == 2


@pytest.mark.parametrize("token,repo,message", [
    ("hf_BADbadBADbad0000", "alice/x", r"rejected by .* \(HTTP 401: invalid, expired or revoked\)"),
    (READ, "bob/x", r"the token has the role 'read'; publishing needs the 'write' role"),
    (FINE, "carol/x", r"fine-grained token lacks the permission 'repo.write' on 'carol'"),
    (WRITE, "readers/x", r"has the role 'read' in organisation 'readers'"),
    (WRITE, "strangers/x", r"account 'alice' is not a member of organisation 'strangers'"),
])
def test_bad_tokens_fail_before_any_work(tiny_run, standin, token, repo, message, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(hub.HubAuthError, match=message) as ei:
        publish(tiny_run, repo, token=token, endpoint=standin.url)
    assert [p for _, p, _ in standin.state["requests"]] == ["/api/whoami-v2"]  # nothing but the check
    assert token not in str(ei.value) + caplog.text


def test_oauth_scopes(tiny_run, standin):
    class OAuth:  # the shape of gradio's OAuthToken
        def __init__(self, token, scope):
            self.token, self.scope = token, scope

    with pytest.raises(hub.HubAuthError, match=r"lacks the OAuth scope\(s\) manage-repos"):
        publish(tiny_run, "erin/x", oauth_token=OAuth(OAUTH_NO, "openid profile write-repos"), endpoint=standin.url)
    r = publish(tiny_run, "dave/x", oauth_token=OAuth(OAUTH_OK, "openid profile write-repos manage-repos"),
                endpoint=standin.url, backoff_s=0.01)
    assert r.commit_url and len(standin.state["repos"]["dave/x"]["branches"]["main"]) == 2


def test_token_order(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fromENVfromENV")
    assert hub.resolve_token("hf_argARGargARG").source == "argument"
    assert hub.resolve_token(None, "hf_oauth_xxxxxxxxxx").source == "HF_TOKEN"
    monkeypatch.delenv("HF_TOKEN")
    t = hub.resolve_token(None, "hf_oauth_xxxxxxxxxx")
    assert t.source == "Hugging Face sign-in" and "hf_oauth" not in repr(t)
    with pytest.raises(hub.HubAuthError, match="needs a Hugging Face token"):
        hub.resolve_token(None, None)


def test_403_on_create(tiny_run, standin):
    standin.state["deny_create"].add("anno-org/locked")
    with pytest.raises(hub.HubError, match=r"refused to create or push .*HTTP 403.*'write' role on 'anno-org'"):
        publish(tiny_run, "anno-org/locked", token=WRITE, endpoint=standin.url, backoff_s=0.01)
    assert "anno-org/locked" not in standin.state["repos"]


def test_429_and_500_then_success(tiny_run, standin):
    standin.state["faults"] += [["POST", r"/api/repos/create", 429, 1], ["POST", r"/commit/", 500, 1]]
    r = publish(tiny_run, "alice/flaky", token=WRITE, endpoint=standin.url, backoff_s=0.01)
    paths = [p for m, p, _ in standin.state["requests"] if m == "POST"]
    assert paths.count("/api/repos/create") == 3  # 429, then created, then 409 (exists) on the retry after the 500
    assert sum("/commit/" in p for p in paths) == 2
    commits = standin.state["repos"]["alice/flaky"]["branches"]["main"]
    assert len(commits) == 2 and commits[-1]["oid"] in r.commit_url


def test_failed_commit_leaves_nothing_committed(tiny_run, standin):
    standin.state["faults"].append(["POST", r"/commit/", 503, 99])
    with pytest.raises(hub.HubError, match=r"failed after 3 attempts; nothing was committed.*HTTP 503"):
        publish(tiny_run, "alice/down", token=WRITE, endpoint=standin.url, retries=2, backoff_s=0.01)
    assert len(standin.state["repos"]["alice/down"]["branches"]["main"]) == 1  # only the initial commit


def test_quantized_folder_needs_its_parent(tiny_run, tmp_path):
    from engine.quantize import quantize

    q = tmp_path / "q"
    quantize(tiny_run, "int8-cpu", q, log=lambda m: None)
    with pytest.raises(PublishError, match="pass parent="):
        publish(q, "alice/tiny-int8", dry_run_dir=tmp_path / "s")
    r = publish(q, "alice/tiny-int8", dry_run_dir=tmp_path / "s", parent="alice/anno-tiny")
    assert {"quantization.json", "model.int8.safetensors"} <= set(r.files) and "model.safetensors" not in r.files
    card = ModelCard.load(tmp_path / "s" / "README.md")
    assert card.data.base_model == "alice/anno-tiny" and "https://huggingface.co/alice/anno-tiny" in card.text
    assert "load_any" in card.text and find_leaks(tmp_path / "s") == []
    assert json.loads((tmp_path / "s" / "quantization.json").read_text())["source"] == "model"


def test_cli_publish_dry_run(tiny_run, tmp_path):
    res = subprocess.run([sys.executable, "cli.py", "publish", "--model", str(tiny_run), "--repo-id", "anno/t",
                          "--dry-run", str(tmp_path / "s")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["files"] == sorted(p.name for p in (tmp_path / "s").iterdir())
    bad = subprocess.run([sys.executable, "cli.py", "publish", "--model", str(tiny_run), "--repo-id", "no-slash",
                          "--dry-run", str(tmp_path / "t")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "repo_id='no-slash'" in bad.stderr


@pytest.mark.network
def test_live_hub_dry_token_check():
    """Checks a real token's write access on huggingface.co (no upload): runs only with HF_TOKEN set."""
    if not os.environ.get("HF_TOKEN"):
        pytest.skip("HF_TOKEN is not set")
    if reason := hub.hub_unavailable_reason():
        pytest.skip(f"Hugging Face Hub not available: {reason}")
    ident = hub.whoami(hub.resolve_token())
    assert ident.name
    hub.check_write_access(f"{ident.name}/anno-publish-check")


def test_exports_publish_as_their_own_repos_linking_the_parent(tiny_run, tmp_path):
    pytest.importorskip("ctranslate2")
    from engine.export import export

    for fmt, weights in (("gguf", "model.gguf"), ("ct2", "model.bin")):
        export(tiny_run, fmt, tmp_path / fmt)
        with pytest.raises(PublishError, match=f"is a {fmt} export: pass parent="):
            publish(tmp_path / fmt, f"alice/tiny-{fmt}", dry_run_dir=tmp_path / "x")
        r = publish(tmp_path / fmt, f"alice/tiny-{fmt}", dry_run_dir=tmp_path / f"s-{fmt}", parent="alice/anno-tiny")
        assert weights in r.files and "export.json" in r.files and find_leaks(tmp_path / f"s-{fmt}") == []
        card = ModelCard.load(tmp_path / f"s-{fmt}" / "README.md")
        assert card.data.base_model == "alice/anno-tiny" and card.data.base_model_relation == "quantized"
        assert card.data.eval_results is None  # the parent's numbers are not claimed as the export's own
        assert card.data.library_name == {"gguf": "gguf", "ct2": "ctranslate2"}[fmt]
        assert json.loads((tmp_path / f"s-{fmt}" / "export.json").read_text())["source_path"] == "model"
    # the CTranslate2 card's snippet, run against the staged folder instead of a download
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    script = snippet.replace('snapshot_download("alice/tiny-ct2")', repr(str(tmp_path / "s-ct2")))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr[-2000:]

"""Tests for engine/hub.py against a fake Hugging Face Hub: a ThreadingHTTPServer on 127.0.0.1 (port 0) that
implements the four endpoints huggingface_hub 2.4's snapshot_download uses for a model repo, serving a real
tiny GPT-2 folder saved by engine.checkpoint.save_hf_model. Every request is logged, so which files were
fetched, which revision was asked for and that offline mode makes no request are observed, never timed.

Endpoints (read from huggingface_hub/_snapshot_download.py, hf_api.py, file_download.py, utils/_http.py):
  GET  /api/models/{repo}/revision/{rev}    repo_info: JSON with "id" and "sha" (skipped when rev is a sha)
  GET  /api/models/{repo}/tree/{sha}        list_repo_tree(recursive): [{"type","path","size","oid","lfs"?}]
  HEAD /{repo}/resolve/{sha}/{file}         file metadata: X-Repo-Commit + ETag required, Content-Length;
                                            LFS files also X-Linked-Etag (sha256, names the cache blob) and
                                            X-Linked-Size
  GET  /{repo}/resolve/{sha}/{file}         the bytes
Errors are classified by the X-Error-Code header (RepoNotFound, RevisionNotFound, GatedRepo, EntryNotFound).
"""
from __future__ import annotations

import hashlib
import json
import logging
import pickle
import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch
from huggingface_hub import constants

from engine.checkpoint import TOKENIZER_FILES, load_hf_model, save_hf_model
from engine.hub import ALLOW_PATTERNS, HubError, download_model, hub_available, hub_unavailable_reason
from engine.model import ModelConfig, build_model

SHA_OLD, SHA_MAIN, SHA_PICKLE, SHA_PRIVATE = (c * 40 for c in "abcd")
GOOD_TOKEN = "hf_GOODgoodGOOD1234"
LFS = (".safetensors", ".bin")  # stored with git-lfs on the Hub, as .gitattributes does by default
WANTED = {"config.json", "generation_config.json", "model.safetensors", "README.md", "tokenizer_config.json",
          "special_tokens_map.json", "merges.txt"}


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Hub(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins every handler thread at teardown


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads at shutdown

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, code: int, error_code: str | None, message: str, head: bool, extra: dict | None = None):
        headers = {"Content-Type": "application/json", **(extra or {})}
        if error_code:
            headers["X-Error-Code"] = error_code
        self._send(code, json.dumps({"error": message}).encode(), headers, head)

    def _handle(self, head: bool) -> None:
        st = self.server.state
        path = unquote(urlsplit(self.path).path)
        auth = self.headers.get("Authorization")
        with st["lock"]:
            st["requests"].append((self.command, path, auth))
        if path == "/":
            return self._send(200, b"fake hub", head=head)
        parts = path.strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo_id = "/".join(parts[2:4] if api else parts[:2])
        repo = st["repos"].get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found", head)
        if repo.get("token") and auth != f"Bearer {repo['token']}":
            # Worst case on purpose: the error body echoes the credentials sent, so only redaction in
            # engine/hub.py keeps them out of messages.
            return self._error(401, "RepoNotFound", f"Invalid credentials in Authorization header: {auth}", head)
        if repo.get("gated"):
            return self._error(403, "GatedRepo", "Access to this model is restricted", head)
        kind, rev = (parts[4], parts[5]) if api else (parts[2], parts[3])
        sha = repo["refs"].get(rev, rev)
        if sha not in repo["commits"]:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head)
        files = repo["commits"][sha]
        if api and kind == "revision":
            body = {"id": repo_id, "sha": sha, "private": bool(repo.get("token")),
                    "siblings": [{"rfilename": f} for f in files]}
            return self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)
        if api and kind == "tree":
            entries = []
            for name, data in files.items():
                e = {"type": "file", "path": name, "size": len(data), "oid": _git_oid(data)}
                if name.endswith(LFS):
                    e["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                entries.append(e)
            return self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head)
        if not api and kind == "resolve":
            name = "/".join(parts[4:])
            if name not in files:
                return self._error(404, "EntryNotFound", f"{name} not found", head, {"X-Repo-Commit": sha})
            data = files[name]
            headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_oid(data)}"'}
            if name.endswith(LFS):
                headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                                "X-Linked-Size": str(len(data))})
            return self._send(200, data, headers, head)
        return self._error(404, None, "no such endpoint", head)

    def do_GET(self):
        self._handle(head=False)

    def do_HEAD(self):
        self._handle(head=True)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> tuple[dict[str, bytes], dict[str, torch.Tensor]]:
    """A real tiny model folder (bytes by file name) plus the pickle and junk files the Hub may also hold,
    and the model's state dict to compare a download against."""
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=32, n_ctx=32, vocab_size=256)
    torch.manual_seed(0)
    model = build_model(cfg, 0, 0, 0)
    out = save_hf_model(model, tmp_path_factory.mktemp("hub_src") / "tiny")
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    files.update({
        "README.md": b"# tiny\nversion: main\n",
        "tokenizer_config.json": b'{"model_max_length": 32}',
        "special_tokens_map.json": b'{"eos_token": "<|endoftext|>"}',
        "merges.txt": b"#version: 0.2\nt h\n",
        "model.bin": pickle.dumps({"weights": [1, 2, 3]}),  # pickle: must never be fetched
        "optimizer.pt": pickle.dumps({}),
        "notes/log.txt": b"not needed",
        ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    })
    return files, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def hub(model_files):
    files, _ = model_files
    old = {**files, "README.md": b"# tiny\nversion: old\n"}
    st = {"lock": threading.Lock(), "requests": [], "repos": {
        "anno/tiny": {"refs": {"main": SHA_MAIN}, "commits": {SHA_MAIN: files, SHA_OLD: old}},
        "anno/pickle-only": {"refs": {"main": SHA_PICKLE}, "commits": {SHA_PICKLE: {
            "config.json": files["config.json"], "pytorch_model.bin": files["model.bin"]}}},
        "anno/private": {"refs": {"main": SHA_PRIVATE}, "commits": {SHA_PRIVATE: files}, "token": GOOD_TOKEN},
        "anno/gated": {"refs": {"main": SHA_MAIN}, "commits": {SHA_MAIN: files}, "gated": True},
    }}
    srv = _Hub(("127.0.0.1", 0), _Handler)
    srv.state = st
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    st["url"] = f"http://127.0.0.1:{srv.server_address[1]}"
    yield st
    srv.shutdown()
    srv.server_close()
    thread.join(5)
    assert not thread.is_alive()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No token, endpoint or offline flag leaks in from the machine; huggingface_hub reads HF_HUB_OFFLINE once
    at import into constants, so that copy is reset too."""
    for var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _closed_port_url() -> str:
    with socket.socket() as s:  # bind then close: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _fetched(hub) -> set[str]:
    """File names whose bytes were requested (GET /{repo}/resolve/{sha}/{file})."""
    return {p.split("/resolve/", 1)[1].split("/", 1)[1]
            for m, p, _ in hub["requests"] if m == "GET" and "/resolve/" in p}


def test_download_fetches_only_needed_files_and_loads(hub, model_files, tmp_path):
    files, state = model_files
    folder = download_model("anno/tiny", cache_dir=tmp_path, endpoint=hub["url"])
    assert folder == tmp_path / "models--anno--tiny" / "snapshots" / SHA_MAIN
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == WANTED
    assert _fetched(hub) == WANTED  # model.bin, optimizer.pt, notes/log.txt, .gitattributes: never requested
    assert not any(("model.bin" in p or ".pt" in p) for _, p, _ in hub["requests"])
    for name in WANTED:
        assert (folder / name).read_bytes() == files[name]
    # The cache blob is named by X-Linked-Etag (the LFS sha256), not the git oid: proves the LFS headers are read.
    blob = (folder / "model.safetensors").resolve()
    assert blob.name == hashlib.sha256(files["model.safetensors"]).hexdigest()
    loaded = load_hf_model(folder).state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    # the branch was resolved once, then everything was asked for at the commit sha, anonymously
    assert [p for _, p, _ in hub["requests"] if "/revision/" in p] == ["/api/models/anno/tiny/revision/main"]
    assert all(SHA_MAIN in p for _, p, _ in hub["requests"] if "/revision/" not in p)
    assert {a for _, _, a in hub["requests"]} == {None}


def test_offline_uses_cache_without_requests(hub, model_files, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub["url"])  # the env var route to the endpoint
    first = download_model("anno/tiny", cache_dir=tmp_path)
    n = len(hub["requests"])
    assert n > 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after import: engine.hub reads it at call time
    assert download_model("anno/tiny", cache_dir=tmp_path) == first
    assert len(hub["requests"]) == n
    assert (first / "config.json").read_bytes() == model_files[0]["config.json"]
    with pytest.raises(HubError, match=r"offline \(HF_HUB_OFFLINE is set\) and 'anno/gated'.*not in the local cache"):
        download_model("anno/gated", cache_dir=tmp_path)
    assert hub_available() is False and "HF_HUB_OFFLINE" in hub_unavailable_reason()
    assert len(hub["requests"]) == n


def test_specific_commit_is_requested(hub, tmp_path):
    folder = download_model("anno/tiny", revision=SHA_OLD, cache_dir=tmp_path, endpoint=hub["url"])
    assert folder.name == SHA_OLD
    assert (folder / "README.md").read_text() == "# tiny\nversion: old\n"
    reqs = hub["requests"]
    assert reqs[0] == ("HEAD", "/", None)  # the reachability probe made for sha revisions not in the cache
    paths = [p for _, p, _ in reqs[1:]]
    assert not any("/revision/" in p for p in paths)  # a sha needs no resolving
    assert paths[0] == f"/api/models/anno/tiny/tree/{SHA_OLD}"
    assert all(SHA_OLD in p for p in paths) and not any(SHA_MAIN in p for p in paths)
    n = len(reqs)  # a commit never changes: once cached, no request at all, even with the Hub up
    assert download_model("anno/tiny", revision=SHA_OLD, cache_dir=tmp_path, endpoint=hub["url"]) == folder
    assert len(hub["requests"]) == n


def test_missing_repo(hub, tmp_path):
    with pytest.raises(HubError, match=r"repository 'anno/nope' \(revision 'main'\) not found") as ei:
        download_model("anno/nope", cache_dir=tmp_path, endpoint=hub["url"])
    assert "no token was sent" in str(ei.value)


def test_gated_repo(hub, tmp_path):
    with pytest.raises(HubError, match=r"'anno/gated' \(revision 'main'\) is gated"):
        download_model("anno/gated", cache_dir=tmp_path, endpoint=hub["url"])


def test_unknown_revision(hub, tmp_path):
    with pytest.raises(HubError, match=r"revision not found: 'anno/tiny' \(revision 'v9'\)"):
        download_model("anno/tiny", revision="v9", cache_dir=tmp_path, endpoint=hub["url"])
    with pytest.raises(HubError, match=rf"revision not found: 'anno/tiny' \(revision '{'e' * 40}'\)"):
        download_model("anno/tiny", revision="e" * 40, cache_dir=tmp_path, endpoint=hub["url"])


def test_token_redacted_from_errors_and_logs(hub, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "hf_SECRETxyz"
    with pytest.raises(HubError, match="not found") as ei:
        download_model("anno/private", cache_dir=tmp_path, token=secret, endpoint=hub["url"])
    assert ("GET", "/api/models/anno/private/revision/main", f"Bearer {secret}") in hub["requests"]  # it was sent
    # the server's echo of the credentials reached the message, with the token masked
    assert "a token was sent" in str(ei.value) and "Authorization header: Bearer ***" in str(ei.value)
    text = "".join(traceback.format_exception(ei.value)) + caplog.text
    assert secret not in text and "SECRET" not in text


def test_token_from_argument_or_env(hub, tmp_path, monkeypatch):
    with pytest.raises(HubError, match="no token was sent"):  # no argument, no HF_TOKEN: anonymous
        download_model("anno/private", cache_dir=tmp_path, endpoint=hub["url"])
    folder = download_model("anno/private", cache_dir=tmp_path / "a", token=GOOD_TOKEN, endpoint=hub["url"])
    assert folder.name == SHA_PRIVATE and GOOD_TOKEN not in str(folder)
    monkeypatch.setenv("HF_TOKEN", GOOD_TOKEN)
    assert download_model("anno/private", cache_dir=tmp_path / "b", endpoint=hub["url"]).name == SHA_PRIVATE
    sent = [a for _, p, a in hub["requests"] if "anno/private" in p]
    assert sent[0] is None and set(sent[1:]) == {f"Bearer {GOOD_TOKEN}"}


def test_unreachable_hub_with_empty_cache(tmp_path):
    url = _closed_port_url()
    with pytest.raises(HubError, match=rf"offline \(the Hub at {url} could not be reached\) and 'anno/tiny' "
                                       r"\(revision 'main'\) is not in the local cache"):
        download_model("anno/tiny", cache_dir=tmp_path, endpoint=url)
    assert hub_available(url) is False
    assert "unreachable" in hub_unavailable_reason(url)


def test_unreachable_hub_with_commit_sha_fails_without_retries(tmp_path, caplog):
    # huggingface_hub's tree listing would retry a refused connection 5 times (23 s); the probe stops at once
    url = _closed_port_url()
    with pytest.raises(HubError, match=rf"offline \(the Hub at {url} could not be reached\) and 'anno/tiny' "
                                       rf"\(revision '{SHA_OLD}'\) is not in the local cache"):
        download_model("anno/tiny", revision=SHA_OLD, cache_dir=tmp_path, endpoint=url)
    assert "Retry" not in caplog.text


@pytest.mark.parametrize("revision", [None, SHA_OLD])
def test_unreachable_hub_falls_back_to_cache(hub, tmp_path, revision):
    first = download_model("anno/tiny", revision=revision, cache_dir=tmp_path, endpoint=hub["url"])
    assert download_model("anno/tiny", revision=revision, cache_dir=tmp_path, endpoint=_closed_port_url()) == first


def test_repo_without_safetensors(hub, tmp_path):
    with pytest.raises(ValueError, match=r"no \*\.safetensors.*'pytorch_model.bin'.*safetensors only"):
        download_model("anno/pickle-only", cache_dir=tmp_path, endpoint=hub["url"])
    assert _fetched(hub) == {"config.json"}


@pytest.mark.parametrize("repo_id", ["tiny", "a/b/c", "anno/bad name", "anno/x--y", "anno/.hidden", "anno/naïve",
                                     "", None, "anno/" + "x" * 97])
def test_bad_repo_id(repo_id, tmp_path):
    with pytest.raises(ValueError, match="repo_id="):
        download_model(repo_id, cache_dir=tmp_path, endpoint=_closed_port_url())


def test_bad_revision(tmp_path):
    with pytest.raises(ValueError, match="revision="):
        download_model("anno/tiny", revision=" ", cache_dir=tmp_path, endpoint=_closed_port_url())


def test_hub_available(hub):
    assert hub_available(hub["url"]) is True
    assert hub["requests"] == [("HEAD", "/", None)]


def test_allow_patterns_cover_engine_tokenizer_files():
    from huggingface_hub.utils import filter_repo_objects

    assert list(filter_repo_objects(list(TOKENIZER_FILES), allow_patterns=list(ALLOW_PATTERNS))) == \
        list(TOKENIZER_FILES)


@pytest.mark.network
def test_real_hub_tiny_public_repo(tmp_path):
    reason = hub_unavailable_reason()
    if reason:
        pytest.skip(f"Hugging Face Hub not available: {reason}")
    folder = download_model("hf-internal-testing/tiny-random-gpt2", cache_dir=tmp_path)
    assert any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin"))
    model = load_hf_model(folder)
    assert model.config.model_type == "gpt2"

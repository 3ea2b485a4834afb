"""A STAND-IN for the Hugging Face Hub, for tests only: a ThreadingHTTPServer on 127.0.0.1 that implements just
the endpoints the real `huggingface_hub` 2.4 client calls when engine/hub.py publishes (whoami, create_repo,
create_branch, create_commit through the legacy LFS protocol). It is not the Hub: no git, no xet storage, no
permissions model beyond what the tests configure, no rate limits except the faults a test injects.

Endpoints (read from huggingface_hub/hf_api.py, _commit_api.py, lfs.py, utils/_http.py at 2.4.0):
  GET  /api/whoami-v2                          token -> identity JSON; 401 for an unknown token
  POST /api/repos/create                       {"name","organization","visibility","type"} -> {"url"};
                                               409 (with "url") when it exists
  GET  /api/models/{repo}                      repo info (create_repo(exist_ok) asks after a 401/403); 404 unknown
  POST /api/models/{repo}/branch/{branch}      create a branch at the head of main; 409 exists
  POST /api/validate-yaml                      README front matter check -> {"errors": [], "warnings": []}
  POST /api/models/{repo}/preupload/{rev}      {"files":[{path,sample,size}]} -> uploadMode lfs|regular
  POST /{repo}.git/info/lfs/objects/batch      LFS batch: an upload and a verify action per new object
  PUT  /lfs-upload/{oid}                       the object's bytes (sha256 checked)
  POST /lfs-verify                             {"oid","size"}: 200 when stored
  POST /api/models/{repo}/commit/{rev}         ndjson header/file/lfsFile lines -> {"commitUrl","commitOid"}
  POST /api/spaces/{repo}/hardware             {"flavor"} -> runtime JSON (requested hardware recorded)
Space repos (create_repo type "space" with an "sdk") use the same routes under /api/spaces/ and /spaces/; they are
kept in `state["repos"]` under "spaces/{repo_id}" with their "sdk" (and "hardware" once requested).
The xet upload path is not implemented: tests set huggingface_hub.constants.HF_HUB_DISABLE_XET, which makes the
client use the LFS protocol above (the Hub still accepts it).

Faults: `state["faults"]` is a list of [method, path regex, status, count]; the first `count` matching
requests get that status (429 answers carry Retry-After: 0). Every request is logged in `state["requests"]` as
(method, path, Authorization header).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")  # what the Hub's default .gitattributes stores with LFS


def new_state(tokens: dict[str, dict]) -> dict:
    """tokens: token -> whoami JSON (name, orgs, auth). repos: repo_id -> {"private", "branches": {name: [commit]}}
    where a commit is {"oid", "message", "files": {path: bytes}}."""
    return {"tokens": tokens, "repos": {}, "lfs": {}, "faults": [], "requests": [], "deny_create": set(),
            "lock": threading.Lock()}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    @property
    def st(self) -> dict:
        return self.server.state

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, obj=None, headers: dict | None = None) -> None:
        data = json.dumps(obj if obj is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        self._send(status, {"error": message}, {"X-Error-Code": code} if code else None)

    def _user(self) -> dict | None:
        auth = self.headers.get("Authorization") or ""
        return self.st["tokens"].get(auth[7:]) if auth.startswith("Bearer ") else None

    def _fault(self, method: str, path: str) -> bool:
        with self.st["lock"]:
            for f in self.st["faults"]:
                if f[0] == method and re.search(f[1], path) and f[3] > 0:
                    f[3] -= 1
                    status = f[2]
                    break
            else:
                return False
        self._send(status, {"error": f"injected HTTP {status}"}, {"Retry-After": "0"} if status == 429 else None)
        return True

    def _dispatch(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        body = self._body() if method in ("POST", "PUT") else b""
        self.st["requests"].append((method, path, self.headers.get("Authorization")))
        if self._fault(method, path):
            return
        for m, pattern, fn in ROUTES:
            if m == method and (match := re.fullmatch(pattern, path)):
                return fn(self, body, *match.groups())
        self._error(404, f"stand-in: no route {method} {path}")

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # ------------------------------------------------------------------ endpoints
    def whoami(self, body):
        user = self._user()
        return self._send(200, user) if user else self._error(401, "Invalid credentials in Authorization header")

    def create_repo(self, body):
        user = self._user()
        if user is None:
            return self._error(401, "Invalid credentials in Authorization header")
        req = json.loads(body)
        repo_id = f"{req.get('organization') or user['name']}/{req['name']}"
        key = f"spaces/{repo_id}" if req.get("type") == "space" else repo_id
        if req.get("type") == "space" and not req.get("sdk"):
            return self._error(400, "sdk is required to create a Space")
        if repo_id in self.st["deny_create"]:
            return self._error(403, f"You don't have the rights to create a model under the namespace "
                                    f"\"{repo_id.split('/')[0]}\"")
        with self.st["lock"]:
            if key in self.st["repos"]:  # the Hub's 409 carries the url too; create_repo(exist_ok) reads it
                return self._send(409, {"error": "You already created this model repo",
                                        "url": f"{self.server.url}/{key}"})
            init = {"oid": hashlib.sha1(key.encode()).hexdigest(), "message": "initial commit",
                    "files": {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}}
            self.st["repos"][key] = {"private": req.get("visibility") == "private", "branches": {"main": [init]}}
            if req.get("type") == "space":
                self.st["repos"][key]["sdk"] = req["sdk"]
        self._send(200, {"url": f"{self.server.url}/{repo_id}", "name": repo_id})

    def repo_info(self, body, repo_id):
        repo = self.st["repos"].get(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        self._send(200, {"id": repo_id, "sha": repo["branches"]["main"][-1]["oid"], "private": repo["private"]})

    def create_branch(self, body, repo_id, branch):
        repo = self.st["repos"].get(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        with self.st["lock"]:
            if branch in repo["branches"]:
                return self._error(409, "Reference already exists")
            repo["branches"][branch] = list(repo["branches"]["main"])
        self._send(200, {})

    def validate_yaml(self, body):
        content = json.loads(body)["content"]
        m = re.match(r"---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else None
        except yaml.YAMLError as e:
            return self._error(400, f"Invalid YAML in README.md: {e}")
        if not isinstance(meta, dict):
            return self._error(400, "README.md has no metadata block")
        self._send(200, {"errors": [], "warnings": []})

    def preupload(self, body, repo_id, rev):
        if repo_id not in self.st["repos"]:
            return self._error(404, "Repository not found", "RepoNotFound")
        files = json.loads(body)["files"]
        self._send(200, {"files": [{"path": f["path"], "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES)
                                    else "regular", "shouldIgnore": False, "oid": None} for f in files]})

    def lfs_batch(self, body, repo_id):
        objects = []
        for o in json.loads(body)["objects"]:
            entry = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.st["lfs"]:
                entry["actions"] = {"upload": {"href": f"{self.server.url}/lfs-upload/{o['oid']}"},
                                    "verify": {"href": f"{self.server.url}/lfs-verify"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def lfs_upload(self, body, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "sha256 mismatch")
        self.st["lfs"][oid] = body
        self._send(200, {})

    def lfs_verify(self, body):
        o = json.loads(body)
        ok = o["oid"] in self.st["lfs"] and len(self.st["lfs"][o["oid"]]) == o["size"]
        return self._send(200, {}) if ok else self._error(404, "object not found")

    def commit(self, body, repo_id, rev):
        repo = self.st["repos"].get(repo_id)
        if repo is None:
            return self._error(404, "Repository not found", "RepoNotFound")
        if rev not in repo["branches"]:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        files, header = dict(repo["branches"][rev][-1]["files"]), None
        for line in body.decode().splitlines():
            item = json.loads(line)
            v = item["value"]
            if item["key"] == "header":
                header = v
            elif item["key"] == "file":
                files[v["path"]] = base64.b64decode(v["content"])
            elif item["key"] == "lfsFile":
                if v["oid"] not in self.st["lfs"]:
                    return self._error(422, f"LFS object {v['oid']} was never uploaded")
                files[v["path"]] = self.st["lfs"][v["oid"]]
        oid = hashlib.sha1(body).hexdigest()
        with self.st["lock"]:
            repo["branches"][rev].append({"oid": oid, "message": header["summary"], "files": files})
        self._send(200, {"commitUrl": f"{self.server.url}/{repo_id}/commit/{oid}", "commitOid": oid})


_REPO = r"([^/]+/[^/]+)"
ROUTES = [
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("GET", rf"/api/models/{_REPO}", _Handler.repo_info),
    ("POST", rf"/api/models/{_REPO}/branch/([^/]+)", _Handler.create_branch),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("POST", rf"/api/models/{_REPO}/preupload/([^/]+)", _Handler.preupload),
    ("POST", rf"/{_REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/lfs-upload/([0-9a-f]{64})", _Handler.lfs_upload),
    ("POST", r"/lfs-verify", _Handler.lfs_verify),
    ("POST", rf"/api/models/{_REPO}/commit/([^/]+)", _Handler.commit),
]


def _space(fn):
    """The model-repo handler for the same route under /spaces/: the repo is kept under 'spaces/{repo_id}'."""
    return lambda self, body, repo_id, *rest: fn(self, body, f"spaces/{repo_id}", *rest)


def _hardware(self, body, repo_id):
    repo = self.st["repos"].get(f"spaces/{repo_id}")
    if self._user() is None:
        return self._error(401, "Invalid credentials in Authorization header")
    if repo is None:
        return self._error(404, "Repository not found", "RepoNotFound")
    repo["hardware"] = json.loads(body)["flavor"]
    self._send(200, {"stage": "BUILDING", "hardware": {"current": None, "requested": repo["hardware"]}})


ROUTES += [
    ("GET", rf"/api/spaces/{_REPO}", _space(_Handler.repo_info)),
    ("POST", rf"/api/spaces/{_REPO}/branch/([^/]+)", _space(_Handler.create_branch)),
    ("POST", rf"/api/spaces/{_REPO}/preupload/([^/]+)", _space(_Handler.preupload)),
    ("POST", rf"/spaces/{_REPO}\.git/info/lfs/objects/batch", _space(_Handler.lfs_batch)),
    ("POST", rf"/api/spaces/{_REPO}/commit/([^/]+)", _space(_Handler.commit)),
    ("POST", rf"/api/spaces/{_REPO}/hardware", _hardware),
]


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: dict):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
        self._thread.join(5)

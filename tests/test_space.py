"""The Space export and deploy (engine/space.py): the exported README front matter parsed by huggingface_hub's
SpaceCard and held to the keys the Hub documents; requirements with a ZeroGPU torch and no gradio/spaces, and
enough to import the app with every other distribution blocked; the exported app.py imports `spaces` first;
the exported folder started as a Space starts it (`python app.py`, CPU) answering `/generate` through
gradio_client; deploy through the real huggingface_hub client against tests/hub_standin.py."""
import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard, constants

from engine import hub
from engine.space import SpaceConfig, SpaceError, deploy_space, export_space
from hub_standin import StandIn, new_state

ROOT = Path(__file__).resolve().parents[1]
# Every key of https://huggingface.co/docs/hub/spaces-config-reference ("All the accepted parameters are
# listed below", read 2026-11-29); written out here so the check does not trust engine/space.py's own list.
HUB_SPACE_KEYS = {"title", "emoji", "colorFrom", "colorTo", "sdk", "python_version", "sdk_version",
                  "suggested_hardware", "suggested_storage", "app_file", "app_port", "base_path", "fullWidth",
                  "header", "short_description", "models", "datasets", "tags", "thumbnail", "pinned", "hf_oauth",
                  "hf_oauth_scopes", "hf_oauth_expiration_minutes", "hf_oauth_authorized_org", "disable_embedding",
                  "startup_duration_timeout", "custom_headers", "preload_from_hub", "license"}
WRITE = "hf_SPACEwriteSPACE000001"


@pytest.fixture(scope="module")
def exported(tiny_run, tiny_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("space") / "space"
    r = export_space(SpaceConfig(out=str(out), model=str(tiny_run), corpus=str(tiny_corpus)))
    assert r["model"] == "model" and r["corpus"] == "corpus"
    return out


def test_front_matter_parses_as_a_space_card_with_only_documented_keys(exported):
    card = SpaceCard.load(exported / "README.md")
    meta = card.data.to_dict()
    assert set(meta) <= HUB_SPACE_KEYS, set(meta) - HUB_SPACE_KEYS
    assert (card.data.sdk, card.data.sdk_version, card.data.app_file) == ("gradio", "6.31.0", "app.py")
    assert card.data.python_version in ("3.10", "3.12")  # the Pythons ZeroGPU runs
    assert meta["hf_oauth"] is True and {"write-repos", "manage-repos"} <= set(meta["hf_oauth_scopes"])
    assert "models" not in meta and "preload_from_hub" not in meta  # a bundled model, not a Hub one
    # the Space card is a plain README: the body says what is bundled
    assert "`model/`" in card.text and "`corpus/`" in card.text


def test_requirements_pin_a_zerogpu_torch_and_leave_out_gradio_and_spaces(exported):
    lines = (exported / "requirements.txt").read_text().split()
    pins = dict(line.split("==") for line in lines)
    assert len(pins) == len(lines), "every requirement is an exact pin"
    major, minor = map(int, pins["torch"].split(".")[:2])
    assert (2, 8) <= (major, minor) <= (2, 11)
    assert not {"gradio", "spaces"} & set(pins)
    repo = dict(re.match(r"([\w.-]+)==([^\s#]+)", line).groups()
                for line in (ROOT / "requirements.txt").read_text().splitlines() if re.match(r"[\w.-]+==", line))
    assert all(repo[k] == v for k, v in pins.items() if k != "torch")


def test_exported_app_imports_spaces_first_and_defaults_to_the_bundle(exported):
    tree = ast.parse((exported / "app.py").read_text())
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    first = imports[0]
    assert isinstance(first, ast.Import) and first.names[0].name == "spaces"
    consts = {n.targets[0].id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)}
    assert consts["DEFAULT_MODEL"] == "model" and consts["DEFAULT_CORPUS"] == "corpus"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (exported / "model").iterdir()}
    assert (exported / "corpus" / "report.json").is_file() and any((exported / "corpus" / "train").iterdir())
    assert not list(exported.rglob("__pycache__"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(names) -> set[str]:
    """The distributions these need, with their dependencies (extras left out), as pip would install them."""
    import importlib.metadata as md

    seen, todo = set(), [_norm(n) for n in names]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        try:
            reqs = md.requires(n) or []
        except md.PackageNotFoundError:
            continue
        todo += [_norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in reqs if "extra ==" not in r]
    return seen


def test_requirements_are_enough_to_import_the_app_and_its_job_kinds(exported, tmp_path):
    """A site-packages holding only the Space's requirements plus what the Space image brings (gradio, spaces,
    with their dependencies): the exported app and the modules its job kinds run import there."""
    import importlib.metadata as md

    names = [line.split("==")[0] for line in (exported / "requirements.txt").read_text().split()]
    allowed = _closure(names + ["gradio", "spaces"])
    site = tmp_path / "site"
    site.mkdir()
    for dist in md.distributions():
        if _norm(dist.metadata["Name"]) not in allowed:
            continue
        for f in dist.files or ():
            top = f.parts[0]
            src = Path(dist.locate_file(top))
            if top != ".." and src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
    code = "import app, training.job_runner, training.loop, training.corpus, engine.quantize, evals.suite; print('ok')"
    r = subprocess.run([sys.executable, "-S", "-c", code], cwd=exported, capture_output=True, text=True,
                       timeout=240, env={**os.environ, "PYTHONPATH": str(site)})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
    # and the check can fail: without accelerate, the training loop does not import
    (site / "accelerate").unlink()
    r = subprocess.run([sys.executable, "-S", "-c", "import training.loop"], cwd=exported, capture_output=True,
                       text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(site)})
    assert r.returncode != 0 and "accelerate" in r.stderr


def test_hub_model_is_the_default_and_preloaded(tmp_path):
    out = tmp_path / "s"
    r = export_space(SpaceConfig(out=str(out), model="anno-org/anno-tiny"))
    meta = SpaceCard.load(out / "README.md").data.to_dict()
    assert meta["models"] == ["anno-org/anno-tiny"] and meta["preload_from_hub"] == ["anno-org/anno-tiny"]
    assert r["model"] == "anno-org/anno-tiny" and r["corpus"] is None and not (out / "model").exists()
    assert "DEFAULT_MODEL = 'anno-org/anno-tiny'" in (out / "app.py").read_text()


def test_bad_input_names_the_argument(tmp_path, tiny_run):
    with pytest.raises(SpaceError, match="model='no/such/folder'"):
        export_space(SpaceConfig(out=str(tmp_path / "a"), model="no/such/folder"))
    with pytest.raises(SpaceError, match="corpus=.*not a built corpus"):
        export_space(SpaceConfig(out=str(tmp_path / "b"), model=str(tiny_run), corpus=str(tmp_path)))
    with pytest.raises(SpaceError, match="folder=.*not an exported Space"):
        deploy_space(tmp_path, "alice/anno")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exported_app_starts_and_generates(exported, tmp_path):
    """The exported folder run as the Space runs it (`python app.py`, here on CPU with the repo's venv)."""
    from app_fixtures import api_client

    port = _free_port()
    env = {**os.environ, "ANNO_JOBS_DIR": str(tmp_path / "jobs"), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONPATH": ""}
    log = open(tmp_path / "app.log", "w")
    # --no-compile-step: the background compile (tests/test_app.py checks its launch) would outlive the test
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-compile-step"], cwd=exported,
                            env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        client = None
        while client is None:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the exported app did not start in 180 s"
            try:
                client = api_client(f"http://127.0.0.1:{port}/")
            except Exception:  # noqa: BLE001  (not listening yet)
                time.sleep(1)
        text = client.predict(prompt="It was in the yeare", year=1666, max_new_tokens=12, temperature=0, seed=1,
                              api_name="/generate")
        # the same greedy continuation as the library gives for the bundled model in this process
        from ui.common import Ctx
        from ui.generate_tab import text_stream

        ctx = Ctx(model_roots=[], default_model=str(exported / "model"), corpus=None, batched=False)
        want = list(text_stream(ctx, None, "fp32", "It was in the yeare", 1666, None, 12, 0, 50, 0.95, 1))[-1]
        assert isinstance(text, str) and text and text == want
        info = client.predict(api_name="/models")
        assert isinstance(info, list)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@pytest.fixture
def standin(monkeypatch):
    for var in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in speaks LFS, not xet
    # CI exports HF_HUB_OFFLINE=1 and huggingface_hub read it at import: the stand-in is on 127.0.0.1
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "_WHOAMI", {})
    who = {"type": "user", "name": "alice", "orgs": [],
           "auth": {"type": "access_token", "accessToken": {"displayName": "t", "role": "write"}}}
    with StandIn(new_state({WRITE: who})) as srv:
        yield srv


def test_deploy_creates_a_gradio_space_in_one_commit(exported, standin, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRITE)
    r = deploy_space(exported, "alice/anno", private=True, hardware="zero-a10g", endpoint=standin.url)
    assert WRITE not in json.dumps(r)
    repo = standin.state["repos"]["spaces/alice/anno"]
    assert repo["sdk"] == "gradio" and repo["private"] and repo["hardware"] == "zero-a10g"
    commits = repo["branches"]["main"]
    assert len(commits) == 2 and r["hardware"] == "zero-a10g" and commits[-1]["oid"] in r["commit_url"]
    files = commits[-1]["files"]
    local = {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()}
    assert local | {".gitattributes"} == set(files)
    assert files["model/model.safetensors"] == (exported / "model" / "model.safetensors").read_bytes()
    assert files["README.md"].startswith(b"---\n")
    assert "alice/anno" not in standin.state["repos"]  # a Space, not a model repo


def test_deploy_with_an_unknown_token_fails_before_uploading(exported, standin):
    with pytest.raises(hub.HubAuthError, match="401"):
        deploy_space(exported, "alice/anno", token="hf_NOTaTOKENatALL0000000", endpoint=standin.url)
    assert not standin.state["repos"]
    with pytest.raises(SpaceError, match="hardware='a100'"):
        deploy_space(exported, "alice/anno", token=WRITE, hardware="a100", endpoint=standin.url)

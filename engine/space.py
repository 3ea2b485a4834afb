"""The Hugging Face Space of the Anno app: `export_space` writes a deployable Space folder and `deploy_space`
uploads it as a Space repo (one function per action; `cli.py space export|deploy` call them).

The folder holds README.md (the Space's front matter: gradio SDK pinned to the version the app is tested with,
a Python that ZeroGPU runs, Sign in with Hugging Face with the scopes publishing needs), requirements.txt (a
torch that ZeroGPU supports and the app's run-time packages at the repo's own pins; gradio and spaces are left
out because the Space image installs the `sdk_version` gradio and `spaces` itself), the app code (app.py with
its default model and corpus set to what is bundled, ui/, engine/, evals/, training/), and the model: a local
model is staged into `model/` by engine/publish.py (the same scrubbed, leak-checked files a model repo gets), a
Hub id becomes the default `--model` and is preloaded at build time (`preload_from_hub`, public repos only).
A corpus, when given, is bundled as `corpus/` (report.json and the train and validation splits, which the
anachronism check, the dater and the profile read); without one the Space runs lexicon-only checks.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from engine.checkpoint import atomic_dir

ROOT = Path(__file__).resolve().parents[1]
# Gradio the app is built and tested with (requirements.txt pins gradio==6.31.0); the Space runs the same.
SDK_VERSION = "6.31.0"
# ZeroGPU runs Python 3.10.13 and 3.12.12 only, and torch 2.8.0-2.11.0 (huggingface.co/docs/hub/spaces-zerogpu,
# checked 2026-11; /work/shared/notes/gradio6.md). Locally the repo pins torch 2.13.0, which ZeroGPU lacks.
PYTHON_VERSION = "3.12"
SPACE_TORCH = "torch==2.9.1"
# OAuth scopes for publishing from the Space: write-repos pushes to existing repos, manage-repos creates them.
OAUTH_SCOPES = ("write-repos", "manage-repos")
# The app's run-time packages, pinned as in the repo's requirements.txt. Importing app.py needs the first eight
# (checked by tests/test_space.py with every other distribution blocked); evaluate, rouge_score and sacrebleu
# serve the Evaluate tab, datatrove the Corpus tab (both run as job processes on the Space's CPU).
RUNTIME_PACKAGES = ("transformers", "tokenizers", "safetensors", "huggingface_hub", "accelerate", "psutil", "ftfy",
                    "lxml", "evaluate", "rouge_score", "sacrebleu", "datatrove")
CODE_PACKAGES = ("engine", "evals", "training", "ui")  # training/: the job kinds the app's tabs start
CORPUS_PARTS = ("report.json", "train", "validation")  # what evals/judge.py reads (checks, dating, profile)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
HARDWARE = ("cpu-basic", "cpu-upgrade", "zero-a10g", "t4-small", "t4-medium", "l4x1", "a10g-small", "a10g-large")


class SpaceError(ValueError):
    """Bad input to a Space action; the message names the argument and what it accepts."""


@dataclass(frozen=True)
class SpaceConfig:
    out: str  # the folder to write (replaced atomically)
    model: str  # a run/model folder (bundled as model/) or a Hub id "owner/name" (preloaded)
    corpus: str | None = None  # a built corpus to bundle as corpus/; None: lexicon-only checks
    title: str = "Anno: period language models"
    repo_id: str | None = None  # the Space's id, when known (names the bundled model's card)


def _pins(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line):
            pins[m.group(1).lower().replace("-", "_")] = m.group(2)
    return pins


def requirements() -> list[str]:
    """The Space's requirements.txt lines: ZeroGPU's torch, then the run-time packages at the repo's pins."""
    pins = _pins()
    missing = [p for p in RUNTIME_PACKAGES if p.lower() not in pins]
    if missing:
        raise SpaceError(f"requirements.txt pins none of {', '.join(missing)}: the Space needs exact pins")
    return [SPACE_TORCH] + [f"{p}=={pins[p.lower()]}" for p in RUNTIME_PACKAGES]


def front_matter(cfg: SpaceConfig, hub_model: str | None) -> dict:
    meta = {"title": cfg.title, "emoji": "📜", "colorFrom": "yellow", "colorTo": "gray", "sdk": "gradio",
            "sdk_version": SDK_VERSION, "python_version": PYTHON_VERSION, "app_file": "app.py", "pinned": False,
            "hf_oauth": True, "hf_oauth_scopes": list(OAUTH_SCOPES), "startup_duration_timeout": "1h",
            "short_description": "Period language models of London English, 1500-1850",
            "tags": ["anno", "historical-english", "period-language-model"]}
    if hub_model:
        meta |= {"models": [hub_model], "preload_from_hub": [hub_model]}
    return meta


def _readme(cfg: SpaceConfig, meta: dict, model_line: str, corpus_line: str) -> str:
    body = f"""# {cfg.title}

The Anno workbench as a Space: generate era-conditioned and time-locked text, compare eras, judge a text's
anachronisms and date, train, quantize, evaluate and publish models (see the Anno README).

- Model: {model_line}
- Corpus for checks, dating and profiles: {corpus_line}
- Hardware: ZeroGPU (`zero-a10g`) is chosen in the Space settings, or at deploy time with
  `python cli.py space deploy --repo-id ID --hardware zero-a10g`; ZeroGPU needs a PRO or Enterprise account.
  On CPU hardware everything runs too, more slowly. Generation carries `@spaces.GPU` with a duration derived
  from `max_new_tokens`.
- Publishing from the Publish tab uses the visitor's "Sign in with Hugging Face" token (scopes
  {", ".join(OAUTH_SCOPES)}), or a token pasted into the page; it is never stored or shown.
"""
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def _app_source(model: str, corpus: str) -> str:
    """app.py with its default model and corpus set to the bundled ones (the Space runs `python app.py`)."""
    src = (ROOT / "app.py").read_text(encoding="utf-8")
    for name, value in (("DEFAULT_MODEL", model), ("DEFAULT_CORPUS", corpus)):
        src, n = re.subn(rf'^{name} = "[^"\n]*"', f"{name} = {value!r}", src, count=1, flags=re.M)
        if n != 1:
            raise SpaceError(f"app.py has no line `{name} = \"...\"` to set for the Space")
    return src


def export_space(cfg: SpaceConfig) -> dict:
    """Write the Space folder cfg.out (replaced atomically); returns what went in: files, model, corpus."""
    from engine import hub

    src_model = Path(cfg.model)
    hub_model = None
    if not src_model.exists():
        try:
            hub._check_args(cfg.model, None)
        except ValueError:
            raise SpaceError(f"model={cfg.model!r}: no such folder, and not a Hub id 'owner/name'") from None
        hub_model = cfg.model
    if cfg.corpus and not (Path(cfg.corpus) / "report.json").is_file():
        raise SpaceError(f"corpus={cfg.corpus!r}: not a built corpus (no report.json); build one with "
                         "`cli.py corpus build`, or leave it out for lexicon-only checks")
    with atomic_dir(cfg.out) as out:
        for pkg in CODE_PACKAGES:
            shutil.copytree(ROOT / pkg, out / pkg, ignore=IGNORE)
        if hub_model:
            model_arg, model_line = hub_model, f"[{hub_model}](https://huggingface.co/{hub_model}), preloaded"
        else:
            from engine.publish import publish

            owner = cfg.repo_id.split("/")[0] if cfg.repo_id else "anno"
            name = re.sub(r"[^A-Za-z0-9_.-]", "-", src_model.resolve().name)[:80] or "model"
            publish(src_model, f"{owner}/{name}", dry_run_dir=out / "model")
            model_arg, model_line = "model", f"`model/` (from `{src_model.name}`, bundled)"
        if cfg.corpus:
            for part in CORPUS_PARTS:
                p = Path(cfg.corpus) / part
                if p.is_dir():
                    shutil.copytree(p, out / "corpus" / part, ignore=IGNORE)
                elif p.is_file():
                    (out / "corpus").mkdir(exist_ok=True)
                    shutil.copyfile(p, out / "corpus" / part)
            corpus_arg, corpus_line = "corpus", "`corpus/` (report.json, train and validation splits, bundled)"
        else:
            corpus_arg, corpus_line = "", "none: anachronism checks use the dated lexicon only, dating is off"
        (out / "app.py").write_text(_app_source(model_arg, corpus_arg), encoding="utf-8")
        (out / "requirements.txt").write_text("\n".join(requirements()) + "\n", encoding="utf-8")
        meta = front_matter(cfg, hub_model)
        (out / "README.md").write_text(_readme(cfg, meta, model_line, corpus_line), encoding="utf-8")
        files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    return {"out": str(cfg.out), "model": model_arg, "corpus": corpus_arg or None, "files": len(files),
            "bytes": sum((Path(cfg.out) / f).stat().st_size for f in files), "front_matter": meta}


def deploy_space(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
                 hardware: str | None = None, oauth_token=None, endpoint: str | None = None) -> dict:
    """Upload an exported Space folder as the gradio Space repo_id in one commit (engine/hub.py: the token is
    checked for write access first); with hardware (e.g. "zero-a10g", which needs a PRO or Enterprise
    account) also request it. Returns the commit URL and the requested hardware; never the token."""
    from engine import hub

    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "app.py").is_file():
        raise SpaceError(f"folder={str(folder)!r} is not an exported Space (no README.md/app.py); run "
                         "`cli.py space export --out DIR` first")
    if hardware is not None and hardware not in HARDWARE:
        raise SpaceError(f"hardware={hardware!r} is unknown; allowed: {', '.join(HARDWARE)}")
    tok = hub.check_write_access(repo_id, token, oauth_token, endpoint)
    url = hub.upload_folder_commit(folder, repo_id, tok, commit_message=f"Deploy the Anno Space ({folder.name})",
                                   private=private, endpoint=endpoint, repo_type="space", space_sdk="gradio")
    got = hub.request_space_hardware(repo_id, tok, hardware, endpoint) if hardware else None
    return {"repo_id": repo_id, "commit_url": url, "hardware": got,
            "space_url": f"https://huggingface.co/spaces/{repo_id}"}

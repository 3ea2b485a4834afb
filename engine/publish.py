"""Publishing a run, a model folder, a quantized folder or an export folder (engine/export.py) to the Hugging
Face Hub: the one library function behind `cli.py publish` and the app's Publish tab. Quantized variants and
exports publish as their own repos (or branches), their cards linking the parent repo.

Order of work: check the token's write access (engine/hub.py, one cached whoami) before anything else; stage
exactly the files to upload (weights, configs, tokenizer files, the evaluation report, quantization.json, the
README.md card from engine/card.py) into a temporary folder, with local paths in the copied JSON records
reduced to their last component; refuse to go on if any staged file holds the token, the home folder or
another absolute local path; then either copy the staged folder to dry_run_dir (no request at all) or push it
as one commit (engine/hub.py).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine.card import QUANT_FILE, Records, find_records, render_card
from engine.checkpoint import TOKENIZER_FILES, atomic_dir
from engine.tokenizer import ANNO_FILE

# Weights: single or sharded safetensors (with their index); int8-cpu folders hold model.int8.safetensors.
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
CONFIG_FILES = ("config.json", "generation_config.json")
STAGED_EVAL = "eval_report.json"  # the evaluation report, under a name that says what it is
TEXT_SUFFIXES = (".json", ".md", ".txt", ".jinja")
# Absolute paths of this machine's kinds, as they appear inside JSON/Markdown text (POSIX and Windows).
_ABS_PATH = re.compile(r"(?<![\w.:/])(?:/(?:home|root|tmp|Users|work|mnt|var|opt|srv|data)/|[A-Za-z]:\\)")


class PublishError(ValueError):
    """A folder that cannot be published as it is (missing files, a leak found in a staged file)."""


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    revision: str | None
    files: tuple[str, ...]  # staged file names, sorted
    card: str  # the README.md text
    staged_dir: str | None  # dry_run_dir when dry run
    commit_url: str | None  # None for a dry run


def _scrub(obj):
    """Copy of a JSON record with every absolute local path reduced to its last component."""
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v) for v in obj]
    if isinstance(obj, str) and (os.path.isabs(obj) or obj.startswith("~/") or _ABS_PATH.search(obj)):
        if "\n" not in obj and len(obj) < 4096:
            return Path(obj).name
        return _ABS_PATH.sub("<local>/", obj)
    return obj


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")


def stage(rec: Records, repo_id: str, out: Path, parent: str | None = None) -> list[str]:
    """Write the files to upload for rec into the empty folder out; return their names."""
    if rec.export_dir is not None:  # an export: its own files (model.gguf, or CTranslate2's) + the card
        for f in sorted(rec.export_dir.iterdir()):
            if f.is_file() and f.name != "export.json":
                shutil.copyfile(f, out / f.name)
        _write_json(out / "export.json", _scrub(rec.export))
        (out / "README.md").write_text(str(render_card(rec, repo_id, parent)), encoding="utf-8")
        return sorted(p.name for p in out.iterdir())
    src = rec.model_dir
    weights = sorted({p.name for pat in WEIGHT_PATTERNS for p in src.glob(pat)})
    if not any(w.endswith(".safetensors") for w in weights):
        raise PublishError(f"{src}: no *.safetensors weights to publish")
    missing = [f for f in (*CONFIG_FILES, "tokenizer.json") if not (src / f).is_file()]
    if missing:
        raise PublishError(f"{src}: missing {', '.join(missing)}; publish a folder written by Anno (train/quantize)")
    for name in (*weights, *CONFIG_FILES, *TOKENIZER_FILES, ANNO_FILE):
        if (src / name).is_file():
            if name.endswith(".json"):  # configs may carry local paths (e.g. _name_or_path): scrubbed copies
                _write_json(out / name, _scrub(json.loads((src / name).read_text(encoding="utf-8"))))
            else:
                shutil.copyfile(src / name, out / name)
    if rec.quant:
        _write_json(out / QUANT_FILE, _scrub(rec.quant))
    if rec.eval:
        _write_json(out / STAGED_EVAL, _scrub(rec.eval))
    (out / "README.md").write_text(str(render_card(rec, repo_id, parent)), encoding="utf-8")
    return sorted(p.name for p in out.iterdir())


def find_leaks(folder: Path, token: str | None = None) -> list[str]:
    """'file: what' for every staged file holding the token, an hf_ token, the home folder, this machine's
    working folders or another absolute path. Safetensors files are checked in their JSON header."""
    needles = {"the token": token} if token else {}
    needles |= {"the home folder": str(Path.home()), "the working folder": os.getcwd(),
                "the temp folder": tempfile.gettempdir()}
    leaks = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".safetensors":
            with p.open("rb") as f:
                text = f.read(8 + int.from_bytes(f.read(8), "little")).decode("utf-8", "replace")
        elif p.name.endswith(TEXT_SUFFIXES) or p.name == "merges.txt":
            text = p.read_text(encoding="utf-8", errors="replace")
        else:
            continue
        found = [what for what, s in needles.items() if s and len(s) > 1 and s in text]
        # user tokens are hf_ + 34 letters/digits (oauth: hf_oauth_...); names like hf_hub_download are not
        if re.search(r"hf_(?:oauth_)?[A-Za-z0-9]{20,}", text):
            found.append("a Hugging Face token (hf_...)")
        # tokenizer vocabularies are corpus text, not local details (a token like "/tmp/" is not a path)
        if p.name not in ("merges.txt", "tokenizer.json", "vocab.json") and (m := _ABS_PATH.search(text)):
            found.append(f"an absolute path ({text[m.start():m.start() + 12]}...)")
        leaks += [f"{p.name}: {w}" for w in dict.fromkeys(found)]
    return leaks


def commit_message(rec: Records) -> str:
    run = rec.run or {}
    bits = [f"step {run['step']}" if run.get("step") is not None else None,
            f"preset {run.get('config', {}).get('preset')}" if run.get("config") else None,
            f"{rec.quant['method']} quantization" if rec.quant else None,
            f"{rec.export['format']} export" if rec.export else None,
            f"code {run['code_version']}" if run.get("code_version") else None]
    extra = ", ".join(b for b in bits if b)
    return f"Publish Anno run '{rec.name}'" + (f" ({extra})" if extra else "")


def publish(run_or_model_dir: str | Path, repo_id: str, private: bool = False, token: str | None = None,
            dry_run_dir: str | Path | None = None, revision: str | None = None, *, parent: str | None = None,
            eval_report: str | Path | None = None, corpus_report: str | Path | None = None, oauth_token=None,
            endpoint: str | None = None, retries: int = 4, backoff_s: float = 2.0) -> PublishResult:
    """Publish a run, model, quantized or export folder as the Hub model repo repo_id (at branch
    `revision` when given, e.g. a quantized variant as a branch of its parent's repo).

    dry_run_dir: write the staged folder there (replaced atomically) and make no network request. Otherwise
    the token (argument > HF_TOKEN > oauth_token) is checked for write access first, then the folder is pushed
    in one commit. parent: the repo this model is a quantization/export of (linked from the card)."""
    from engine import hub, paths

    paths.check(run_or_model_dir, "model")  # in the web app: a folder inside its allowed roots, never /etc or ~
    hub._check_args(repo_id, revision)
    if parent is not None:
        hub._check_args(parent, None)
    tok = None if dry_run_dir is not None else hub.check_write_access(repo_id, token, oauth_token, endpoint)
    rec = find_records(run_or_model_dir, eval_report, corpus_report)
    if (rec.quant or rec.export) and parent is None:
        what = f"{rec.quant['method']} quantization" if rec.quant else f"{rec.export['format']} export"
        raise PublishError(f"{run_or_model_dir} is a {what}: pass parent= (--parent) with the repo id of its fp32 "
                           "model, which its card links to")
    if dry_run_dir is None and rec.corpus is None:
        raise PublishError(f"no corpus report found for {run_or_model_dir} (run.json names none, or it is gone): "
                           "pass corpus_report= (--corpus-report) so the card's licence is the corpus's")
    with tempfile.TemporaryDirectory(prefix="anno-publish-") as tmp:
        staged = Path(tmp) / "staged"
        staged.mkdir()
        files = stage(rec, repo_id, staged, parent)
        if leaks := find_leaks(staged, tok.value if tok else token):
            raise PublishError("refusing to publish, staged files hold local details: " + "; ".join(leaks))
        card = (staged / "README.md").read_text(encoding="utf-8")
        if dry_run_dir is not None:
            with atomic_dir(dry_run_dir) as out:
                for f in files:
                    shutil.copyfile(staged / f, out / f)
            return PublishResult(repo_id, revision, tuple(files), card, str(dry_run_dir), None)
        url = hub.upload_folder_commit(staged, repo_id, tok, commit_message=commit_message(rec), private=private,
                                       revision=revision, endpoint=endpoint, retries=retries, backoff_s=backoff_s)
    return PublishResult(repo_id, revision, tuple(files), card, None, url)

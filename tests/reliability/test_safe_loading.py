"""Static safety rules over Anno's own code (engine/, training/, evals/, ui/, app.py, cli.py), read with `ast`
so that a comment or a string mentioning `torch.load(...)` cannot hide or fake a call:
- no pickle, cPickle, dill, joblib or shelve load, and no numpy load with allow_pickle=True;
- every `torch.load` passes `weights_only=True` (a literal, not a variable that could be False);
- `trust_remote_code` is never anything but a literal False (keyword or dict key);
- accelerate's `load_state` (its RNG files are pickles) is called only where a verified checkpoint is loaded:
  training/loop.py, after training/checkpoints.verified_checkpoint has checked every file's sha256.
The scanner itself is checked on planted snippets first, so the rules are known to bite."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("engine", "training", "evals", "ui", "app.py", "cli.py")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "cloudpickle"}
PICKLE_FUNCS = {"load", "loads", "Unpickler", "open"}
LOAD_STATE_ALLOWED = {"training/loop.py"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, from the file's imports (import torch as t; from torch import load as l)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(expr: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(aliases.get(expr.id, expr.id))
    return ".".join(reversed(parts))


def _is_literal(node: ast.AST | None, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def violations(source: str, name: str) -> list[str]:
    """Every rule broken in one file's source, as 'name:line: what'."""
    tree = ast.parse(source, name)
    aliases = _aliases(tree)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = _dotted(node.func, aliases) or ""
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            head, _, last = fn.rpartition(".")
            if head.split(".")[0] in PICKLE_MODULES and last in PICKLE_FUNCS:
                bad.append(f"{name}:{node.lineno}: {fn} (pickle)")
            if fn == "torch.load" and not _is_literal(kw.get("weights_only"), True):
                bad.append(f"{name}:{node.lineno}: torch.load without weights_only=True")
            if fn in ("numpy.load", "np.load") and "allow_pickle" in kw and not _is_literal(kw["allow_pickle"], False):
                bad.append(f"{name}:{node.lineno}: numpy.load with allow_pickle")
            if "trust_remote_code" in kw and not _is_literal(kw["trust_remote_code"], False):
                bad.append(f"{name}:{node.lineno}: trust_remote_code is not False")
            if last == "load_state" and name not in LOAD_STATE_ALLOWED:
                bad.append(f"{name}:{node.lineno}: accelerate load_state outside {sorted(LOAD_STATE_ALLOWED)}")
            if any(k.arg is None for k in node.keywords) and fn.endswith("from_pretrained"):
                for k in node.keywords:  # **{"trust_remote_code": True}
                    if k.arg is None and isinstance(k.value, ast.Dict):
                        bad += _dict_violations(k.value, name)
        elif isinstance(node, ast.Dict):
            bad += _dict_violations(node, name)
    return sorted(set(bad))


def _dict_violations(node: ast.Dict, name: str) -> list[str]:
    return [f"{name}:{node.lineno}: trust_remote_code is not False" for k, v in zip(node.keys, node.values)
            if isinstance(k, ast.Constant) and k.value == "trust_remote_code" and not _is_literal(v, False)]


def scanned_files() -> list[Path]:
    files = []
    for item in SCANNED:
        p = ROOT / item
        files += [p] if p.is_file() else sorted(p.rglob("*.py"))
    return files


def test_the_scanner_catches_planted_violations():
    planted = {
        "import pickle\npickle.load(open('x', 'rb'))\n": ["pickle.load (pickle)"],
        "from pickle import loads as L\nL(b'')\n": ["pickle.loads (pickle)"],
        "import joblib\njoblib.load('m.joblib')\n": ["joblib.load (pickle)"],
        "import torch\ntorch.load('x.pt')\n": ["torch.load without weights_only=True"],
        "import torch as t\nt.load('x.pt', weights_only=False)\n": ["torch.load without weights_only=True"],
        "from torch import load\nflag = True\nload('x.pt', weights_only=flag)\n": ["torch.load without weights_only"],
        "import numpy as np\nnp.load('a.npy', allow_pickle=True)\n": ["numpy.load with allow_pickle"],
        "from transformers import AutoModel\nAutoModel.from_pretrained('p', trust_remote_code=True)\n":
            ["trust_remote_code is not False"],
        "kw = {'trust_remote_code': True}\n": ["trust_remote_code is not False"],
        "M.from_pretrained('p', **{'trust_remote_code': 1})\n": ["trust_remote_code is not False"],
        "accelerator.load_state('ckpt')\n": ["accelerate load_state outside"],
    }
    for src, expect in planted.items():
        found = violations(src, "planted.py")
        assert len(found) == len(expect) and all(e in f for e, f in zip(expect, found)), (src, found)
    clean = ("import torch\n# torch.load('x.pt') in a comment\ns = \"pickle.load(f)\"\n"
             "torch.load('x.pt', map_location='cpu', weights_only=True)\n"
             "M.from_pretrained('p', trust_remote_code=False)\nmodel.load_state_dict({})\n")
    assert violations(clean, "clean.py") == []


def test_anno_code_has_no_unsafe_loading():
    files = scanned_files()
    assert len(files) > 60 and ROOT / "engine" / "checkpoint.py" in files  # the scan really covers the code
    bad = [v for f in files for v in violations(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert bad == [], "\n".join(bad)


def test_load_state_is_called_only_after_verification():
    """The one load_state call sits in the function that took its checkpoint from verified_checkpoint."""
    src = (ROOT / "training" / "loop.py").read_text(encoding="utf-8")
    tree = ast.parse(src)
    holders = [fn for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
               and any(isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute) and c.func.attr == "load_state"
                       for c in ast.walk(fn))]
    assert len(holders) == 1
    called = {c.func.attr if isinstance(c.func, ast.Attribute) else getattr(c.func, "id", None)
              for c in ast.walk(holders[0]) if isinstance(c, ast.Call)}
    assert "verified_checkpoint" in called, sorted(c for c in called if c)

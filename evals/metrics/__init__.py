"""Anno's local `evaluate` metric modules (one folder each: <name>/<name>.py) and `load_metric`, which loads
one by name from this folder -- never from the Hugging Face Hub, so it works offline.

rouge/ and bleu/ wrap the reference implementations (rouge_score, sacrebleu); anachronism_rate/ and
era_fidelity/ wrap evals.anachronism.check and evals.dating.date.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the metric modules in this folder."""
    return sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def metric_path(name: str) -> Path:
    names = available()
    if name not in names:
        raise ValueError(f"metric {name!r} is not one of Anno's local metrics {names} (folder {METRICS_DIR})")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs) -> "evaluate.EvaluationModule":
    """evaluate.load() of a local metric folder (kwargs go to evaluate.load). keep_in_memory defaults to True:
    these metrics run in one process, so evaluate need not write its Arrow cache files."""
    path = metric_path(name)
    import evaluate  # imported here: `import evaluate` takes ~10 s on this machine (it imports transformers)

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(path), **kwargs)

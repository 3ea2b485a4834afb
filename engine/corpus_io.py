"""Reading a built corpus (the folder `cli.py corpus build` writes): its report and its documents.

Lives in engine/ because evaluators (evals/) read the corpus too and must not import training/; building
the corpus stays in training/."""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

# train: everything fitted (tokenizer, model, first-seen table, dating model); validation: tuning and early
# stopping; test: reported figures only. Whole sources per split (training/splits.py); a corpus built
# before the test split existed simply has no test/ folder (iter_documents yields nothing).
SPLITS = ("train", "validation", "test")


class CorpusError(Exception):
    """A corpus cannot be built or read (nothing selected, --strict with errors, not a corpus folder)."""


def read_jsonl_dir(folder: Path) -> Iterator[dict]:
    """Every JSON line of every *.jsonl / *.jsonl.gz file of a folder, files in name order."""
    for f in sorted(folder.glob("*.jsonl*")) if folder.exists() else []:
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def load_report(corpus_dir: str | Path) -> dict:
    path = Path(corpus_dir) / "report.json"
    if not path.exists():
        raise CorpusError(f"{corpus_dir} is not a built corpus (no report.json); run `cli.py corpus build` first")
    return json.loads(path.read_text(encoding="utf-8"))


def iter_documents(corpus_dir: str | Path, split: str = "train") -> Iterator[dict]:
    """Documents of one split in a stable order (shard by shard)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {SPLITS}")
    load_report(corpus_dir)
    yield from read_jsonl_dir(Path(corpus_dir) / split)

"""Corpus build throughput: the full shared mirror (197 sources) built with 1 and with 2 workers, side by
side in one run. Prints one JSON object: MB/s of raw input and documents/s for each, and the speed-up."""
from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.corpus import CorpusConfig, build_corpus  # noqa: E402


def run(workers: int, mirror: str, tmp: Path) -> dict:
    cfg = CorpusConfig(manifest=str(ROOT / "training/sources.jsonl"), mirror=mirror, out=str(tmp / f"w{workers}"),
                       cache_dir=str(tmp / "cache"), workers=workers)
    t = time.perf_counter()
    report = build_corpus(cfg)
    seconds = time.perf_counter() - t
    tot = report["totals"]
    return {"workers": workers, "seconds": round(seconds, 2), "input_mb": round(tot["input_bytes"] / 1e6, 2),
            "mb_per_s": round(tot["input_bytes"] / 1e6 / seconds, 3), "documents": tot["documents"],
            "documents_per_s": round(tot["documents"] / seconds, 2), "words": tot["words"],
            "texts_kept": tot["texts_kept"], "stages_s": report["timings_s"]}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    mirror = os.environ.get("ANNO_MIRROR", str(ROOT.parent / "shared" / "corpus"))
    if not Path(mirror, "sources.jsonl").exists():
        sys.exit(f"no corpus mirror at {mirror} (set ANNO_MIRROR)")
    with tempfile.TemporaryDirectory() as d:
        one, two = run(1, mirror, Path(d)), run(2, mirror, Path(d))
    print(json.dumps({"benchmark": "corpus_build", "cpus": os.cpu_count(), "workers_1": one, "workers_2": two,
                      "ratios": {"speedup_2_vs_1": round(one["seconds"] / two["seconds"], 3)}}))


if __name__ == "__main__":
    main()

"""Evaluator benchmarks. Anachronism check throughput: evals.anachronism.check over the real validation
split of a built corpus (every document against its own year, and the whole split against 1600), with and
without the corpus first-seen table; resource load time; and the traced memory peak of checking one 10 MB
text. Prints one JSON object. Words are whitespace-separated tokens. Wall time on a shared machine is
noisy, so CPU time (time.process_time) is reported beside it.

  python benchmarks/evals.py [--corpus data/corpus] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.corpus_io import iter_documents  # noqa: E402
from engine.firstseen import _load_cached  # noqa: E402
from evals.anachronism import CheckConfig, _resources, check  # noqa: E402


def _timed(fn, repeat: int) -> tuple[float, float, object]:
    """Best-of-`repeat` (wall seconds, CPU seconds, last result)."""
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - w), min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def anachronism(corpus: str, repeat: int) -> dict:
    docs = [(d["text"], int(d["year"])) for d in iter_documents(corpus, "validation")]
    n_words = sum(len(t.split()) for t, _ in docs)
    joined = "\n\n".join(t for t, _ in docs)
    result = {"validation_words": n_words, "validation_chars": len(joined)}
    for name, cfg in (("with_corpus", CheckConfig(corpus_dir=corpus)), ("lexicon_only", CheckConfig(corpus_dir=None))):
        _resources.cache_clear()
        _load_cached.cache_clear()  # load_s: read the cached table file and compile the matcher
        wall, cpu, _ = _timed(lambda: _resources(cfg), 1)
        own_wall, own_cpu, found = _timed(lambda: sum(len(check(t, y, cfg)) for t, y in docs), repeat)
        all_wall, all_cpu, found_1600 = _timed(lambda: len(check(joined, 1600, cfg)), repeat)
        result[name] = {
            "load_s": round(wall, 3), "load_cpu_s": round(cpu, 3),
            "own_year_words_per_s_wall": round(n_words / own_wall),
            "own_year_words_per_s_cpu": round(n_words / own_cpu),
            "own_year_findings": found,
            "at_1600_words_per_s_wall": round(n_words / all_wall),
            "at_1600_words_per_s_cpu": round(n_words / all_cpu),
            "at_1600_findings": found_1600,
        }
    cfg = CheckConfig(corpus_dir=corpus)
    big = (joined * (10_000_000 // len(joined) + 1))[:10_000_000]
    check("warm up", 1600, cfg)
    tracemalloc.start()
    w = time.perf_counter()
    found = check(big, 1600, cfg)
    wall = time.perf_counter() - w
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    result["ten_mb"] = {"chars": len(big), "findings": len(found), "seconds_wall_traced": round(wall, 2),
                        "traced_peak_mb": round(peak / 1e6, 2)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(ROOT / "data" / "corpus"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not Path(args.corpus, "report.json").exists():
        sys.exit(f"no built corpus at {args.corpus} (run `cli.py corpus build`)")
    print(json.dumps({"benchmark": "evals", "cpus": os.cpu_count(),
                      "anachronism": anachronism(args.corpus, args.repeat)}))


if __name__ == "__main__":
    main()

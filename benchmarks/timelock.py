"""Time-locked decoding on the trained demo model: anachronism findings per 1,000 words over 200 sampled
generations from the 1600s era token with lock_year=1600 and without, and the perplexity cost on real
validation text dated up to 1600. Prints one JSON object (the acceptance figure is locked < 0.1)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.loading import load  # noqa: E402
from evals.timelock_eval import timelock_report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "runs/tiny"))
    ap.add_argument("--corpus", default=str(ROOT / "data/corpus"))
    ap.add_argument("--year", type=int, default=1600)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--new-tokens", type=int, default=60)
    args = ap.parse_args()
    m = load(args.model)
    r = timelock_report(m.model, m.tokenizer, args.corpus, args.year, args.samples, args.new_tokens)
    r["ratios"] = {"locked_vs_unlocked_findings": round(r["locked"]["findings_per_1000_words"] /
                                                        max(r["unlocked"]["findings_per_1000_words"], 1e-9), 4)}
    print(json.dumps(r))


if __name__ == "__main__":
    main()

"""Historical and era probes for a model.

* Probes (evals/probes.json): a prompt set in a dated moment is continued with that decade's era token;
  scored by whether expected words of the moment appear, whether forbidden (later) words appear, and the
  anachronism detector's findings at the probe's year. All word matching is whole-word.
* Era fidelity: generate from the era token of year Y alone, date the text with the dating model, and
  report |estimate - Y| per Y (`cli.py era-fidelity`; the quick suite runs it at ERA_YEARS).
Texts are kept in the result so that a reader can judge them too."""
from __future__ import annotations

import json
import re
import statistics
from functools import lru_cache
from pathlib import Path

from engine.generate import Finished, GenerationConfig, stream

PROBES_FILE = Path(__file__).with_name("probes.json")
_WORDS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


@lru_cache(maxsize=256)
def _word_pattern(term: str) -> re.Pattern:
    parts = [re.escape(p) for p in re.split(r"[\s-]+", term.strip())]
    return re.compile(r"(?<![^\W\d_])" + r"[\s-]+".join(parts) + r"(?![^\W\d_])", re.IGNORECASE)


def has_word(text: str, term: str) -> bool:
    """Whole-word, case-insensitive; a multiword term may be spaced or hyphenated ("steam-engine")."""
    return _word_pattern(term).search(text) is not None


def count_words(text: str) -> int:
    return len(_WORDS.findall(text))


def load_probes(path: str | Path = PROBES_FILE) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["probes"]


def _generate(model, tok, prompt: str, cfg: GenerationConfig) -> str:
    return next(ev for ev in stream(model, tok, prompt, cfg) if isinstance(ev, Finished)).text


def run_probes(model, tok, probes: list[dict] | None = None, samples: int = 2, max_new_tokens: int = 60,
               seed: int = 0, lock: bool = False) -> dict:
    """Per probe and overall: share of samples with an expected word, forbidden words and detector findings
    per 1,000 generated words. lock=True generates with lock_year = the probe's year."""
    from evals.anachronism import check

    probes = load_probes() if probes is None else probes
    rows, words, hits, forbidden, findings = [], 0, 0, 0, 0
    for p in probes:
        texts = []
        for i in range(samples):
            cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, top_p=0.95,
                                   seed=seed + i, year=p["year"], lock_year=p["year"] if lock else None)
            texts.append(_generate(model, tok, p["prompt"], cfg))
        n = sum(count_words(t) for t in texts)
        h = sum(any(has_word(t, w) for w in p["expected"]) for t in texts)
        f = sum(has_word(t, w) for t in texts for w in p["forbidden"])
        found = [f"{x.word} ({x.year})" for t in texts for x in check(t, p["year"])]
        rows.append({"id": p["id"], "year": p["year"], "prompt": p["prompt"], "expected_rate": h / samples,
                     "forbidden_hits": f, "findings": found, "texts": texts})
        words, hits, forbidden, findings = words + n, hits + h, forbidden + f, findings + len(found)
    per_k = 1000 / max(words, 1)
    return {"probes": len(probes), "samples_per_probe": samples, "words": words, "locked": lock,
            "expected_rate": hits / (samples * len(probes)), "forbidden_per_1000_words": forbidden * per_k,
            "findings_per_1000_words": findings * per_k, "rows": rows}


ERA_YEARS = (1550, 1650, 1750, 1840)  # issue 13's four eras


def era_fidelity(model, tok, years=ERA_YEARS, samples: int = 6, max_new_tokens: int = 150, seed: int = 0,
                 corpus_dir=None) -> dict:
    """Generate `samples` texts from the era token of each year alone (empty prompt; sample i uses seed+i),
    date each with the dating model of corpus_dir, and report the error in years: mae_years over every
    sample, and per year the estimates, their mean, its mean absolute error and the texts. `ordered` says
    whether the mean estimates rise strictly with the requested years."""
    from evals.dating import date

    years = [years] if isinstance(years, int) else list(years)
    if not years or any(isinstance(y, bool) or not isinstance(y, int) or not 1500 <= y <= 1859 for y in years):
        raise ValueError(f"years={years!r}: need one or more integer years in 1500..1859 (the era tokens' range)")
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 1000:
        raise ValueError(f"samples={samples!r}: must be an integer in 1..1000")
    per_year, errors = {}, []
    for y in years:
        est, texts = [], []
        for i in range(samples):
            cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, top_p=0.95,
                                   seed=seed + i, year=y)
            text = _generate(model, tok, "", cfg)
            est.append((date(text) if corpus_dir is None else date(text, corpus_dir))["year"])
            texts.append(text)
        errors += [abs(e - y) for e in est]
        per_year[str(y)] = {"estimates": est, "mean_estimate": statistics.fmean(est),
                            "mean_abs_error": statistics.fmean(abs(e - y) for e in est), "texts": texts}
    means = [per_year[str(y)]["mean_estimate"] for y in sorted(set(years))]
    return {"years": years, "samples_per_year": samples, "max_new_tokens": max_new_tokens, "seed": seed,
            "corpus": None if corpus_dir is None else str(corpus_dir), "mae_years": statistics.fmean(errors),
            "ordered": all(a < b for a, b in zip(means, means[1:])), "per_year": per_year}

"""Evaluation suites: one call runs every evaluator on a model and writes report.json + report.md.

quick (about 2 minutes on CPU for the tiny model): LM metrics on 16k validation tokens, 8 probes x 1
sample, era fidelity at 4 years x 2 samples, 8 continuations scored with ROUGE/BLEU, and the linguistic profile of
the generated text. full: more of each, the probes also time-locked, and the time-lock report.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.corpus_io import iter_documents
from engine.generate import Finished, GenerationConfig, model_context, stream
from engine.loading import load
from evals.probes import ERA_YEARS

SUITES = ("quick", "full")


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    lm_tokens: int
    probes: int  # how many of evals/probes.json, spread over the years
    probe_samples: int
    era_years: tuple[int, ...]
    era_samples: int
    continuations: int
    timelock_samples: int  # 0: no time-lock report
    era_new_tokens: int = 150  # tokens per era-fidelity sample (issue 13's recipe; capped by the context)


def suite_config(name: str) -> SuiteConfig:
    if name == "quick":
        return SuiteConfig("quick", 16_384, 8, 1, ERA_YEARS, 2, 8, 0)
    if name == "full":
        return SuiteConfig("full", 131_072, 20, 3, tuple(range(1500, 1851, 50)), 3, 40, 200)
    raise ValueError(f"suite={name!r}; allowed: {', '.join(SUITES)}")


def continuations(model, tok, corpus_dir, n: int, prompt_tokens: int = 48, new_tokens: int = 48) -> dict:
    """Continue the opening of n validation documents greedily; ROUGE/BLEU against what really follows."""
    from evals.metrics import load_metric

    preds, refs, rows = [], [], []
    for doc in iter_documents(corpus_dir, "validation"):
        ids = tok.backend_tokenizer.encode(doc["text"], add_special_tokens=False).ids
        if len(ids) < prompt_tokens + new_tokens:
            continue
        prompt = tok.decode(ids[:prompt_tokens])
        ref = tok.decode(ids[prompt_tokens:prompt_tokens + new_tokens])
        cfg = GenerationConfig(max_new_tokens=new_tokens, temperature=0, top_k=0, top_p=1.0, year=doc.get("year"))
        pred = next(e for e in stream(model, tok, prompt, cfg) if isinstance(e, Finished)).text
        preds.append(pred)
        refs.append(ref)
        rows.append({"id": doc["id"], "year": doc.get("year"), "prompt": prompt, "reference": ref, "prediction": pred})
        if len(rows) >= n:
            break
    rouge = load_metric("rouge").compute(predictions=preds, references=refs)
    bleu = load_metric("bleu").compute(predictions=preds, references=[[r] for r in refs])
    return {"n": len(rows), "rouge": {k: float(v) for k, v in rouge.items()}, "bleu": float(bleu["bleu"]),
            "rows": rows}


def _pick(probes: list[dict], k: int) -> list[dict]:
    if k >= len(probes):
        return probes
    step = len(probes) / k
    return [probes[int(i * step)] for i in range(k)]


def _profile(texts_by_year: list[tuple[str, int]], corpus_dir) -> dict:
    from evals.profile import profile

    profs = [profile(t, y, corpus_dir=corpus_dir) for t, y in texts_by_year if t.strip()]
    if not profs:
        return {}
    keys = [k for k, v in profs[0]["metrics"].items() if isinstance(v, (int, float))]
    out = {"texts": len(profs), "metrics": {k: statistics.fmean(p["metrics"][k] for p in profs) for k in keys}}
    pct = [p.get("percentiles") or {} for p in profs]
    if pct[0]:
        out["percentiles"] = {k: statistics.fmean(p[k] for p in pct if k in p) for k in pct[0]}
    return out


def run_suite(model_name: str, suite: str = "quick", corpus_dir: str | None = None, out: str | None = None,
              log=print) -> dict:
    """Run a suite on a model (run folder, model folder or Hub id); write out (JSON) and its .md twin."""
    from evals.lm import lm_metrics
    from evals.probes import era_fidelity, load_probes, run_probes

    cfg = suite_config(suite)
    m = load(model_name)
    corpus_dir = corpus_dir or corpus_of(model_name)
    t0, timings = time.time(), {}
    report = {"model": str(model_name), "model_path": str(m.path), "suite": asdict(cfg), "corpus": corpus_dir,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def step(name, fn):
        t = time.time()
        log(f"eval: {name}")
        report[name] = fn()
        timings[name] = round(time.time() - t, 1)

    step("lm", lambda: lm_metrics(m.model, m.tokenizer, corpus_dir, max_tokens=cfg.lm_tokens))
    probes = _pick(load_probes(), cfg.probes)
    step("probes", lambda: run_probes(m.model, m.tokenizer, probes, samples=cfg.probe_samples))
    if suite == "full":
        step("probes_locked", lambda: run_probes(m.model, m.tokenizer, probes, samples=cfg.probe_samples, lock=True))
    step("era_fidelity", lambda: era_fidelity(m.model, m.tokenizer, cfg.era_years, samples=cfg.era_samples,
                                              max_new_tokens=min(cfg.era_new_tokens, model_context(m.model) - 1),
                                              corpus_dir=corpus_dir))
    step("continuation", lambda: continuations(m.model, m.tokenizer, corpus_dir, cfg.continuations))
    texts = [(t, r["year"]) for r in report["probes"]["rows"] for t in r["texts"]]
    step("profile", lambda: _profile(texts, corpus_dir))
    if cfg.timelock_samples:
        from evals.timelock_eval import timelock_report
        step("timelock", lambda: timelock_report(m.model, m.tokenizer, corpus_dir, 1600, cfg.timelock_samples))
    timings["total"] = round(time.time() - t0, 1)
    report["timings_s"] = timings
    report["summary"] = summary(report)
    if out:
        write_report(report, out)
    return report


def corpus_of(model_name: str) -> str:
    """The corpus a run folder (or its model/ folder) was trained on, from its run.json."""
    run = Path(model_name)
    for cand in (run / "run.json", run.parent / "run.json"):
        if cand.exists():
            return json.loads(cand.read_text())["config"]["corpus"]
    raise ValueError(f"a corpus is needed (--corpus, corpus_dir): {model_name} is not a run folder whose run.json "
                     "names its corpus")


def summary(r: dict) -> dict:
    s = {"val_bpb": r["lm"]["bpb"], "val_ppl": r["lm"]["ppl"],
         "probe_expected_rate": r["probes"]["expected_rate"],
         "anachronisms_per_1000_words": r["probes"]["findings_per_1000_words"],
         "era_fidelity_mae_years": r["era_fidelity"]["mae_years"], "era_fidelity_ordered": r["era_fidelity"]["ordered"],
         "rougeL": r["continuation"]["rouge"].get("rougeL"), "bleu": r["continuation"]["bleu"]}
    if "probes_locked" in r:
        s["anachronisms_per_1000_words_locked"] = r["probes_locked"]["findings_per_1000_words"]
    if "timelock" in r:
        s["timelock_1600_locked_per_1000"] = r["timelock"]["locked"]["findings_per_1000_words"]
        s["timelock_1600_unlocked_per_1000"] = r["timelock"]["unlocked"]["findings_per_1000_words"]
    return s


def render_markdown(r: dict) -> str:
    s = r["summary"]
    lines = [f"# Evaluation: {r['model']} ({r['suite']['name']} suite)", "", f"Created {r['created']}, "
             f"{r['timings_s']['total']} s, corpus `{r['corpus']}`.", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in s.items()]
    lines += ["", "## Loss per decade (validation)", "", "| decade | loss | bits/byte | tokens |", "|---|---:|---:|---:|"]
    lines += [f"| {d} | {v['loss']} | {v['bpb']} | {v['tokens']} |" for d, v in r["lm"]["per_decade"].items()]
    lines += ["", "## Probes", "", "| probe | year | expected | forbidden | findings |", "|---|---:|---:|---:|---|"]
    lines += [f"| {p['id']} | {p['year']} | {p['expected_rate']:.2f} | {p['forbidden_hits']} | "
              f"{', '.join(p['findings']) or '-'} |" for p in r["probes"]["rows"]]
    lines += ["", "## Era fidelity", "", "| era token | estimates | mean estimate | mean abs error |",
              "|---|---|---:|---:|"]
    lines += [f"| {y} | {v['estimates']} | {v['mean_estimate']:.0f} | {v['mean_abs_error']:.0f} |"
              for y, v in r["era_fidelity"]["per_year"].items()]
    ex = r["probes"]["rows"][0]
    lines += ["", "## Example", "", f"> {ex['prompt']}{ex['texts'][0]}"]
    return "\n".join(lines) + "\n"


def write_report(r: dict, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(r, indent=1, ensure_ascii=False))
    tmp.replace(out)
    out.with_suffix(".md").write_text(render_markdown(r), encoding="utf-8")

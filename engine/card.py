"""Model cards: finding a model's own records (run.json, the corpus report, the evaluation report from
`cli.py eval`, quantization.json) and rendering the Hub README.md from them with huggingface_hub's ModelCard
and the Jinja template card_template.md beside this file.

Every number on the card is read from those records; a figure that was not measured is written "not
evaluated", never estimated. The special-token ids are read from the tokenizer files that are published with
the model (the seed project's card listed ids its own config contradicted).
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from tokenizers import Tokenizer

from engine.tokenizer import EOT, ERA_TOKENS

TEMPLATE = Path(__file__).with_name("card_template.md")
QUANT_FILE = "quantization.json"  # engine.quantize.QUANT_FILE, named here so cards do not import torch
EXPORT_FILE = "export.json"  # engine.export.EXPORT_FILE
EVAL_REPORT = "report.json"  # what `cli.py eval --out RUN/report.json` writes; looked for in the run folder
# Licence rule (README "Licences"): TCP and Standard Ebooks texts are CC0 / public domain, ELTeC-eng's TEI
# markup is CC BY 4.0, whose attribution must travel with any derived model.
_CC_BY = re.compile(r"cc[- ]?by", re.I)
_FREE = re.compile(r"cc0|public[- ]domain", re.I)
# Summary keys of evals.suite.summary(), with the names the card shows.
METRIC_NAMES = {
    "val_bpb": "Validation bits per byte", "val_ppl": "Validation perplexity",
    "probe_expected_rate": "Probe expected-word rate",
    "anachronisms_per_1000_words": "Anachronisms per 1,000 generated words",
    "anachronisms_per_1000_words_locked": "Anachronisms per 1,000 words, time-locked",
    "era_fidelity_mae_years": "Era fidelity, mean absolute error (years)",
    "rougeL": "ROUGE-L of continuations", "bleu": "BLEU of continuations",
    "timelock_1600_locked_per_1000": "Anachronisms per 1,000 words, locked at 1600",
    "timelock_1600_unlocked_per_1000": "Anachronisms per 1,000 words, unlocked (1600 prompts)",
}
DATASET = {"dataset_type": "anno-corpus", "dataset_name": "Anno corpus of dated London English (validation split)",
           "dataset_split": "validation"}


EXPORT_NAMES = {"gguf": "GGUF (llama.cpp)", "ct2": "CTranslate2"}
EXPORT_USAGE = {
    "gguf": 'from itertools import islice\n\nfrom huggingface_hub import hf_hub_download\nfrom llama_cpp import Llama\n\n'
            'llm = Llama(hf_hub_download("{repo_id}", "model.gguf"))\n'
            '# the era token is a control token: special=True lets the prompt name it\n'
            'ids = llm.tokenize("{era}It was in the yeare of the great fire, that".encode(), add_bos=False, '
            'special=True)\nout = list(islice(llm.generate(ids, top_k=50, temp=0.8), 40))\n'
            'print(llm.detokenize(out).decode(errors="replace"))',
    "ct2": 'import ctranslate2\nfrom huggingface_hub import snapshot_download\nfrom transformers import AutoTokenizer\n\n'
           'folder = snapshot_download("{repo_id}")\ngen = ctranslate2.Generator(folder)\n'
           'tok = AutoTokenizer.from_pretrained(folder)\n'
           'ids = tok("{era}It was in the yeare of the great fire, that").input_ids\n'
           'out = gen.generate_batch([tok.convert_ids_to_tokens(ids)], max_length=40, sampling_topk=50,\n'
           '                         include_prompt_in_result=False)\n'
           'print(tok.decode(out[0].sequences_ids[0], skip_special_tokens=True))',
}


@dataclass
class Records:
    """What a model folder and its run say about themselves (None: not recorded)."""
    model_dir: Path
    name: str  # the run's folder name (or the model folder's)
    run: dict | None = None
    corpus: dict | None = None
    eval: dict | None = None
    quant: dict | None = None
    export: dict | None = None  # export.json of a GGUF / CTranslate2 export folder
    export_dir: Path | None = None


def _json(path: Path | None) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else None


def find_records(path: str | Path, eval_report: str | Path | None = None,
                 corpus_report: str | Path | None = None) -> Records:
    """Records for a run folder (run.json + model/), a run's model/ folder, or a quantized folder whose
    quantization.json names its fp32 source. Explicit report paths win over the ones found."""
    p = Path(path)
    if (p / EXPORT_FILE).is_file():  # an export: the records are its source model's
        export = json.loads((p / EXPORT_FILE).read_text(encoding="utf-8"))
        src = Path(export.get("source_path", ""))
        if not (src / "config.json").is_file():
            raise FileNotFoundError(f"{p}/{EXPORT_FILE}: its source model folder {str(src)!r} is gone; the card "
                                    "is built from the source's records")
        rec = find_records(src, eval_report, corpus_report)
        rec.export, rec.export_dir = export, p
        return rec
    if (p / "run.json").is_file() and (p / "model" / "config.json").is_file():
        run_dir, model_dir = p, p / "model"
    elif (p / "config.json").is_file():
        model_dir, run_dir = p, p.parent if (p.parent / "run.json").is_file() else None
    else:
        raise FileNotFoundError(f"model={str(p)!r}: neither a run folder (run.json + model/) nor a model folder "
                                "(config.json)")
    quant = _json(model_dir / QUANT_FILE)
    if quant and run_dir is None and quant.get("source"):
        src = Path(quant["source"])
        run_dir = next((d for d in (src, src.parent) if (d / "run.json").is_file()), None)
    run = _json(run_dir / "run.json") if run_dir else None
    for name, given in (("eval_report", eval_report), ("corpus_report", corpus_report)):
        if given is not None and not Path(given).is_file():
            raise FileNotFoundError(f"{name}={str(given)!r}: no such file")
    found_eval = next((d / EVAL_REPORT for d in (model_dir, run_dir) if d and (d / EVAL_REPORT).is_file()), None)
    corpus_dir = (run or {}).get("corpus", {}).get("dir")
    found_corpus = Path(corpus_dir) / "report.json" if corpus_dir else None
    return Records(model_dir=model_dir, name=(run_dir or model_dir).name, run=run, quant=quant,
                   eval=_json(Path(eval_report) if eval_report else found_eval),
                   corpus=_json(Path(corpus_report) if corpus_report else found_corpus))


def licence(corpus: dict | None) -> tuple[str, str]:
    """(Hub licence id, why): cc-by-4.0 when any training text carries CC BY (ELTeC markup), cc0-1.0 when every
    text is CC0 or public domain, 'other' when a licence is unknown or the corpus report is missing."""
    if not corpus:
        return "other", "unknown: no corpus report was found"
    names = list(corpus.get("licenses", {}))
    if any(_CC_BY.search(n) for n in names):
        return "cc-by-4.0", "CC BY 4.0 markup (ELTeC-eng) is in the training data"
    if names and all(_FREE.search(n) for n in names):
        return "cc0-1.0", "every training text is CC0 or public domain"
    return "other", f"training-text licences not all known: {names}"


def _tokenizer_facts(model_dir: Path, config: dict) -> dict:
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    special = sorted(({"token": t.content, "id": i} for i, t in tok.get_added_tokens_decoder().items()
                      if t.special), key=lambda t: t["id"])
    eos = tok.token_to_id(EOT)
    if eos is None or config.get("eos_token_id") not in (None, eos):
        raise ValueError(f"{model_dir}: config.json eos_token_id={config.get('eos_token_id')} but the tokenizer's "
                         f"{EOT} is {eos}: the model and its tokenizer disagree, refusing to write a card")
    return {"vocab": tok.get_vocab_size(with_added_tokens=True), "special": special, "eos": eos,
            "era": [t["token"] for t in special if t["token"] in ERA_TOKENS]}


def _params(config: dict) -> int:
    """GPT-2 parameter count from config.json, tied lm_head counted once."""
    d, n_layer = config["n_embd"], config["n_layer"]
    inner = config.get("n_inner") or 4 * d
    per_layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * inner + inner) + (inner * d + d)
    return config["vocab_size"] * d + config["n_positions"] * d + n_layer * per_layer + 2 * d


def _corpus_facts(c: dict) -> dict:
    t = c["totals"]
    decades = [{"decade": f"{k}s", **{f: f"{v[f]:,}" for f in ("texts", "documents", "words")}}
               for k, v in c["by_decade"].items() if str(k).isdigit()]
    sources = [{"source": k, **{f: f"{v[f]:,}" for f in ("texts", "documents", "words")}}
               for k, v in c["by_source"].items()]
    thin = min(c["by_decade"].items(), key=lambda kv: kv[1]["words"], default=None)
    return {"summary": f"{t['texts_kept']} texts, {t['documents']:,} documents, {t['words']:,} words "
                       f"(corpus fingerprint `{c.get('fingerprint', '?')[:12]}`).",
            "decades": decades, "sources": sources, "licences": ", ".join(c.get("licenses", {})) or "not recorded",
            "attribution": [a["text"] for a in c.get("attribution", []) if a.get("required")],
            "thin": f"the {thin[0]}s, {thin[1]['words']:,} words" if thin else None}


def _training_facts(run: dict) -> dict:
    cfg = run.get("config", {})
    keys = ("preset", "max_steps", "batch_size", "grad_accum", "n_ctx", "lr", "warmup_steps", "dropout", "seed")
    rows = [(k, cfg[k]) for k in keys if k in cfg]
    rows += [("steps trained", run.get("step")), ("status", run.get("status")),
             ("training tokens", f"{run.get('tokens', {}).get('train', 0):,}"), ("processes", run.get("processes"))]
    fe, ie = run.get("final_eval") or {}, run.get("initial_eval") or {}
    final = "Final validation (training-time): not recorded."
    if "val_bpb" in fe:
        final = (f"Final validation (training-time, {fe.get('val_tokens', '?')} tokens): loss {fe['val_loss']:.4f}, "
                 f"perplexity {fe['val_ppl']:.2f}, {fe['val_bpb']:.4f} bits per byte")
        final += f" (untrained: {ie['val_bpb']:.4f})." if "val_bpb" in ie else "."
    return {"config": rows, "final": final}


def _centuries(lm: dict) -> list[dict]:
    """Bits per byte per century from the report's per-decade loss, bpb and tokens: bytes = loss*tokens/(ln2*bpb)."""
    acc: dict[str, list[float]] = {}
    for dec, v in lm.get("per_decade", {}).items():
        if not dec[:4].isdigit() or not v.get("bpb"):
            continue
        bits = v["loss"] * v["tokens"] / math.log(2)
        a = acc.setdefault(f"{dec[:2]}00s", [0.0, 0.0, 0])
        a[0], a[1], a[2] = a[0] + bits, a[1] + bits / v["bpb"], a[2] + v["tokens"]
    return [{"century": c, "bpb": f"{b / n:.4f}", "tokens": f"{t:,}"} for c, (b, n, t) in sorted(acc.items())]


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def eval_results(rec: Records) -> list[EvalResult]:
    """model-index entries: the evaluation report's summary numbers as they are, else the run's final
    training-time validation numbers; nothing when neither exists."""
    if rec.eval and rec.eval.get("summary"):
        src = {k: v for k, v in rec.eval["summary"].items() if isinstance(v, (int, float)) and math.isfinite(v)}
        source = "Anno evaluation suite"
    elif rec.run and rec.run.get("final_eval"):
        fe = rec.run["final_eval"]
        src = {k: fe[k] for k in ("val_bpb", "val_ppl") if isinstance(fe.get(k), (int, float))}
        source = "Anno training-time validation"
    else:
        return []
    return [EvalResult(task_type="text-generation", task_name="Period text generation", metric_type=k,
                       metric_value=v, metric_name=f"{METRIC_NAMES.get(k, k)} ({source})", **DATASET)
            for k, v in src.items()]


def _quant_rows(q: dict) -> list[dict]:
    rows = [{"name": "method", "quantized": q.get("method"), "fp32": "-"}]
    if w := q.get("weights_on_disk_bytes"):
        rows.append({"name": "weights on disk (bytes)", "quantized": f"{w['quantized']:,}", "fp32": f"{w['fp32']:,}"})
    if s := q.get("speed"):
        rows.append({"name": "greedy tokens/s (measured when quantized)", "quantized": s["tok_s"],
                     "fp32": s["fp32_tok_s"]})
    p = q.get("perplexity")
    rows.append({"name": "validation perplexity", "quantized": p["ppl"] if p else "not evaluated",
                 "fp32": p["fp32_ppl"] if p else "not evaluated"})
    return rows


def usage_snippet(repo_id: str, era: str) -> str:
    return (f'from transformers import AutoModelForCausalLM, AutoTokenizer\n\n'
            f'repo = "{repo_id}"\n'
            f'tok = AutoTokenizer.from_pretrained(repo)\n'
            f'model = AutoModelForCausalLM.from_pretrained(repo)\n'
            f'# the era token first: it asks for the English of that decade\n'
            f'ids = tok("{era}It was in the yeare of the great fire, that", return_tensors="pt").input_ids\n'
            f'out = model.generate(ids, max_new_tokens=40, do_sample=True, top_k=50, temperature=0.8,\n'
            f'                     pad_token_id=tok.eos_token_id)\n'
            f'print(tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))')


def render_card(rec: Records, repo_id: str, parent: str | None = None) -> ModelCard:
    """The README.md for repo_id, filled from rec; parent: the repo this one is a quantization/export of."""
    config = json.loads((rec.model_dir / "config.json").read_text(encoding="utf-8"))
    tok = _tokenizer_facts(rec.model_dir, config)
    lic, lic_why = licence(rec.corpus)
    q = rec.quant
    ex = rec.export
    variant = f"{q['method']} quantization" if q else (f"{EXPORT_NAMES[ex['format']]} export" if ex else None)
    tags = ["gpt2", "anno", "historical", "early-modern-english", "period-language-model", "text-generation"]
    tags += ["quantized", q["method"]] if q else [ex["format"] if ex["format"] == "gguf" else "ctranslate2"] if ex \
        else []
    data = ModelCardData(
        language="en", license=lic, pipeline_tag="text-generation", tags=tags, model_name=repo_id.split("/")[1],
        library_name={"gguf": "gguf", "ct2": "ctranslate2"}[ex["format"]] if ex else "transformers",
        # a variant's model-index would claim the parent's numbers as its own: the text says whose they are
        eval_results=None if (q or ex) else eval_results(rec) or None, base_model=parent,
        **({"license_name": "unknown"} if lic == "other" else {}),
        **({"base_model_relation": "quantized"} if parent and (q or ex) else {}))
    ev = rec.eval
    summary_ = (ev or {}).get("summary", {})
    decades = sorted(int(k) for k in (rec.corpus or {}).get("by_decade", {}) if str(k).isdigit())
    era = "<|1660s|>" if "<|1660s|>" in tok["era"] else (tok["era"][0] if tok["era"] else "")
    anach = summary_.get("anachronisms_per_1000_words")
    anach_text = "not evaluated" if anach is None else f"{anach:.2f} unlocked" + (
        f", {summary_['anachronisms_per_1000_words_locked']:.2f} time-locked"
        if "anachronisms_per_1000_words_locked" in summary_ else "")
    ctx = {
        "name": repo_id.split("/")[1], "repo_id": repo_id, "parent": parent, "variant": variant,
        "summary": f"A period language model of London English from the run `{rec.name}`; licence {lic} "
                   f"({lic_why}).",
        "shape": f"{config['n_layer']} layers x {config['n_embd']} wide, {config['n_head']} heads, "
                 f"context {config['n_positions']}",
        "params": f"{(rec.run or {}).get('params', {}).get('total') or _params(config):,}",
        "years": f"{decades[0]}-{decades[-1] + 9}" if decades else "1500-1859",
        "corpus": _corpus_facts(rec.corpus) if rec.corpus else None, "tokenizer": tok,
        "training": _training_facts(rec.run) if rec.run else None,
        "evaluation": {"suite": ev.get("suite", {}).get("name", "?"), "created": ev.get("created", "?"),
                       "metrics": [{"name": METRIC_NAMES.get(k, k), "value": _fmt(v)} for k, v in summary_.items()]}
        if ev else None,
        "centuries": _centuries(ev["lm"]) if ev and ev.get("lm") else [],
        "centuries_source": "the evaluation report's per-decade validation loss, bits per byte and tokens",
        "era_fidelity": f"{summary_['era_fidelity_mae_years']:.1f} years"
        if summary_.get("era_fidelity_mae_years") is not None else "not evaluated",
        "anachronisms": anach_text, "quant": _quant_rows(q) if q else None,
        "usage": EXPORT_USAGE[ex["format"]].format(repo_id=repo_id, era=era) if ex else
        usage_snippet(repo_id, era) if not q or q.get("method") != "int8-cpu" else None,
        "usage_note": "int8-cpu weights are weight-only int8 tensors with per-row scales (model.int8.safetensors + "
                      "quantization.json): load them with Anno's `engine.quantize.load_any`, not transformers.",
        "citation_key": re.sub(r"\W", "_", repo_id), "code_version": (rec.run or {}).get("code_version"),
        "year": time.gmtime().tm_year,
    }
    return ModelCard.from_template(data, template_path=str(TEMPLATE), **ctx)

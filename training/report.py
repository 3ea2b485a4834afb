"""Corpus report: documents, words and characters per split, per decade (and per split and decade), per
source, rejects by reason, source errors, licences and the attribution list, as JSON (report.json) and
Markdown (report.md). Records the split assignment itself (held-out source ids) so a build can be checked
and reproduced."""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from engine.atomic import file_sha256
from training.splits import SPLITS, split_counts

REPORT_VERSION = 2  # 2: source-disjoint train/validation/test splits, split_sources, by_split_decade
SPLIT_PURPOSE = {"train": "fitting: tokenizer, model, first-seen table, dating model, profile reference",
                 "validation": "tuning and early stopping", "test": "reported figures only"}
REJECT_REASONS = ("too_short", "illegible", "garbage", "latin", "french", "exact_duplicate", "near_duplicate")


def _tally() -> dict:
    return {"documents": 0, "words": 0, "chars": 0, "texts": set()}


def _finish(t: dict) -> dict:
    return {**t, "texts": len(t["texts"])}


def build_report(out_dir: Path, index: list[dict], selected: list[dict], errors: list[dict], rejects: list[dict],
                 config: dict, timings: dict, assignment: dict[str, str]) -> dict:
    """assignment: {source id: split} of the selected records (training/splits.assign_splits)."""
    by_decade, by_source, by_split, by_license, by_split_decade = (defaultdict(_tally) for _ in range(5))
    incomplete = []
    for row in index:
        split = row["split"]
        if row.get("year") is None or row.get("decade") is None or not row.get("license"):
            incomplete.append(row["id"])
        for table, key in ((by_decade, row["decade"]), (by_source, row["source"]), (by_split, split),
                           (by_license, row["license"]), (by_split_decade, (split, row["decade"]))):
            t = table[key]
            t["documents"] += 1
            t["words"] += row["words"]
            t["chars"] += row["chars"]
            t["texts"].add(row["source_id"])
    decade_keys = sorted(by_decade, key=lambda d: (d is None, d))
    kept = {row["source_id"] for row in index}
    errored = {e["source"] for e in errors}
    # every reason is listed, zeros included, so a report shows that each filter and dedup step ran
    reasons: dict[str, Counter] = {k: Counter(documents=0, words=0) for k in REJECT_REASONS}
    for r in rejects:
        reasons.setdefault(r["reason"], Counter(documents=0, words=0))
        reasons[r["reason"]]["documents"] += 1
        reasons[r["reason"]]["words"] += r["words"]
    attribution: dict[str, dict] = {}
    for rec in selected:
        if rec["id"] in kept and rec.get("attribution"):
            a = attribution.setdefault(rec["attribution"], {"text": rec["attribution"], "sources": [],
                                                            "required": rec["attribution"].lower().startswith(
                                                                "required")})
            a["sources"].append(rec["id"])
    decades = sorted({r["decade"] for r in selected})
    files = {s: sorted(str(p.relative_to(out_dir)) for p in (out_dir / s).glob("*.jsonl.gz"))
             for s in SPLITS}
    shard_hashes = {f: file_sha256(out_dir / f) for fs in files.values() for f in fs}
    input_bytes = sum(f.get("bytes") or 0 for r in selected for f in r["files"])
    total_words = sum(r["words"] for r in index)
    return {
        "version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "totals": {
            "sources_selected": len(selected), "texts_kept": len(kept), "documents": len(index),
            "words": total_words, "chars": sum(r["chars"] for r in index), "input_bytes": input_bytes,
            "source_errors": len(errors), "documents_without_metadata": len(incomplete),
        },
        "splits": {s: _finish(by_split[s]) for s in SPLITS},
        "split_purpose": SPLIT_PURPOSE,
        "split_sources": split_counts(assignment, selected),
        "split_assignment": {s: sorted(i for i, v in assignment.items() if v == s) for s in SPLITS if s != "train"},
        "by_split_decade": {s: {str(d): _finish(by_split_decade[(s, d)]) for d in decade_keys
                                if (s, d) in by_split_decade} for s in SPLITS},
        "by_decade": {str(k): _finish(by_decade[k]) for k in decade_keys},
        "decades_missing": [d for d in decades if d not in by_decade],
        "by_source": {k: _finish(v) for k, v in sorted(by_source.items())},
        "licenses": {k: _finish(v) for k, v in sorted(by_license.items())},
        "attribution": sorted(attribution.values(), key=lambda a: (not a["required"], a["text"])),
        "rejects": {k: dict(v) for k, v in reasons.items()},
        "texts_without_documents": sorted({r["id"] for r in selected} - kept - errored),
        "errors": errors,
        "files": files,
        "fingerprint": hashlib.sha256(json.dumps(shard_hashes, sort_keys=True).encode()).hexdigest(),
        "timings_s": timings,
        "throughput": {
            "input_mb_per_s": round(input_bytes / 1e6 / max(timings.get("total", 0), 1e-9), 3),
            "documents_per_s": round(len(index) / max(timings.get("total", 0), 1e-9), 2),
        },
    }


def _table(rows: dict, key_name: str) -> list[str]:
    lines = [f"| {key_name} | texts | documents | words | characters |", "|---|---:|---:|---:|---:|"]
    for k, v in rows.items():
        label = f"{k}s" if key_name == "decade" and str(k).isdigit() else k
        lines.append(f"| {label} | {v['texts']} | {v['documents']} | {v['words']:,} | {v['chars']:,} |")
    return lines


def _split_decade_table(r: dict) -> list[str]:
    """Per decade: texts, documents and words of each split side by side."""
    per = r["by_split_decade"]
    names = list(per)
    lines = ["| decade | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for d in r["by_decade"]:
        label = f"{d}s" if str(d).isdigit() else d
        cells = []
        for s in names:
            v = per[s].get(d)
            cells.append(f"{v['texts']} / {v['documents']} / {v['words']:,}" if v else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(r: dict) -> str:
    t = r["totals"]
    out = [
        "# Corpus report", "",
        f"{t['texts_kept']} of {t['sources_selected']} texts kept as {t['documents']:,} documents, "
        f"{t['words']:,} words ({t['chars']:,} characters). Built {r['created']} in "
        f"{r['timings_s'].get('total', 0):.0f} s ({r['throughput']['input_mb_per_s']} MB/s of input).", "",
        "## Splits", "",
        "Whole sources, chosen from the manifest before the build (stratified by decade): "
        + "; ".join(f"**{k}**: {v}" for k, v in r.get("split_purpose", {}).items()) + ".", "",
        *_table(r["splits"], "split"), "",
        "## By decade", "", *_table(r["by_decade"], "decade"), "",
    ]
    if r.get("by_split_decade"):
        out += ["## By decade and split (texts / documents / words)", "", *_split_decade_table(r), ""]
    if r["decades_missing"]:
        out += [f"Decades with sources but no kept document: {', '.join(f'{d}s' for d in r['decades_missing'])}", ""]
    out += ["## By source", "", *_table(r["by_source"], "source"), "",
            "## Licences", "", *_table(r["licenses"], "licence"), "",
            "## Rejected documents", "", "| reason | documents | words |", "|---|---:|---:|"]
    out += [f"| {k} | {v.get('documents', 0)} | {v.get('words', 0):,} |" for k, v in r["rejects"].items()]
    out += ["", f"## Source errors ({len(r['errors'])})", ""]
    out += [f"- `{e['source']}` {e['kind']}: {e['message']}" for e in r["errors"]] or ["None."]
    if r["texts_without_documents"]:
        out += ["", "Texts whose every document was rejected: " + ", ".join(r["texts_without_documents"])]
    out += ["", "## Attribution", ""]
    for a in r["attribution"]:
        flag = "**required**" if a["required"] else "courtesy"
        out.append(f"- ({flag}, {len(a['sources'])} texts) {a['text']}")
    return "\n".join(out) + "\n"

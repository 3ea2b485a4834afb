"""Reproducible cross-validation of the dater (evals/dating.py): `cross_validate(corpus_dir, folds)`, behind
`cli.py date --cv --corpus DIR [--folds 10]`.

Folds are author-disjoint: sources that share an author (after normalising the name: "Shakespeare, William,
1564-1616" and "William Shakespeare" are one person; co-authors join their groups) are held out together,
so a fold never dates an author's style that it was fitted on (8 NLTK Shakespeare plays, 4 Austen novels
and 3 Dickens novels are in the shipped corpus). Author groups, sorted by their first year, are dealt round
robin so every fold spans the period; the temperature is calibrated by inner author-disjoint folds too.
Every split of the corpus is used (the split that trains the served model is irrelevant when every text is
held out once). Figures: per 300-word passage (MAE, median, 80%-interval coverage and width), per whole
held-out text (its sampled passages dated together, as `date` does for a long text), per century and per
archive (EEBO-TCP, ECCO-TCP, Standard Ebooks, ELTeC-eng, NLTK Shakespeare), and on 60-word snippets.

Measured on the shipped 197-text corpus, 10 folds (165 author groups; 28 min on the shared, loaded 2-core
machine), two views and the gate (evals/dating.py): whole texts MAE 12.3 years (median 8, 80% interval
covering 0.87), passages 18.8 (coverage 0.80), 60-word snippets 27.3. Per century (texts) 1500s 8.5, 1600s
16.3, 1700s 11.6, 1800s 12.5; per archive EEBO-TCP 8.3, ECCO-TCP 11.5, ELTeC-eng 14.1, Standard Ebooks 15.7,
NLTK Shakespeare 58.6. The inner folds chose a gate of 40 years in 8 folds, 30 in 2; 10 texts were dated by
the lexis view: the 8 Shakespeare plays (modern spelling), Pepys's diary (Standard Ebooks, modernised) and one
ECCO text. Without the Shakespeare plays the text MAE is 10.3. Before (spelling view only): texts 16.1
(Shakespeare 143, without them 10.7), passages 19.0.

`held_out_split(corpus_dir, "test")` (`cli.py date --test`) is the true held-out figure: the served model,
fitted on train, dating the test split's 10 sources: whole texts MAE 7.2 (median 4), passages 13.9.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engine.corpus_io import SPLITS, iter_documents
from evals.dating import FIT_SPLITS, DatingConfig, DatingModel, _source_folds, corpus_passages, hash_text, load_or_fit
from evals.dating_features import VIEWS, author_groups, author_keys  # noqa: F401  (author_* re-exported)


def _figures(r: np.ndarray, years: np.ndarray, sel: np.ndarray) -> dict:
    err = np.abs(np.round(r[sel, 0]) - years[sel])  # as date() reports it
    inside = (years[sel] >= np.floor(r[sel, 1])) & (years[sel] <= np.ceil(r[sel, 2]))
    return {"n": int(sel.sum()), "mae": round(float(err.mean()), 2), "median_ae": round(float(np.median(err)), 2),
            "coverage": round(float(inside.mean()), 3), "mean_width": round(float((r[sel, 2] - r[sel, 1]).mean()), 1)}


def cross_validate(corpus_dir: str | Path, folds: int = 10, config: DatingConfig | None = None,
                   short_words: int = 60, splits: tuple[str, ...] = SPLITS) -> dict:
    """Author-disjoint CV: each fold refits everything (vocabulary, IDF, weights, inner-CV temperature) on the
    other folds' passages and dates the held-out passages, their first `short_words` words, and each held-out
    source as one text. Returns figures overall, per century, per archive and per fold."""
    cfg, t0 = config or DatingConfig(), time.time()
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds={folds!r} must be an integer >= 2")
    ps = corpus_passages(corpus_dir, cfg, splits)
    sources = {p["source_id"]: p for p in ps}
    group_of = author_groups({s: p.get("author") for s, p in sources.items()})
    if len(set(group_of.values())) < folds:
        raise ValueError(f"folds={folds} exceeds the {len(set(group_of.values()))} author groups with passages")
    hashed = [hash_text(p["tokens"], cfg) for p in ps]
    short = [hash_text(p["tokens"][:short_words], cfg) for p in ps]
    years = np.array([p["year"] for p in ps])
    sid = np.array([p["source_id"] for p in ps])
    groups = [group_of[s] for s in sid]
    fold = _source_folds(groups, years, folds)
    res = {k: np.zeros((len(ps), 3)) for k in ("full", "short")}
    text_ids = sorted(sources)
    text_res, text_years = np.zeros((len(text_ids), 3)), np.array([sources[s]["year"] for s in text_ids])
    text_lexis, gates, c = np.zeros(len(text_ids), bool), [], cfg.coverage
    for f in range(folds):
        tr, te = np.where(fold != f)[0], np.where(fold == f)[0]
        m = DatingModel.fit_passages([hashed[i] for i in tr], years[tr], [groups[i] for i in tr], cfg,
                                     [sid[i] for i in tr])
        gates.append(m.gate)
        for key, rows in (("full", hashed), ("short", short)):
            res[key][te] = m.estimate({v: m.scores([rows[i][v] for i in te], v) for v in VIEWS})[0]
        scores = {v: m.scores([hashed[i][v] for i in te], v) for v in VIEWS}
        for k, s in enumerate(text_ids):
            mine = sid[te] == s
            if mine.any():  # a long text: its passages' scores averaged, as DatingModel.date does
                r, lexis = m.estimate({v: scores[v][mine].mean(0, keepdims=True) for v in VIEWS})
                text_res[k], text_lexis[k] = r[0], lexis[0]
    century, archive = years // 100 * 100, np.array([str(p.get("source")) for p in ps])
    t_century = text_years // 100 * 100
    t_archive = np.array([str(sources[s].get("source")) for s in text_ids])
    everything, t_all = np.ones(len(ps), bool), np.ones(len(text_ids), bool)
    err = np.abs(np.round(res["full"][:, 0]) - years)
    per_source = {s: round(float(err[sid == s].mean()), 1) for s in text_ids}
    worst = sorted(per_source.items(), key=lambda kv: -kv[1])[:8]
    return {
        "corpus": str(corpus_dir), "folds": folds, "fold_kind": "author-disjoint", "splits": list(splits),
        "sources": len(text_ids), "author_groups": len(set(group_of.values())), "interval": f"central {c:.0%}",
        "passage_words": cfg.passage_words, **_figures(res["full"], years, everything),
        "passages": len(ps),
        "by_century": {str(k): _figures(res["full"], years, century == k) for k in sorted(set(century.tolist()))},
        "by_archive": {a: _figures(res["full"], years, archive == a) for a in sorted(set(archive.tolist()))},
        "texts": {**_figures(text_res, text_years, t_all),
                  "by_century": {str(k): _figures(text_res, text_years, t_century == k)
                                 for k in sorted(set(t_century.tolist()))},
                  "by_archive": {a: _figures(text_res, text_years, t_archive == a)
                                 for a in sorted(set(t_archive.tolist()))}},
        "by_fold": [_figures(res["full"], years, fold == f)["mae"] for f in range(folds)],
        "worst_sources": [{"source_id": s, "year": int(sources[s]["year"]), "mae": e} for s, e in worst],
        "gate_by_fold": gates, "texts_dated_by_lexis": sorted(s for s, x in zip(text_ids, text_lexis) if x),
        "short": {"words": short_words, **_figures(res["short"], years, everything)},
        "config": asdict(cfg), "seconds": round(time.time() - t0, 1),
    }


def _by(r: np.ndarray, years: np.ndarray, labels: np.ndarray) -> dict:
    return {str(k): _figures(r, years, labels == k) for k in sorted(set(labels.tolist()))}


def held_out_split(corpus_dir: str | Path, split: str = "test", cache_dir: str | Path | None = None,
                   config: DatingConfig | None = None) -> dict:
    """The served model (fitted on FIT_SPLITS, cached as `date` uses it) dating a held-out split: each source
    of `split` as one whole text (its documents joined, read as `date` reads a long text) and each of its
    sampled passages on its own. A true held-out figure: no text of the split, and by the corpus build no
    other part of its source, trained the model (authors may recur: the splits are source-disjoint only)."""
    cfg, t0 = config or DatingConfig(), time.time()
    if split in FIT_SPLITS:
        raise ValueError(f"split={split!r} trains the served model; choose a held-out split (validation, test)")
    model = load_or_fit(corpus_dir, cache_dir, cfg)
    docs: dict[str, list[dict]] = {}
    for d in iter_documents(corpus_dir, split):
        docs.setdefault(d["source_id"], []).append(d)
    if not docs:
        raise ValueError(f"corpus {corpus_dir} has no documents in split {split!r}")
    ids = sorted(docs)
    got = [model.date("\n\n".join(d["text"] for d in docs[s])) for s in ids]
    t_years = np.array([int(docs[s][0]["year"]) for s in ids])
    t_res = np.array([[g["year"], g["low"], g["high"]] for g in got], dtype=float)
    ps = corpus_passages(corpus_dir, cfg, (split,))
    p_got = [model.date(" ".join(p["tokens"])) for p in ps]
    p_years = np.array([p["year"] for p in ps])
    p_res = np.array([[g["year"], g["low"], g["high"]] for g in p_got], dtype=float)
    every = np.ones(len(ids), bool)
    return {
        "corpus": str(corpus_dir), "split": split, "model": f"served: fitted on {'+'.join(FIT_SPLITS)}",
        "gate": model.gate, "interval": f"central {cfg.coverage:.0%}",
        "texts": {**_figures(t_res, t_years, every),
                  "by_century": _by(t_res, t_years, t_years // 100 * 100),
                  "by_archive": _by(t_res, t_years, np.array([str(docs[s][0].get("source")) for s in ids])),
                  "each": [{"source_id": s, "year": int(y), "estimate": g["year"], "low": g["low"], "high": g["high"],
                            "view": g["view"]} for s, y, g in zip(ids, t_years, got)]},
        "passages": {"words": cfg.passage_words, **_figures(p_res, p_years, np.ones(len(ps), bool)),
                     "by_century": _by(p_res, p_years, p_years // 100 * 100)},
        "seconds": round(time.time() - t0, 1),
    }

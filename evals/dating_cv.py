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

Measured on the shipped 197-text corpus, 10 folds (165 author groups; 18 min on the shared 2-core machine):
whole texts MAE 16.1 years (median 8), passages 19.0 (median 11), 80% interval coverage 0.80. Per century
(texts) 1500s 10.4, 1600s 27.2, 1700s 12.0, 1800s 12.5. The 1600s figure is the 8 NLTK Shakespeare plays
(modern spelling, MAE 143 once no Shakespeare trains the fold); without them the text MAE is 10.7.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from engine.corpus_io import SPLITS
from evals.dating import DatingConfig, DatingModel, _quantiles, _softmax, _source_folds, corpus_passages, \
    hash_passage

# Words of a catalogue author field that do not name the person: titles, roles and date qualifiers.
_NOT_NAME = frozenset("sir saint st mr mrs dr lord lady earl duke the of de ca fl b d active approximately "
                      "grammarian translator editor author anon anonymous".split())
_NAME_WORD = re.compile(r"[^\W\d_]+")


def author_keys(author: str | None) -> list[frozenset[str]]:
    """One key per person named in a catalogue author field (';'-separated): the set of lowercased name words,
    so that "Surname, Forename, dates." and "Forename Surname" meet. Empty for an anonymous text."""
    keys = []
    for person in (author or "").split(";"):
        words = frozenset(w for w in _NAME_WORD.findall(person.lower()) if len(w) > 1 and w not in _NOT_NAME)
        if words:
            keys.append(words)
    return keys


def author_groups(authors: dict[str, str | None]) -> dict[str, str]:
    """{source id: group id}: sources sharing any author key are one group (union-find); an anonymous source
    is its own group. The group id is its smallest source id, so groups do not depend on input order."""
    parent = {s: s for s in authors}

    def find(s):
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    owner: dict[frozenset, str] = {}
    for sid in sorted(authors):
        for key in author_keys(authors[sid]):
            if key in owner:
                a, b = sorted((find(sid), find(owner[key])))
                parent[b] = a
            else:
                owner[key] = sid
    return {s: find(s) for s in authors}


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
    hashed = [hash_passage(p["tokens"], cfg) for p in ps]
    short = [hash_passage(p["tokens"][:short_words], cfg) for p in ps]
    years = np.array([p["year"] for p in ps])
    sid = np.array([p["source_id"] for p in ps])
    groups = [group_of[s] for s in sid]
    fold = _source_folds(groups, years, folds)
    res = {k: np.zeros((len(ps), 3)) for k in ("full", "short")}
    text_ids = sorted(sources)
    text_res, text_years = np.zeros((len(text_ids), 3)), np.array([sources[s]["year"] for s in text_ids])
    c = cfg.coverage
    qs = [0.5, (1 - c) / 2, (1 + c) / 2]
    for f in range(folds):
        tr, te = np.where(fold != f)[0], np.where(fold == f)[0]
        m = DatingModel.fit_passages([hashed[i] for i in tr], years[tr], [groups[i] for i in tr], cfg)
        for key, rows in (("full", hashed), ("short", short)):
            p = _softmax(m.scores([rows[i] for i in te]), m.temperature)
            res[key][te] = _quantiles(p, m.decades, qs)
        scores = m.scores([hashed[i] for i in te])
        for k, s in enumerate(text_ids):
            mine = sid[te] == s
            if mine.any():  # a long text: its passages' scores averaged, as DatingModel.date does
                text_res[k] = _quantiles(_softmax(scores[mine].mean(0, keepdims=True), m.temperature), m.decades, qs)[0]
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
        "short": {"words": short_words, **_figures(res["short"], years, everything)},
        "config": asdict(cfg), "seconds": round(time.time() - t0, 1),
    }

"""Period dating of text: `date(text, corpus_dir)` -> {"year", "low", "high"} (a calibrated central 80%
interval), the model behind it (`DatingModel`: fit / save / load, cached per corpus fingerprint), and the batch
file interface `date_jsonl` for outside graders. Cross-validation lives in evals/dating_cv.py.

The corpus is always explicit (no default folder: `date` without one is a ValueError) and the served model is
fitted on its train split only, so dating validation or test text is a held-out measurement.

Method: passages of 300 words, at most 20 evenly spaced per source (Pepys and the ELTeC novels must not swamp
the 5-11 texts of a decade), read in two views (evals/dating_features.py): "spelling" (character 2-4-grams
and word 1-2-grams) and "lexis" (1-2-grams of spelling-blind word skeletons). Per view: log-count x IDF,
L2-normalised, the 16,384 most widespread buckets kept; decade-balanced ridge regression onto Gaussian-smoothed
decade labels (sigma 30 years) gives decade scores; softmax(scores / T) is a distribution over decades
(uniform within each), the year its median and the interval its 10th-90th percentiles, T chosen by inner
author-disjoint folds so that the interval covers 80% of held-out passages. A text (its passages' scores
averaged) is dated by the spelling view unless the lexis view's median is more than `gate` years earlier: the
signature of a modernised edition (early vocabulary, modern spelling). The gate is chosen from
DatingConfig.gate_years by the inner folds' whole-text error (served model: 30). Ridge is solved in the dual
(one Cholesky of the passage Gram) so that calibration and CV folds are cheap.

Figures (shipped corpus; evals/dating_cv.py has the per-century/per-archive tables):
- test split, served model fitted on train (`cli.py date --test`): whole texts MAE 7.2 years (10 texts,
  median 4, all inside their interval), 300-word passages 13.9 (184; coverage 0.89). The spelling view dated
  every test text (none is a modernised edition).
- author-disjoint 10-fold CV over all 197 texts (`cli.py date --cv`): whole texts 12.3 (16.1 with the
  spelling view alone; the 8 modern-spelling Shakespeare plays 58.6 late instead of 143), passages 18.8.
Tried on the same CV with a global vocabulary and a fixed T (exploration; whole-text MAE, spelling view alone
16.0, without the 8 Shakespeare plays 10.8): lexis view alone 15.1 (Shakespeare 60 years late instead of
139; 13.3 without them); a fixed mix of the two views' scores (lexis weight 0.3 / 0.5 / 0.7) 14.9 / 14.3 / 13.9;
the gate, fixed at 20 / 30 / 40 years, 13.2 / 12.7 / 12.4; aggregating a text by the median of its passages'
years 16.3, by summed log-probabilities 16.3 (mean of scores kept); stretching estimates away from the corpus
middle (x1.05 / x1.1 about 1680) 16.5 / 18.9 (no shrinkage to undo: slope of estimate on truth 0.99); a
terminus post quem from the dated lexicon (year = max(year, latest first-attested word found by
evals.anachronism.check, confidence >= 0.5 / 0.9)) 12.9 / 12.6 with the gate at 30 against 12.7 (a split
"tea" in a 1551 text costs 104 years), so not used. Earlier: ridge straight onto the year 23 (shrinks to the
mean); sigma 10 / 20 / 30 gave 15.8 / 14.6 / 14.3 (leave-source-out, 40 passages per source).
Tried 2026-12-01 on the same CV with the two views and the gate (global vocabulary, the folds' own inner
calibration; 12.37 as served): label sigma 20 / 15, 13.28 / 13.48 (ELTeC's 1840s novels, dated 14 years
early on average, 11.1 / 9.2; every other archive worse); the lexis view with apostrophes dropped and "&" read as
"and" (modern editions print "I'll" for "Ile" and expand "&"; the largest pushes toward the 1670s of
Shakespeare's lexis estimate) 12.42; a monotone map from estimate to year fitted on the inner folds' texts
(isotonic / local-linear, bandwidth 10-40) 12.49-12.91 (ELTeC gains what Standard Ebooks loses: the two sit at
the period's end with opposite biases, -14 and +6.5); shifting lexis-dated texts by the inner folds' mean
lateness of their own lexis-dated texts 12.91-13.63 (with Shakespeare held out only Pepys's diary and one ECCO
text are left to learn it from, and their residuals disagree). The 8 NLTK plays stay 48-70 years late in
the lexis view (its distribution peaks at 1640-1670: the corpus has no drama before 1638), which is most of
the gap to 10.
Tried 2026-12-02 with the 8 plays held out and every other passage fitted (lexis view alone: plays 49.3 years
late on average, other texts' inner-fold MAE 13.8): a function-word view (the 300 most frequent skeletons,
every other word one placeholder) 43-45 late but other texts 19.0; lexis without all-caps speaker names and
stage words (Enter, Exeunt, Scene...) 47.3 late, 13.7. Neither pays for the plays' lost genre; not used.

Bad input never raises for a str: empty text, or text with under MIN_EVIDENCE known features (CJK, binary),
gets the corpus prior and flag "empty" / "no_evidence"; under 100 words the flag is "short" (dated; CV on
60-word snippets: MAE 27.3, coverage 0.83, author-disjoint folds). Long text is sampled (16 passages), so 10 MB
costs ~1 MB.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from engine.atomic import atomic_file, atomic_path, write_json_atomic
from engine.corpus_io import load_report
from evals.dating_features import VIEWS, author_groups, corpus_passages, hash_views, text_passages

FIT_SPLITS = ("train",)  # the served model never sees validation or test text
FORMAT_VERSION = 2  # 2: two views (spelling, lexis) and the gate
FLAGS = (None, "short", "empty", "no_evidence")
MIN_EVIDENCE = 10  # distinct known features below which a text is dated by the prior (CJK, binary noise)


@dataclass(frozen=True)
class DatingConfig:
    passage_words: int = 300          # spec: passages of ~200-500 words
    min_passage_words: int = 100      # shorter tail windows are dropped; shorter texts are flagged "short"
    max_passages_per_source: int = 20  # 40 gave the same CV MAE (13.9) at 3.5x the fit time
    max_text_passages: int = 16       # passages sampled from one long input text
    char_ngram_max: int = 4           # character n-grams of 2..char_ngram_max
    hash_bits: int = 18
    features: int = 16384
    ridge: float = 0.3                # 0.1 / 0.3 / 1.0 gave MAE 15.0 / 14.3 / 14.6
    label_sigma: float = 30.0
    coverage: float = 0.8
    calibration_folds: int = 5
    lexis_features: int = 16384       # the lexis view's kept buckets (1,000 / 4,000 unigrams: MAE 15.3 / 14.9)
    # Gates tried by the inner folds (years the lexis view must date a text before the spelling view for it
    # to be used); 1000 = never. Exploration, outer CV with a fixed gate (whole texts, an earlier skeleton):
    # 10 / 20 / 30 / 40 / 60 / 80 / never gave MAE 13.8 / 13.3 / 12.9 / 12.9 / 13.5 / 14.5 / 16.0.
    gate_years: tuple[int, ...] = (10, 20, 30, 40, 60, 80, 1000)

    def __post_init__(self):
        object.__setattr__(self, "gate_years", tuple(self.gate_years))  # a list after a JSON round trip
        if not self.gate_years or not all(isinstance(g, int) and 0 <= g <= 1000 for g in self.gate_years):
            raise ValueError(f"DatingConfig.gate_years={self.gate_years!r} must be a non-empty list of integers "
                             f"in [0, 1000]")
        ranges = {"passage_words": (20, 5000), "min_passage_words": (1, self.passage_words),
                  "max_passages_per_source": (1, 100000), "max_text_passages": (1, 1000),
                  "char_ngram_max": (2, 8), "hash_bits": (10, 26), "features": (16, 1 << 22),
                  "ridge": (1e-6, 1e6), "label_sigma": (1.0, 500.0), "coverage": (0.05, 0.99),
                  "calibration_folds": (2, 100), "lexis_features": (16, 1 << 22)}
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"DatingConfig.{name}={v!r} is outside the allowed range [{lo}, {hi}]")


def hash_text(tokens: list[str], cfg: DatingConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{view: (hash buckets, counts)} of one passage's tokens (evals/dating_features.py)."""
    return hash_views(tokens, cfg.char_ngram_max, cfg.hash_bits)


def _rows(hashed, vocab: np.ndarray, idf: np.ndarray):
    """(row, col, value) of the log-count x IDF, L2-normalised matrix over the kept vocabulary."""
    r, c, v = [], [], []
    for i, (b, n) in enumerate(hashed):
        pos = np.searchsorted(vocab, b)
        keep = (pos < len(vocab)) & (vocab[np.minimum(pos, len(vocab) - 1)] == b)
        val = np.log1p(n[keep]).astype(np.float32) * idf[pos[keep]]
        r.append(np.full(keep.sum(), i)), c.append(pos[keep]), v.append(val / max(np.linalg.norm(val), 1e-12))
    cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
    return cat(r, np.int64), cat(c, np.int64), cat(v, np.float32)


def _blocks(rows, n: int, f: int, block: int = 2048):
    """The columns of X, n x `block` dense at a time. X X^T by dense blocks of the 16,384 kept columns took
    10 s here, torch's sparse x sparse product 28 s; no sparse tensors are needed at all."""
    r, c, v = rows
    order = np.argsort(c, kind="stable")
    r, c, v = r[order], c[order], v[order]
    for b0 in range(0, f, block):
        lo, hi = np.searchsorted(c, [b0, b0 + block])
        xb = torch.zeros(n, min(block, f - b0))
        xb[torch.from_numpy(r[lo:hi]), torch.from_numpy(c[lo:hi] - b0)] = torch.from_numpy(v[lo:hi])
        yield xb


def _source_folds(groups: list[str], years: np.ndarray, k: int) -> np.ndarray:
    """Leave-source-out folds: sources sorted by year, dealt round robin, so every fold spans the period."""
    first = {g: y for g, y in reversed(list(zip(groups, years)))}
    fold = {g: i % k for i, g in enumerate(sorted(first, key=lambda g: (first[g], g)))}
    return np.array([fold[g] for g in groups])


def _quantiles(p: np.ndarray, decades: np.ndarray, qs) -> np.ndarray:
    """Quantiles of distributions over decades, each decade uniform over its ten years. -> (len(p), len(qs))"""
    cdf = np.cumsum(p, 1)
    out = []
    for q in qs:
        i = np.minimum((cdf < q).sum(1), len(decades) - 1)
        before = np.where(i > 0, cdf[np.arange(len(p)), i - 1], 0.0)
        inside = p[np.arange(len(p)), i]
        out.append(decades[i] + 10 * np.clip((q - before) / np.maximum(inside, 1e-12), 0, 1))
    return np.stack(out, 1)


def _softmax(s: np.ndarray, t: float) -> np.ndarray:
    e = np.exp((s - s.max(1, keepdims=True)) / t)
    return e / e.sum(1, keepdims=True)


def _calibrate(s: np.ndarray, years: np.ndarray, decades: np.ndarray, cov: float) -> float:
    """Smallest temperature whose interval covers `cov` of the held-out passages (bisection in log T)."""
    def covered(t):
        q = _quantiles(_softmax(s, t), decades, [(1 - cov) / 2, (1 + cov) / 2])
        return ((years >= np.floor(q[:, 0])) & (years <= np.ceil(q[:, 1]))).mean()
    lo, hi = math.log(1e-4), math.log(10.0)
    for _ in range(40):
        lo, hi = (lo, (lo + hi) / 2) if covered(math.exp((lo + hi) / 2)) >= cov else ((lo + hi) / 2, hi)
    return math.exp(hi)


class DatingModel:
    """Per view (VIEWS): kept hash buckets, their IDF, ridge weights onto decades and a calibrated temperature;
    the gate (years of disagreement past which the lexis view dates a text) and the prior."""

    def __init__(self, config: DatingConfig, views: dict, decades, prior, gate: float, meta: dict):
        self.config, self.views, self.decades, self.prior = config, views, decades, prior
        self.gate, self.meta = float(gate), meta

    @property
    def temperature(self) -> float:
        return self.views["spelling"]["temperature"]

    @classmethod
    def fit(cls, corpus_dir: str | Path, config: DatingConfig | None = None,
            splits: tuple[str, ...] = FIT_SPLITS) -> "DatingModel":
        cfg, t0 = config or DatingConfig(), time.time()
        ps = corpus_passages(corpus_dir, cfg, splits)
        if not ps:
            raise ValueError(f"corpus {corpus_dir} has no passage of {cfg.min_passage_words}+ words in split(s) "
                             f"{', '.join(splits)} to fit the dating model on")
        group_of = author_groups({p["source_id"]: p.get("author") for p in ps})
        model = cls.fit_passages([hash_text(p["tokens"], cfg) for p in ps], np.array([p["year"] for p in ps]),
                                 [group_of[p["source_id"]] for p in ps], cfg, [p["source_id"] for p in ps])
        model.meta.update(corpus_fingerprint=load_report(corpus_dir).get("fingerprint"), splits=list(splits),
                          train_seconds=round(time.time() - t0, 1))
        return model

    @classmethod
    def fit_passages(cls, hashed: list[dict], years: np.ndarray, groups: list[str], cfg: DatingConfig,
                     sources: list[str] | None = None) -> "DatingModel":
        """Fit on hashed passages ({view: (buckets, counts)}). `groups` (author groups) define the inner folds
        that calibrate each view's temperature and choose the gate; `sources` (default: groups) say which
        passages are one text, since the gate is chosen by the inner folds' whole-text error."""
        if len(set(groups)) < cfg.calibration_folds:
            raise ValueError(f"need at least calibration_folds={cfg.calibration_folds} sources, got {len(set(groups))}")
        years = np.asarray(years, dtype=np.int64)
        decades = np.arange(years.min() // 10 * 10, years.max() // 10 * 10 + 1, 10)
        dec_of = np.searchsorted(decades, years // 10 * 10)
        weight = 1.0 / np.bincount(dec_of, minlength=len(decades))[dec_of]  # each decade weighs the same
        target = np.exp(-0.5 * ((years[:, None] - decades[None, :] - 5) / cfg.label_sigma) ** 2)
        target = torch.from_numpy((target / target.sum(1, keepdims=True)).astype(np.float32))
        damp = torch.from_numpy((cfg.ridge / (weight / weight.mean())).astype(np.float32))
        folds = _source_folds(groups, years, cfg.calibration_folds)
        views, held = {}, {}
        for view in VIEWS:
            views[view], held[view] = _fit_view([h[view] for h in hashed], years, decades, target, damp, folds,
                                                cfg, cfg.features if view == "spelling" else cfg.lexis_features)
        text_of = np.unique(np.asarray(sources if sources is not None else groups), return_inverse=True)[1]
        text_scores = {v: np.stack([held[v][text_of == t].mean(0) for t in range(text_of.max() + 1)]) for v in VIEWS}
        text_years = np.array([years[text_of == t][0] for t in range(text_of.max() + 1)])
        errors = [float(np.abs(_choose(views, text_scores, decades, gate, [0.5])[0][:, 0].round() - text_years).mean())
                  for gate in cfg.gate_years]
        best = min(range(len(errors)), key=lambda i: (round(errors[i], 6), -cfg.gate_years[i]))  # ties: the wider
        prior = np.bincount(dec_of, minlength=len(decades)).astype(np.float64)
        return cls(cfg, views, decades, prior / prior.sum(), cfg.gate_years[best],
                   {"passages": len(hashed), "sources": len(set(sources or groups)), "author_groups": len(set(groups)),
                    "inner_text_mae_by_gate": dict(zip(map(str, cfg.gate_years), [round(e, 2) for e in errors]))})

    def scores(self, hashed: list, view: str = "spelling") -> np.ndarray:
        """Decade scores (passages x decades) of one view's hashed passages."""
        v = self.views[view]
        r, c, x = _rows(hashed, v["vocab"], v["idf"])
        bounds = np.searchsorted(r, np.arange(len(hashed) + 1))  # _rows emits rows in order
        return np.stack([x[a:b] @ v["weights"][c[a:b]] for a, b in zip(bounds[:-1], bounds[1:])])

    def estimate(self, scores: dict[str, np.ndarray], qs=None) -> tuple[np.ndarray, np.ndarray]:
        """(quantiles qs [default: median, low, high], lexis chosen?) of rows of decade scores {view: n x D}."""
        c = self.config.coverage
        return _choose(self.views, scores, self.decades, self.gate, qs or [0.5, (1 - c) / 2, (1 + c) / 2])

    def _summary(self, p: np.ndarray) -> dict:
        c = self.config.coverage
        lo, mid, hi = _quantiles(p[None], self.decades, [(1 - c) / 2, 0.5, (1 + c) / 2])[0]
        return {"year": int(round(mid)), "low": math.floor(lo), "high": math.ceil(hi), "interval": c,
                "decade_probs": {int(d): round(float(x), 4) for d, x in zip(self.decades, p) if x >= 5e-4}}

    def date(self, text: str) -> dict:
        """{"year", "low", "high", "interval", "decade_probs", "words" (read: a sample of long texts),
        "passages", "view" (the view that dated it), "flag"}; see FLAGS."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        passages, words = text_passages(text, self.config)
        hashed = [hash_text(p, self.config) for p in passages]
        base = {"words": words, "passages": len(passages)}
        spelling = [h["spelling"] for h in hashed]
        if not passages or len(_rows(spelling, self.views["spelling"]["vocab"], self.views["spelling"]["idf"])[0]) \
                < MIN_EVIDENCE:
            return {**self._summary(self.prior), **base, "view": None,
                    "flag": "empty" if not passages else "no_evidence"}
        s = {v: self.scores([h[v] for h in hashed], v).mean(0, keepdims=True) for v in VIEWS}
        view = "lexis" if self.estimate(s)[1][0] else "spelling"
        p = _softmax(s[view], self.views[view]["temperature"])[0]
        return {**self._summary(p), **base, "view": view,
                "flag": "short" if words < self.config.min_passage_words else None}

    def save(self, path: str | Path) -> Path:
        """Folder with dating.safetensors and dating.json (written last, holding the tensors' sha256)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {"decades": self.decades, "prior": self.prior}
        tensors.update({f"{v}.{k}": self.views[v][k] for v in VIEWS for k in ("vocab", "idf", "weights")})
        blob = path / "dating.safetensors"
        with atomic_path(blob) as tmp:
            save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, tmp)
        meta = {"format_version": FORMAT_VERSION, "config": asdict(self.config), "gate": self.gate,
                "temperatures": {v: self.views[v]["temperature"] for v in VIEWS}, "meta": self.meta,
                "sha256": hashlib.sha256(blob.read_bytes()).hexdigest()}
        write_json_atomic(path / "dating.json", meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DatingModel":
        path = Path(path)
        meta = json.loads((path / "dating.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version={meta.get('format_version')!r}, expected {FORMAT_VERSION}")
        blob = path / "dating.safetensors"
        if hashlib.sha256(blob.read_bytes()).hexdigest() != meta["sha256"]:
            raise ValueError(f"{blob} does not match the sha256 in dating.json (interrupted or mixed write)")
        t = {k: v.numpy() for k, v in load_file(blob).items()}
        views = {v: {"vocab": t[f"{v}.vocab"], "idf": t[f"{v}.idf"], "weights": t[f"{v}.weights"],
                     "temperature": meta["temperatures"][v]} for v in VIEWS}
        return cls(DatingConfig(**meta["config"]), views, t["decades"], t["prior"], meta["gate"], meta["meta"])


def _fit_view(hashed: list, years, decades, target, damp, folds, cfg: DatingConfig, features: int):
    """One view's ridge model ({vocab, idf, weights, temperature}) and its inner held-out decade scores."""
    df = np.bincount(np.concatenate([b for b, _ in hashed]), minlength=1 << cfg.hash_bits)
    top = np.argsort(-df, kind="stable")[:features]
    vocab = np.sort(top[df[top] >= 2])  # a bucket seen in one passage cannot generalise
    idf = (np.log((1 + len(hashed)) / (1 + df[vocab])) + 1).astype(np.float32)
    n, rows = len(hashed), _rows(hashed, vocab, idf)
    gram = torch.zeros(n, n)
    for xb in _blocks(rows, n, len(vocab)):
        gram.addmm_(xb, xb.T)

    def solve(idx):
        i = torch.from_numpy(idx)
        return torch.cholesky_solve(target[i], torch.linalg.cholesky(gram[i][:, i] + torch.diag(damp[i])))

    held = np.zeros((n, len(decades)), np.float32)
    for f in range(cfg.calibration_folds):
        tr, te = np.where(folds != f)[0], np.where(folds == f)[0]
        held[te] = (gram[torch.from_numpy(te)][:, torch.from_numpy(tr)] @ solve(tr)).numpy()
    alpha = solve(np.arange(n))
    weights = torch.cat([xb.T @ alpha for xb in _blocks(rows, n, len(vocab))]).numpy()  # primal w = X^T a
    return {"vocab": vocab, "idf": idf, "weights": weights.astype(np.float32),
            "temperature": _calibrate(held, years, decades, cfg.coverage)}, held


def _choose(views: dict, scores: dict, decades: np.ndarray, gate: float, qs) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles qs of each row's distribution, from the lexis view where its median is more than `gate`
    years before the spelling view's (a modernised edition: early vocabulary, modern spelling), else from
    the spelling view. -> (n x len(qs), lexis chosen?)"""
    q = {v: _quantiles(_softmax(scores[v], views[v]["temperature"]), decades, [0.5, *qs]) for v in VIEWS}
    lexis = q["spelling"][:, 0] - q["lexis"][:, 0] > gate
    return np.where(lexis[:, None], q["lexis"][:, 1:], q["spelling"][:, 1:]), lexis


def _cache_dir(corpus_dir: str | Path, cache_dir: str | Path | None) -> Path:
    """cache_dir, or the corpus folder's sibling "cache/dating" (data/cache/dating for data/corpus)."""
    return Path(cache_dir) if cache_dir is not None else Path(corpus_dir).resolve().parent / "cache" / "dating"


def load_or_fit(corpus_dir: str | Path, cache_dir: str | Path | None = None,
                config: DatingConfig | None = None, splits: tuple[str, ...] = FIT_SPLITS) -> DatingModel:
    """The model for a corpus, from <cache_dir>/<fingerprint[:16]>-<config+splits hash[:8]> or fitted on
    `splits` and cached."""
    cfg = config or DatingConfig()
    fp = load_report(corpus_dir).get("fingerprint") or "nofingerprint"
    key = hashlib.sha256(json.dumps([asdict(cfg), list(splits)], sort_keys=True).encode()).hexdigest()[:8]
    path = _cache_dir(corpus_dir, cache_dir) / f"{fp[:16]}-{key}"
    if (path / "dating.json").exists():
        try:
            return DatingModel.load(path)
        except (ValueError, OSError, KeyError, json.JSONDecodeError):
            pass  # stale or half-written cache: refit below
    model = DatingModel.fit(corpus_dir, cfg, splits)
    model.save(path)
    return model


@lru_cache(maxsize=4)
def _cached_model(corpus_dir: str, cache_dir: str | None, fingerprint: str) -> DatingModel:
    return load_or_fit(corpus_dir, cache_dir)


def _model_for(corpus_dir: str | Path | None, cache_dir: str | Path | None) -> DatingModel:
    if corpus_dir is None:
        raise ValueError("date needs a corpus (corpus_dir / --corpus DIR, a built corpus folder): the dating "
                         "model is fitted on its train split")
    fp = load_report(corpus_dir).get("fingerprint") or ""  # CorpusError when it is not a built corpus
    return _cached_model(str(Path(corpus_dir).resolve()), None if cache_dir is None else str(Path(cache_dir).resolve()),
                         fp)


def date(text: str, corpus_dir: str | Path | None = None, cache_dir: str | Path | None = None) -> dict:
    """Date a passage: {"year", "low", "high"} (central 80% interval) plus "decade_probs", "words",
    "passages" and "flag" (None, "short", "empty", "no_evidence"), by the model of `corpus_dir`'s train split
    (fitted and cached on first use; ValueError when corpus_dir is None)."""
    return _model_for(corpus_dir, cache_dir).date(text)


def date_jsonl(in_path: str | Path, out_path: str | Path, corpus_dir: str | Path | None = None,
               cache_dir: str | Path | None = None, model: DatingModel | None = None) -> int:
    """Read {"id", "text"} lines, write {"id", "year", "low", "high"} lines (same order); returns the count."""
    model = model or _model_for(corpus_dir, cache_dir)
    out = []
    with open(in_path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if not (isinstance(rec, dict) and "id" in rec and isinstance(rec.get("text"), str)):
                raise ValueError(f"{in_path}:{n}: need a JSON object with 'id' and a string 'text'")
            r = model.date(rec["text"])
            out.append(json.dumps({"id": rec["id"], "year": r["year"], "low": r["low"], "high": r["high"]}))
    out_path = Path(out_path)
    with atomic_file(out_path) as f:
        f.write("".join(x + "\n" for x in out))
    return len(out)

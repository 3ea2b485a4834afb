"""Period dating of text: `date(text, corpus_dir)` -> {"year", "low", "high"} (a calibrated central 80%
interval), the model behind it (`DatingModel`: fit / save / load, cached per corpus fingerprint), and the batch
file interface `date_jsonl` for outside graders. Cross-validation lives in evals/dating_cv.py.

The corpus is always explicit (no default folder: `date` without one is a ValueError) and the served model is
fitted on its train split only, so dating validation or test text is a held-out measurement.

Method: passages of 300 words, at most 20 evenly spaced per source (Pepys and the ELTeC novels must not swamp
the 5-11 texts of a decade); hashed character 2-4-grams inside word boundaries (case kept: 18th-century
capitalised Nouns date text) plus lower-cased word unigrams and bigrams, log-count x IDF, L2-normalised; the
16,384 most widespread buckets kept. Decade-balanced ridge regression onto Gaussian-smoothed decade labels
(sigma 30 years) gives decade scores; softmax(scores / T) is a distribution over decades (uniform within
each); the year is its median and the interval its 10th-90th percentiles, T chosen by inner leave-source-out
folds so that the interval covers 80% of held-out passages. Ridge is solved in the dual (one Cholesky of the
passage Gram, ~1 s) so that calibration and CV folds are cheap. Leave-source-out CV on the 197-text corpus
(10 folds, before the splits were by source): MAE 13.8 years (1500s 9.0, 1600s 15.4, 1700s 16.2, 1800s 14.2), coverage 0.80 (0.73-0.85 by
century); ridge straight onto the year gave MAE 23 (shrinks to the mean), sigma 10 / 20 / 30 gave 15.8 / 14.6
/ 14.3 (40 passages per source). Standard Ebooks (Pepys, 1800s) and NLTK Shakespeare are modernised, so the
features carry lexis and function words, not spelling alone; Pepys is still dated ~90 years late.

Bad input never raises for a str: empty text, or text with under MIN_EVIDENCE known features (CJK, binary),
gets the corpus prior and flag "empty" / "no_evidence"; under 100 words the flag is "short" (dated; CV on
60-word snippets: MAE 22, coverage 0.81). Long text is sampled (16 passages), so 10 MB costs ~1 MB.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
import unicodedata
import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from engine.corpus_io import SPLITS, iter_documents, load_report
from engine.normalize import normalize as normalize_text

FIT_SPLITS = ("train",)  # the served model never sees validation or test text
FORMAT_VERSION = 1
FLAGS = (None, "short", "empty", "no_evidence")
MIN_EVIDENCE = 10  # distinct known features below which a text is dated by the prior (CJK, binary noise)

_FNV, _GOLD = np.uint64(0x100000001B3), np.uint64(0x9E3779B97F4A7C15)
_GAP = re.compile(r"\u3008[^\u3009]*\u3009")  # the corpus's gap marker for illegible text: not language
_DASH = re.compile(r"[\u2010-\u2015\u2212\u2e3a\u2e3b]|-{2,}")  # SE "—" vs NLTK "--": a typesetting habit
# ELTeC prints apostrophes as U+00B4 (7,031 of them): a source habit the model must not learn as a date.
_PUNCT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u00b4": "'", "`": "'", "\u02bc": "'",
                        "\u201c": '"', "\u201d": '"', "\u00ad": None})
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


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

    def __post_init__(self):
        ranges = {"passage_words": (20, 5000), "min_passage_words": (1, self.passage_words),
                  "max_passages_per_source": (1, 100000), "max_text_passages": (1, 1000),
                  "char_ngram_max": (2, 8), "hash_bits": (10, 26), "features": (16, 1 << 22),
                  "ridge": (1e-6, 1e6), "label_sigma": (1.0, 500.0), "coverage": (0.05, 0.99),
                  "calibration_folds": (2, 100)}
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if not lo <= v <= hi:
                raise ValueError(f"DatingConfig.{name}={v!r} is outside the allowed range [{lo}, {hi}]")


def normalize(text: str) -> str:
    """NFKC (long s -> s, ligatures), straight quotes, one dash, no gap markers."""
    return _DASH.sub("-", _GAP.sub(" ", unicodedata.normalize("NFKC", text).translate(_PUNCT)))


@lru_cache(maxsize=1 << 17)  # bounded: graders pass arbitrary text
def _word_hash(word: str) -> int:
    return zlib.crc32(word.encode("utf-8", "replace"))


def hash_passage(tokens: list[str], cfg: DatingConfig) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace tokens -> (sorted hash buckets, counts). Character n-grams stay inside " token " as in
    scikit-learn's char_wb; the hashes are FNV-style on code points, stable across runs and machines."""
    s = " " + "  ".join(tokens) + " "
    codes = np.frombuffer(s.encode("utf-32-le", "replace"), dtype=np.uint32).astype(np.uint64)
    space = codes == 32
    spaces_before = np.concatenate([[0], np.cumsum(space)])
    parts = []
    with np.errstate(over="ignore"):
        for n in range(2, cfg.char_ngram_max + 1):
            m = len(codes) - n + 1
            if m <= 0:
                continue
            ok = spaces_before[n - 1:n - 1 + m] == spaces_before[1:1 + m]  # no space inside the n-gram
            if n == 2:
                ok &= ~(space[:m] & space[1:1 + m])  # the gap between two padded tokens
            h = np.full(m, np.uint64(7919 * n), dtype=np.uint64)
            for k in range(n):
                h = (h ^ codes[k:k + m]) * _FNV
            parts.append(h[ok])
        words = _WORD.findall(" ".join(tokens).lower())
        wh = np.array([_word_hash(w) for w in words], dtype=np.uint64)
        parts.append((wh + np.uint64(1)) * _FNV * _FNV)
        parts.append(((wh[:-1] * _FNV) ^ wh[1:]) * _FNV + np.uint64(12345))
        buckets = np.sort(((np.concatenate(parts) * _GOLD) >> np.uint64(64 - cfg.hash_bits)).astype(np.int64))
    starts = np.flatnonzero(np.diff(buckets, prepend=-1))  # sort-based unique: 3x np.unique's time here
    return buckets[starts], np.diff(starts, append=len(buckets))


def _windows(tokens: list[str], cfg: DatingConfig) -> list[list[str]]:
    w = cfg.passage_words
    return [tokens[i:i + w] for i in range(0, len(tokens), w) if len(tokens[i:i + w]) >= cfg.min_passage_words]


def _evenly(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int)) if n else np.zeros(0, int)


def corpus_passages(corpus_dir: str | Path, cfg: DatingConfig, splits: tuple[str, ...] = SPLITS) -> list[dict]:
    """Up to max_passages_per_source evenly spaced passages per source of the given splits, each with its
    source_id, year, archive ("source") and author. Two passes over the shards so only the chosen passages
    are held."""
    counts: dict[str, list[int]] = {}
    for split in splits:
        for d in iter_documents(corpus_dir, split):
            counts.setdefault(d["source_id"], []).append(len(_windows(d["text"].split(), cfg)))
    chosen = {sid: set(_evenly(sum(c), cfg.max_passages_per_source).tolist()) for sid, c in counts.items()}
    seen = {sid: 0 for sid in counts}
    out = []
    for split in splits:
        for d in iter_documents(corpus_dir, split):
            sid = d["source_id"]
            for win in _windows(d["text"].split(), cfg):
                if seen[sid] in chosen[sid]:
                    out.append({"source_id": sid, "year": int(d["year"]), "source": d.get("source"),
                                "author": d.get("author"), "tokens": normalize(" ".join(win)).split()})
                seen[sid] += 1
    return out


def text_passages(text: str, cfg: DatingConfig) -> tuple[list[list[str]], int]:
    """(passages, words) of an input text; past max_text_passages passages, evenly spaced character slices
    are taken (their cut first/last tokens dropped) so memory does not grow with the text."""
    span = cfg.passage_words * 12  # chars per slice: ~6 chars a word in the corpus, with room to spare
    if len(text) > span * cfg.max_text_passages * 2:
        starts = np.linspace(0, len(text) - span, cfg.max_text_passages).astype(int)
        passages = [p for s in starts  # engine/normalize.py per slice: memory stays flat
                    if (p := normalize(normalize_text(text[s:s + span])).split()[1:-1][:cfg.passage_words])]
        return passages, sum(map(len, passages))
    tokens = normalize(normalize_text(text)).split()  # read as the corpus was (vv, long s, mojibake)
    wins = [tokens[i:i + cfg.passage_words] for i in range(0, len(tokens), cfg.passage_words)]
    if len(wins) > 1 and len(wins[-1]) < cfg.min_passage_words:
        wins = wins[:-1]
    return [wins[i] for i in _evenly(len(wins), cfg.max_text_passages)], len(tokens)


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
    """Kept hash buckets, their IDF, ridge weights onto decades, the calibrated temperature and the prior."""

    def __init__(self, config: DatingConfig, vocab, idf, weights, decades, prior, temperature: float, meta: dict):
        self.config, self.vocab, self.idf, self.weights = config, vocab, idf, weights
        self.decades, self.prior, self.temperature, self.meta = decades, prior, float(temperature), meta

    @classmethod
    def fit(cls, corpus_dir: str | Path, config: DatingConfig | None = None,
            splits: tuple[str, ...] = FIT_SPLITS) -> "DatingModel":
        cfg, t0 = config or DatingConfig(), time.time()
        ps = corpus_passages(corpus_dir, cfg, splits)
        if not ps:
            raise ValueError(f"corpus {corpus_dir} has no passage of {cfg.min_passage_words}+ words in split(s) "
                             f"{', '.join(splits)} to fit the dating model on")
        model = cls.fit_passages([hash_passage(p["tokens"], cfg) for p in ps], np.array([p["year"] for p in ps]),
                                 [p["source_id"] for p in ps], cfg)
        model.meta.update(corpus_fingerprint=load_report(corpus_dir).get("fingerprint"), splits=list(splits),
                          train_seconds=round(time.time() - t0, 1))
        return model

    @classmethod
    def fit_passages(cls, hashed: list, years: np.ndarray, groups: list[str], cfg: DatingConfig) -> "DatingModel":
        """Fit on hashed passages; `groups` (source ids) define the inner folds that calibrate T."""
        if len(set(groups)) < cfg.calibration_folds:
            raise ValueError(f"need at least calibration_folds={cfg.calibration_folds} sources, got {len(set(groups))}")
        years = np.asarray(years, dtype=np.int64)
        decades = np.arange(years.min() // 10 * 10, years.max() // 10 * 10 + 1, 10)
        df = np.bincount(np.concatenate([b for b, _ in hashed]), minlength=1 << cfg.hash_bits)
        top = np.argsort(-df, kind="stable")[:cfg.features]
        vocab = np.sort(top[df[top] >= 2])  # a bucket seen in one passage cannot generalise
        idf = (np.log((1 + len(hashed)) / (1 + df[vocab])) + 1).astype(np.float32)
        n, rows = len(hashed), _rows(hashed, vocab, idf)
        gram = torch.zeros(n, n)
        for xb in _blocks(rows, n, len(vocab)):
            gram.addmm_(xb, xb.T)
        dec_of = np.searchsorted(decades, years // 10 * 10)
        weight = 1.0 / np.bincount(dec_of, minlength=len(decades))[dec_of]  # each decade weighs the same
        weight = weight / weight.mean()
        target = np.exp(-0.5 * ((years[:, None] - decades[None, :] - 5) / cfg.label_sigma) ** 2)
        target = torch.from_numpy((target / target.sum(1, keepdims=True)).astype(np.float32))
        damp = torch.from_numpy((cfg.ridge / weight).astype(np.float32))

        def solve(idx):
            i = torch.from_numpy(idx)
            a = gram[i][:, i] + torch.diag(damp[i])
            return torch.cholesky_solve(target[i], torch.linalg.cholesky(a))

        folds, held = _source_folds(groups, years, cfg.calibration_folds), np.zeros((n, len(decades)), np.float32)
        for f in range(cfg.calibration_folds):
            tr, te = np.where(folds != f)[0], np.where(folds == f)[0]
            held[te] = (gram[torch.from_numpy(te)][:, torch.from_numpy(tr)] @ solve(tr)).numpy()
        temperature = _calibrate(held, years, decades, cfg.coverage)
        alpha = solve(np.arange(n))
        weights = torch.cat([xb.T @ alpha for xb in _blocks(rows, n, len(vocab))]).numpy()  # primal w = X^T a
        prior = np.bincount(dec_of, minlength=len(decades)).astype(np.float64)
        return cls(cfg, vocab, idf, weights.astype(np.float32), decades, prior / prior.sum(), temperature,
                   {"passages": n, "sources": len(set(groups))})

    def scores(self, hashed: list) -> np.ndarray:
        """Decade scores (passages x decades) of hashed passages."""
        r, c, v = _rows(hashed, self.vocab, self.idf)
        n = len(hashed)
        bounds = np.searchsorted(r, np.arange(n + 1))  # _rows emits rows in order
        return np.stack([v[a:b] @ self.weights[c[a:b]] for a, b in zip(bounds[:-1], bounds[1:])])

    def _summary(self, p: np.ndarray) -> dict:
        c = self.config.coverage
        lo, mid, hi = _quantiles(p[None], self.decades, [(1 - c) / 2, 0.5, (1 + c) / 2])[0]
        return {"year": int(round(mid)), "low": math.floor(lo), "high": math.ceil(hi), "interval": c,
                "decade_probs": {int(d): round(float(x), 4) for d, x in zip(self.decades, p) if x >= 5e-4}}

    def date(self, text: str) -> dict:
        """{"year", "low", "high", "interval", "decade_probs", "words" (read: a sample of long texts),
        "passages", "flag"}; see FLAGS."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        passages, words = text_passages(text, self.config)
        hashed = [hash_passage(p, self.config) for p in passages]
        base = {"words": words, "passages": len(passages)}
        if not passages or len(_rows(hashed, self.vocab, self.idf)[0]) < MIN_EVIDENCE:
            return {**self._summary(self.prior), **base, "flag": "empty" if not passages else "no_evidence"}
        p = _softmax(self.scores(hashed).mean(0, keepdims=True), self.temperature)[0]
        return {**self._summary(p), **base, "flag": "short" if words < self.config.min_passage_words else None}

    def save(self, path: str | Path) -> Path:
        """Folder with dating.safetensors and dating.json (written last, holding the tensors' sha256)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {"vocab": self.vocab, "idf": self.idf, "weights": self.weights, "decades": self.decades,
                   "prior": self.prior}
        blob = path / "dating.safetensors"
        _atomic(blob, lambda tmp: save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                                             tensors.items()}, tmp))
        meta = {"format_version": FORMAT_VERSION, "config": asdict(self.config), "temperature": self.temperature,
                "meta": self.meta, "sha256": hashlib.sha256(blob.read_bytes()).hexdigest()}
        _atomic(path / "dating.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
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
        return cls(DatingConfig(**meta["config"]), t["vocab"], t["idf"], t["weights"], t["decades"], t["prior"],
                   meta["temperature"], meta["meta"])


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    _atomic(out_path, lambda tmp: Path(tmp).write_text("".join(x + "\n" for x in out), encoding="utf-8"))
    return len(out)

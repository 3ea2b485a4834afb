"""Corpus build driver (one function per user action: build, report, read documents).

`build_corpus(CorpusConfig)` assigns every selected source to train, validation or test (training/splits.py),
runs the datatrove stages of training/pipeline.py into a hidden temp folder next to the output and renames
it into place only when everything succeeded (engine/atomic.atomic_dir): an interrupted or failed build, a
full disk included, leaves the previous corpus untouched and nothing half-written. The stages run on
datatrove's LocalPipelineExecutor by default; any executor factory with the same arguments works
(`executor=`, e.g. RayPipelineExecutor, see tests/test_corpus_ray.py) and gives the same corpus.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor

from engine.atomic import atomic_dir, write_json_atomic
from engine.corpus_io import CorpusError, iter_documents, load_report, read_jsonl_dir  # noqa: F401 (re-exported)
from training import pipeline as P
from training.clean import CleanConfig
from training.documents import DocumentConfig
from training.extract import ExtractConfig
from training.fetch import FetchConfig
from training.manifest import Selection, read_manifest
from training.report import build_report, render_markdown
from training.splits import SplitConfig, assign_splits

log = logging.getLogger("anno.corpus")


@dataclass(frozen=True)
class CorpusConfig:
    manifest: str = "training/sources.jsonl"
    out: str = "data/corpus"
    mirror: str | None = None
    cache_dir: str = "data/cache/sources"
    selection: Selection = field(default_factory=Selection)
    workers: int = 2
    tasks: int = 0  # 0: derived, four per worker (fewer when there are fewer sources) to balance big texts
    strict: bool = False  # any per-source error fails the build
    val_fraction: float = 0.05   # share of sources held out for validation (tuning, early stopping)
    test_fraction: float = 0.05  # share of sources held out for test (reported figures only)
    seed: int = 0
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    docs: DocumentConfig = field(default_factory=DocumentConfig)

    def __post_init__(self):
        if not 1 <= self.workers <= 256:
            raise ValueError(f"workers={self.workers} must be in 1..256")
        if not 0 <= self.tasks <= 100_000:
            raise ValueError(f"tasks={self.tasks} must be in 0..100000 (0 = derived from workers)")
        SplitConfig(self.val_fraction, self.test_fraction, self.seed)  # ValueError naming a bad fraction

    @property
    def split(self) -> SplitConfig:
        return SplitConfig(val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=self.seed)


def _balanced_shards(records: list[dict], tasks: int) -> list[list[dict]]:
    """Longest-processing-time assignment by bytes, so one big novel does not leave a worker idle."""
    shards: list[list[dict]] = [[] for _ in range(tasks)]
    loads = [0] * tasks
    for rec in sorted(records, key=lambda r: -sum(f.get("bytes") or 0 for f in r["files"])):
        i = loads.index(min(loads))
        shards[i].append(rec)
        loads[i] += sum(f.get("bytes") or 0 for f in rec["files"])
    return shards


def local_executor(steps, tasks: int, workers: int, logging_dir: str):
    """The default executor factory: datatrove's LocalPipelineExecutor (worker processes on this machine)."""
    return LocalPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=logging_dir, skip_completed=False)


def _run(name: str, steps, tasks: int, workers: int, work: Path, step: int, total: int, timings: dict, executor):
    t = time.time()
    log.info("[%d/%d] %s: %d task(s) on %d worker(s)", step, total, name, tasks, min(workers, tasks))
    executor(steps, tasks=tasks, workers=min(workers, tasks), logging_dir=str(work / "logs" / name)).run()
    timings[name] = round(time.time() - t, 2)
    log.info("[%d/%d] %s done in %.1fs", step, total, name, timings[name])


def build_corpus(cfg: CorpusConfig, executor=local_executor) -> dict:
    """Build the corpus described by cfg into cfg.out and return its report (also report.json/.md).

    executor(steps, tasks=, workers=, logging_dir=) returns a datatrove executor to run one stage."""
    t0 = time.time()
    records, manifest_errors = read_manifest(cfg.manifest)  # ManifestError: unreadable manifest
    selected = [r for r in records if cfg.selection.keeps(r)]
    if not selected:
        raise CorpusError(f"no source of {cfg.manifest} matches the selection {asdict(cfg.selection)}")
    assignment = assign_splits(selected, cfg.split)
    selected = [{**r, "split": assignment[r["id"]]} for r in selected]
    out = Path(cfg.out)
    tasks = cfg.tasks or max(1, min(len(selected), 4 * cfg.workers))
    fetch = FetchConfig(mirror=cfg.mirror, cache_dir=cfg.cache_dir)
    timings: dict[str, float] = {}
    n, ex = 6, executor
    # atomic_dir: a failed build (a full disk included: DiskFullError says so) removes its partial folder and
    # leaves the previous corpus as it was
    with atomic_dir(out, what=f"the corpus {out}") as tmp:
        work = tmp / "_work"
        w = str(work)
        _run("extract", P.stage_extract(w, _balanced_shards(selected, tasks), fetch, cfg.extract, cfg.clean,
                                        cfg.docs), tasks, cfg.workers, work, 1, n, timings, ex)
        _run("exact", P.stage_exact(w), 1, 1, work, 2, n, timings, ex)
        _run("unique", P.stage_unique(w), tasks, cfg.workers, work, 3, n, timings, ex)
        _run("buckets", P.stage_buckets(w), P.MINHASH.num_buckets, cfg.workers, work, 4, n, timings, ex)
        _run("cluster", P.stage_cluster(w), 1, 1, work, 5, n, timings, ex)
        _run("dedup", P.stage_dedup(w, str(tmp)), tasks, cfg.workers, work, 6, n, timings, ex)
        index = list(read_jsonl_dir(work / "index"))
        if not index:
            raise CorpusError("no document survived extraction and filtering; see the errors in the log above")
        timings["total"] = round(time.time() - t0, 2)
        errors = [e.as_dict() for e in manifest_errors] + list(read_jsonl_dir(work / "errors"))
        rejects = [r for reason in ("quality", "exact", "near") for r in read_jsonl_dir(work / "rejects" / reason)]
        report = build_report(tmp, index, selected, errors, rejects, _config_dict(cfg), timings, assignment)
        if cfg.strict and errors:
            raise CorpusError(f"--strict: {len(errors)} source error(s), first: {errors[0]['message']}")
        write_json_atomic(tmp / "report.json", report)
        (tmp / "report.md").write_text(render_markdown(report), encoding="utf-8")
        shutil.rmtree(work)
    log.info("corpus: %d documents, %d words from %d texts in %.1fs -> %s", report["totals"]["documents"],
             report["totals"]["words"], report["totals"]["texts_kept"], timings["total"], out)
    return report


def _config_dict(cfg: CorpusConfig) -> dict:
    d = asdict(cfg)
    d["manifest_sha256"] = hashlib.sha256(Path(cfg.manifest).read_bytes()).hexdigest()
    d["split"] = asdict(cfg.split)
    return d

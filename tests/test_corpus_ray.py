"""The scale-out claim, tested: the corpus pipeline's stages run unchanged on datatrove's RayPipelineExecutor
(a local Ray cluster of 2 CPUs) and produce exactly the corpus the LocalPipelineExecutor produces: the same
documents, ids, text, metadata and splits, shard by shard."""
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from engine.corpus_io import SPLITS, read_jsonl_dir
from fixtures import period_text
from training.corpus import CorpusConfig, build_corpus

ROOT = Path(__file__).resolve().parents[1]


def ray_executor(steps, tasks: int, workers: int, logging_dir: str):
    from datatrove.executor.ray import RayPipelineExecutor

    # 1 CPU and 0.5 GB per Ray task (datatrove's default asks 2 GB per CPU); each Ray task (an actor process)
    # runs its share of the datatrove ranks, so a stage starts `workers` actors instead of one per rank
    per_job = -(-tasks // workers)
    return RayPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=logging_dir, skip_completed=False,
                               cpus_per_task=1, mem_per_cpu_gb=0.5, tasks_per_job=per_job)


def manifest(root: Path, n: int = 16) -> Path:
    src = root / "src"
    src.mkdir(parents=True)
    recs = []
    for i in range(n):
        data = period_text(100 + i).encode()
        (src / f"r{i}.txt").write_bytes(data)
        recs.append({"id": f"r{i}", "source": "test", "format": "text", "title": f"R {i}", "author": "Anon",
                     "year": 1560 + 5 * i, "london": True, "license": "CC0-1.0", "attribution": "",
                     "files": [{"path": f"r{i}.txt", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}]})
    # a repeated source, so that the dedup stages have work to do on both executors
    recs.append({**recs[3], "id": "r3-copy", "year": 1700})
    path = root / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def corpus_content(out: Path) -> dict:
    """Every shard's decoded lines (gzip headers carry a timestamp, so bytes differ run to run) and the report's
    build-independent parts."""
    report = json.loads((out / "report.json").read_text())
    shards = {f: [json.loads(x) for x in gzip.open(out / f, "rt")] for s in SPLITS
              for f in report["files"][s]}
    keep = ("totals", "splits", "by_decade", "by_split_decade", "split_sources", "split_assignment", "rejects",
            "errors", "files", "by_source")
    return {"shards": shards, "report": {k: report[k] for k in keep}}


@pytest.mark.slow
@pytest.mark.ray
def test_ray_executor_builds_the_same_corpus_as_the_local_one(tmp_path):
    ray = pytest.importorskip("ray")
    m = manifest(tmp_path)
    common = dict(manifest=str(m), mirror=str(tmp_path / "src"), workers=2, tasks=2, val_fraction=0.2,
                  test_fraction=0.1)
    build_corpus(CorpusConfig(out=str(tmp_path / "local"), cache_dir=str(tmp_path / "c1"), **common))
    # Ray workers import training/ from this checkout; env_vars needs no package download
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 1024 ** 2,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        build_corpus(CorpusConfig(out=str(tmp_path / "ray"), cache_dir=str(tmp_path / "c2"), **common),
                     executor=ray_executor)
    finally:
        ray.shutdown()
    local, on_ray = corpus_content(tmp_path / "local"), corpus_content(tmp_path / "ray")
    assert local == on_ray
    docs = [d for s in SPLITS for d in read_jsonl_dir(tmp_path / "ray" / s)]
    assert {d["split"] for d in docs} == set(SPLITS)  # every split is exercised
    assert local["report"]["rejects"]["exact_duplicate"]["documents"] == 1

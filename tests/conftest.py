"""Shared pytest setup: opt-in markers (gpu, network, ray, long) and paths to the shared corpus mirror."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIRROR = Path(os.environ.get("ANNO_MIRROR", ROOT.parent / "shared" / "corpus"))


@pytest.fixture(scope="session", autouse=True)
def _own_compiled_step_cache(tmp_path_factory):
    """engine/compiled_step.py loads packages from ANNO_AOTI_CACHE (else ~/.cache/anno/aoti): tests get their
    own empty folder, so what a user compiled never changes which step a test runs."""
    before = os.environ.get("ANNO_AOTI_CACHE")
    os.environ["ANNO_AOTI_CACHE"] = str(tmp_path_factory.mktemp("aoti"))
    yield
    if before is None:
        os.environ.pop("ANNO_AOTI_CACHE", None)
    else:
        os.environ["ANNO_AOTI_CACHE"] = before


def pytest_addoption(parser):
    parser.addoption("--run-gpu", action="store_true", help="run tests marked gpu")
    parser.addoption("--run-network", action="store_true", help="run tests marked network")
    parser.addoption("--run-ray", action="store_true", help="run tests marked ray (a local Ray cluster)")
    parser.addoption("--run-long", action="store_true", help="run tests marked long (the full crash harness)")


def pytest_collection_modifyitems(config, items):
    import torch

    reasons = {}
    if not (config.getoption("--run-gpu") and torch.cuda.is_available()):
        reasons["gpu"] = "gpu: needs --run-gpu and a CUDA device (none here)" if not torch.cuda.is_available() \
            else "gpu: pass --run-gpu to run"
    if not config.getoption("--run-network"):
        reasons["network"] = "network: pass --run-network (needs internet / HF_TOKEN)"
    if not config.getoption("--run-ray"):
        # Opt-in since 2026-11-29: it passed under load (233 s), then hung in a clean-clone CI run with one
        # RankWorker actor left defunct and datatrove's Ray executor waiting on it; until that is understood a
        # hang must not block CI. `make test-ray` runs it.
        reasons["ray"] = "ray: pass --run-ray (a local Ray cluster; `make test-ray`)"
    if not config.getoption("--run-long"):
        # The 5-kill crash harness and the job killed mid-checkpoint: ~4.5 min on a quiet 2-core machine, which
        # would take CI past 20 minutes; CI keeps the bit-exact SIGKILL/resume tests of test_training.py and
        # test_jobs.py and every checkpoint-damage test. `make test-long` runs them.
        reasons["long"] = "long: pass --run-long (the full crash harness; `make test-long`)"
    for item in items:
        for mark, why in reasons.items():
            if mark in item.keywords:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local mirror of the raw sources (../shared/corpus); skip cleanly when it is absent."""
    if not (MIRROR / "sources.jsonl").exists():
        pytest.skip(f"no corpus mirror at {MIRROR} (set ANNO_MIRROR)")
    return MIRROR


from fixtures import blas_ops, full_corpus, one_thread, tiny_corpus, tiny_tokenizer  # noqa: E402,F401  (session fixtures shared by test modules)
from publish_fixtures import tiny_run  # noqa: E402,F401  (a tiny trained run with an evaluation report)
from app_fixtures import app_run, app_url, browser, jobs_dir, slow_model  # noqa: E402,F401  (the launched web app, for API and browser tests)

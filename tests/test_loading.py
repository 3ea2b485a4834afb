"""Model resolution (run folder, model folder, Hub id) and the memory-bounded model cache."""
import json

import pytest

from engine.checkpoint import save_hf_model
from engine.loading import ModelCache, resolve_model_path
from engine.model import build_model, model_config


@pytest.fixture()
def model_dir(tmp_path, tiny_tokenizer):
    def make(name, n_layer=1):
        out = tmp_path / name
        model = build_model(model_config("tiny", 512, n_layer=n_layer, n_ctx=32), 0, 0, 0)
        save_hf_model(model, out, extra_files=[tiny_tokenizer / f for f in ("tokenizer.json", "tokenizer_config.json")])
        return out
    return make


def test_resolve(model_dir, tmp_path):
    m = model_dir("m")
    assert resolve_model_path(m) == m
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({}))
    (m).rename(run / "model")
    assert resolve_model_path(run) == run / "model"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        resolve_model_path(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="Hub id like"):
        resolve_model_path(tmp_path / "missing" / "x" / "y")


def test_cache_reuses_and_evicts_least_recently_used(model_dir):
    a, b, c = model_dir("a"), model_dir("b"), model_dir("c")
    cache = ModelCache(budget=10**9)
    first = cache.get(a)
    assert cache.get(a) is first and len(cache) == 1
    small = ModelCache(budget=first.nbytes * 2 + 1)  # room for two models of this size
    small.get(a), small.get(b)
    small.get(a)  # a is now the most recent
    small.get(c)  # evicts b
    keys = [k[0] for k in small._items]
    assert len(small) == 2 and str(b.resolve()) not in keys and str(a.resolve()) in keys
    tiny = ModelCache(budget=1)  # a model bigger than the budget is still served, alone
    assert tiny.get(a).model is not None and len(tiny) == 1
    with pytest.raises(ValueError, match="budget=0"):
        ModelCache(budget=0)

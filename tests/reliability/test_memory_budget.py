"""A model larger than the memory budget is refused before anything is allocated, with a message naming the
model, its size and the budget (engine/loading.py `check_fits`). The size estimate is checked against the bytes
a real loaded model holds, and a folder that only *claims* a huge model (in config.json, or in a safetensors
header) is refused without the loader ever running."""
from __future__ import annotations

import json
import struct

import pytest

from engine import loading
from engine.loading import ModelCache, ModelTooLarge, check_fits, estimate_bytes


@pytest.fixture()
def small_model(tmp_path, tiny_tokenizer):
    from engine.checkpoint import save_hf_model
    from engine.model import build_model, model_config

    model = build_model(model_config("tiny", 512, n_layer=2, n_ctx=32), 0, 0, 0)
    files = [tiny_tokenizer / f for f in ("tokenizer.json", "tokenizer_config.json")]
    return save_hf_model(model, tmp_path / "small", extra_files=files)


def never(path):
    raise AssertionError(f"the loader ran for {path}: the budget check must come first")


def test_estimate_matches_the_loaded_model(small_model):
    loaded = ModelCache(budget=10**9).get(small_model)
    assert estimate_bytes(small_model) == loaded.nbytes  # config formula and safetensors header agree with it


def test_a_config_claiming_a_huge_model_is_refused_unallocated(tmp_path, monkeypatch):
    monkeypatch.delenv(loading.MAX_MODEL_BYTES_ENV, raising=False)
    huge = tmp_path / "huge"
    huge.mkdir()
    cfg = {"model_type": "gpt2", "n_layer": 1000, "n_embd": 16384, "n_head": 128, "vocab_size": 50257,
           "n_positions": 4096, "dtype": "float32"}
    (huge / "config.json").write_text(json.dumps(cfg))
    need = estimate_bytes(huge)
    assert need > 12 * 1000 * 16384**2 * 4  # ~12.9 TB of fp32 blocks alone: more than any machine here
    with pytest.raises(ModelTooLarge) as e:
        ModelCache(budget=10**12).get(huge, loader=never)
    msg = str(e.value)
    assert f"model={str(huge)!r}" in msg and f"{need:,} bytes" in msg and "of the memory available now" in msg
    # half precision halves the claim
    (huge / "config.json").write_text(json.dumps(cfg | {"dtype": "bfloat16"}))
    assert estimate_bytes(huge) == need // 2


def test_a_safetensors_header_claiming_huge_tensors_is_refused(tmp_path, small_model):
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "config.json").write_text((small_model / "config.json").read_text())
    header = json.dumps({"transformer.wte.weight": {"dtype": "F32", "shape": [2**20, 2**20],
                                                    "data_offsets": [0, 4 * 2**40]}}).encode()
    (fake / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)  # 4 TiB claimed, 0 stored
    assert estimate_bytes(fake) == 4 * 2**40
    with pytest.raises(ModelTooLarge, match=r"needs about 4096\.00 GiB"):
        check_fits(fake, budget=2**40)


def test_explicit_budget_refuses_a_real_model_through_serving(small_model, monkeypatch):
    from engine import serving

    need = estimate_bytes(small_model)
    monkeypatch.setenv(loading.MAX_MODEL_BYTES_ENV, str(need - 1))
    with pytest.raises(ModelTooLarge, match=rf"budget is .* \(\${loading.MAX_MODEL_BYTES_ENV}\)"):
        serving.load_model(str(small_model))
    assert isinstance(ModelTooLarge("x"), ValueError)  # so the app shows it as a message (ui/common.USER_ERRORS)
    monkeypatch.setenv(loading.MAX_MODEL_BYTES_ENV, str(need))
    assert check_fits(small_model) == need  # exactly the budget fits
    monkeypatch.setenv(loading.MAX_MODEL_BYTES_ENV, "lots")
    with pytest.raises(ValueError, match="ANNO_MAX_MODEL_BYTES='lots': must be a positive number of bytes"):
        check_fits(small_model)

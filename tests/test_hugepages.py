"""engine/hugepages.py: a model's weights moved into one huge-page mapping keep their values, ties and
Parameter objects; what cannot or need not move is left alone with the reason; load_hf_model rehomes."""
from __future__ import annotations

import pytest
import torch

from engine import hugepages
from engine.checkpoint import load_hf_model, save_hf_model
from engine.model import ModelConfig, build_model

needs_thp = pytest.mark.skipif(hugepages.unavailable() is not None, reason=f"{hugepages.unavailable()}")


def model(vocab: int = 8000, d: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)  # 8000 x 64 x 4 bytes: 2 MB of embeddings alone, so it is worth moving
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=d, n_ctx=32, vocab_size=vocab)
    return build_model(cfg, bos_id=0, eos_id=0, pad_id=0).eval()


def span(m: torch.nn.Module) -> tuple[int, int]:
    ts = hugepages._tensors(m)
    return min(t.data_ptr() for t in ts), max(t.data_ptr() + t.nbytes for t in ts)


@needs_thp
def test_rehome_keeps_values_ties_and_parameters():
    m = model()
    x = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = m(x).logits
    params = dict(m.named_parameters())
    report = hugepages.rehome(m)
    assert report["skipped"] is None and report["moved_bytes"] >= sum(p.nbytes for p in m.parameters())
    lo, hi = span(m)
    assert lo % hugepages.HUGE == 0 and hi - lo <= report["moved_bytes"]  # one mapping, from a 2 MB boundary
    assert all(t.data_ptr() % hugepages.ALIGN == 0 for t in hugepages._tensors(m))
    assert all(params[k] is p for k, p in m.named_parameters())  # the same Parameter objects
    assert m.lm_head.weight is m.transformer.wte.weight
    assert m.lm_head.weight.data_ptr() == m.transformer.wte.weight.data_ptr()
    with torch.no_grad():
        assert torch.equal(m(x).logits, before)  # bit for bit
        m.transformer.h[0].mlp.c_fc.weight.mul_(0)  # in-place updates reach the forward
        assert not torch.equal(m(x).logits, before)
    assert report["huge_bytes"] is None or 0 <= report["huge_bytes"] <= report["moved_bytes"] + hugepages.HUGE


def test_small_model_and_views_are_left_alone(monkeypatch):
    small = model(vocab=256, d=16)
    ptrs = [t.data_ptr() for t in hugepages._tensors(small)]
    report = hugepages.rehome(small)
    assert report["moved_bytes"] == 0 and [t.data_ptr() for t in hugepages._tensors(small)] == ptrs
    assert report["skipped"] in ("weights are under one huge page", hugepages.unavailable())
    m = model()
    m.transformer.h[1].ln_1.weight.data = m.transformer.h[0].ln_1.weight.data  # two Parameters, one storage
    shared = m.transformer.h[1].ln_1.weight.data_ptr()
    monkeypatch.setattr(hugepages, "unavailable", lambda: None)
    report = hugepages.rehome(m)
    assert report["moved_bytes"] == 0 and "shares its storage" in report["skipped"]
    assert m.transformer.h[1].ln_1.weight.data_ptr() == shared == m.transformer.h[0].ln_1.weight.data_ptr()
    m = model()
    m.transformer.ln_f.bias.data = torch.zeros(128)[64:]  # a view into a larger storage
    assert "shares its storage" in hugepages.rehome(m)["skipped"]


def test_unavailable_reads_the_thp_mode(tmp_path, monkeypatch):
    mode = tmp_path / "enabled"
    monkeypatch.setattr(hugepages, "THP_MODE", mode)
    assert "not readable" in hugepages.unavailable()
    mode.write_text("always madvise [never]\n")
    assert "disabled" in hugepages.unavailable()
    mode.write_text("always [madvise] never\n")
    assert hugepages.unavailable() is None or not hasattr(__import__("mmap"), "MADV_HUGEPAGE")
    m = model()
    ptrs = [t.data_ptr() for t in hugepages._tensors(m)]
    mode.write_text("always madvise [never]\n")
    assert hugepages.rehome(m)["skipped"] == "transparent huge pages are disabled ('never')"
    assert [t.data_ptr() for t in hugepages._tensors(m)] == ptrs


@needs_thp
def test_load_hf_model_rehomes(tmp_path):
    save_hf_model(model(), tmp_path / "m")
    loaded = load_hf_model(tmp_path / "m")
    lo, hi = span(loaded)
    assert lo % hugepages.HUGE == 0
    assert hi - lo <= sum(-(-t.nbytes // hugepages.ALIGN) * hugepages.ALIGN for t in hugepages._tensors(loaded))


def test_a_failed_mapping_leaves_the_model_as_it_was(monkeypatch):
    """No memory for the new mapping (or advice refused): the model keeps its weights, with the reason."""
    m = model()
    ptrs = [t.data_ptr() for t in hugepages._tensors(m)]
    monkeypatch.setattr(hugepages, "unavailable", lambda: None)

    def refuse(*a, **k):
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(hugepages.mmap, "mmap", refuse)
    report = hugepages.rehome(m)
    assert report["moved_bytes"] == 0 and "Cannot allocate memory" in report["skipped"]
    assert [t.data_ptr() for t in hugepages._tensors(m)] == ptrs

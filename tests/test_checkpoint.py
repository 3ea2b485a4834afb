"""Tests for engine/checkpoint.py: nanoGPT import reproduces the reference model's logits, token ids come
from the tokenizer, errors are clear, folder writes are atomic, and the save/load helpers round-trip."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from engine.checkpoint import CheckpointError, import_nanogpt, load_hf_model, save_hf_model
from engine.model import build_model, model_config, uses_sdpa
from tests.nanogpt_reference import GPT, GPTConfig, perturb

HF_FILES = {"config.json", "generation_config.json", "model.safetensors"}


def make_checkpoint(path: Path, *, bias=True, prefix="", flash=True, bare=False, n_head=2, n_embd=128, vocab=320):
    """Save a random 2-layer nanoGPT as a checkpoint the way nanoGPT's train.py does; return the model."""
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, vocab_size=vocab, n_layer=2, n_head=n_head, n_embd=n_embd, bias=bias, flash=flash)
    ref = GPT(cfg).eval()
    perturb(ref)
    state = {prefix + k: v for k, v in ref.state_dict().items()}
    if bare:
        obj = state
    else:
        args = dict(n_layer=2, n_head=n_head, n_embd=n_embd, block_size=32, bias=bias, vocab_size=vocab, dropout=0.0)
        opt = torch.optim.AdamW(ref.parameters(), lr=1e-3)
        obj = {"model": state, "optimizer": opt.state_dict(), "model_args": args, "iter_num": 100,
               "best_val_loss": torch.tensor(3.25), "config": {"dataset": "london", "compile": bool(prefix)}}
    torch.save(obj, path)
    return ref


def assert_same_logits(ref: GPT, out: Path, vocab=320) -> None:
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    idx = torch.randint(0, vocab, (3, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, _ = ref(idx, targets=idx)
        got = hf(input_ids=idx).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.fixture
def tokenizer_dir(tmp_path) -> Path:
    """A helloLondon-shaped tokenizer folder: <|endoftext|>=0, <|startoftext|>=1, <|pad|>=2, 300 tokens,
    plus the bogus tokenizer-summary config.json helloLondon writes next to it."""
    specials = ["<|endoftext|>", "<|startoftext|>", "<|pad|>", "<|unk|>"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(296)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|pad|>", unk_token="<|unk|>")
    d = tmp_path / "tok"
    fast.save_pretrained(d)
    (d / "config.json").write_text(json.dumps({"vocab_size": 300, "tokenizer_type": "BPE"}))
    return d


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("prefix", ["", "_orig_mod."])
def test_import_reproduces_nanogpt_logits(tmp_path, bias, prefix):
    ref = make_checkpoint(tmp_path / "ckpt.pt", bias=bias, prefix=prefix)
    out = import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf")
    assert out == tmp_path / "hf"
    assert {p.name for p in out.iterdir()} == HF_FILES
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["activation_function"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"]) == \
        ("gelu", 2, 2, 128, 32)
    assert cfg["tie_word_embeddings"] is True
    assert_same_logits(ref, out)


def test_tanh_gelu_would_not_match(tmp_path):
    """The 1e-5 comparison is tight enough to tell nanoGPT's exact GELU from GPT-2's tanh "gelu_new"
    (measured max |diff| ~1.4e-4 with the perturbed reference), so the activation choice is really tested."""
    ref = make_checkpoint(tmp_path / "ckpt.pt")
    out = import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "activation_function": "gelu_new"}))
    with pytest.raises(AssertionError, match="Mismatched elements"):
        assert_same_logits(ref, out)


def test_import_non_flash_checkpoint_drops_mask_buffer(tmp_path):
    ref = make_checkpoint(tmp_path / "ckpt.pt", flash=False)
    assert "transformer.h.0.attn.bias" in ref.state_dict()  # the causal-mask buffer is in the checkpoint
    assert_same_logits(ref, import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf"))


def test_import_bare_state_dict_infers_shapes(tmp_path):
    ref = make_checkpoint(tmp_path / "ckpt.pt", bare=True, bias=False, prefix="_orig_mod.")  # helloLondon-like
    out = import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["n_head"], cfg["vocab_size"], cfg["n_positions"]) == (2, 320, 32)  # 128 / 64-wide heads
    assert_same_logits(ref, out)


def test_import_bare_state_dict_with_explicit_n_head(tmp_path):
    ref = make_checkpoint(tmp_path / "ckpt.pt", bare=True, n_head=4)
    assert_same_logits(ref, import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf", n_head=4))


def test_import_takes_token_ids_and_files_from_tokenizer(tmp_path, tokenizer_dir):
    make_checkpoint(tmp_path / "ckpt.pt")
    out = import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf", tokenizer_dir)
    assert HF_FILES | {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
    for name in ("config.json", "generation_config.json"):
        c = json.loads((out / name).read_text())
        assert (c["bos_token_id"], c["eos_token_id"], c["pad_token_id"]) == (1, 0, 2), name
    assert json.loads((out / "config.json").read_text())["model_type"] == "gpt2"  # not the tokenizer's config
    src, copied = AutoTokenizer.from_pretrained(tokenizer_dir), AutoTokenizer.from_pretrained(out)
    assert copied("w1 w17 w295")["input_ids"] == src("w1 w17 w295")["input_ids"] == [5, 21, 299]


def test_import_rejects_tokenizer_larger_than_vocab(tmp_path, tokenizer_dir):
    make_checkpoint(tmp_path / "ckpt.pt", vocab=256)
    with pytest.raises(CheckpointError, match=r"300 tokens.*vocab_size is 256"):
        import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf", tokenizer_dir)
    assert not (tmp_path / "hf").exists()


def test_import_without_tokenizer_token_ids(tmp_path):
    make_checkpoint(tmp_path / "a.pt", vocab=50304, n_embd=64, n_head=1)  # nanoGPT's padded GPT-2 vocab
    c = json.loads((import_nanogpt(tmp_path / "a.pt", tmp_path / "a") / "config.json").read_text())
    assert (c["bos_token_id"], c["eos_token_id"]) == (50256, 50256)
    make_checkpoint(tmp_path / "b.pt")
    c = json.loads((import_nanogpt(tmp_path / "b.pt", tmp_path / "b") / "config.json").read_text())
    assert c.get("bos_token_id") is None and c.get("eos_token_id") is None


def test_import_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        import_nanogpt(tmp_path / "nope.pt", tmp_path / "hf")


def test_import_not_a_checkpoint(tmp_path):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a nanoGPT checkpoint.*transformer.wte.weight"):
        import_nanogpt(tmp_path / "other.pt", tmp_path / "hf")
    (tmp_path / "text.pt").write_text("hello, not a pickle")
    with pytest.raises(CheckpointError, match="text.pt"):
        import_nanogpt(tmp_path / "text.pt", tmp_path / "hf")


class _Arbitrary:  # a pickled class: weights_only=True must refuse it
    pass


def test_import_refuses_arbitrary_pickles(tmp_path):
    torch.save({"model": {}, "payload": _Arbitrary()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        import_nanogpt(tmp_path / "evil.pt", tmp_path / "hf")


def _edit_checkpoint(path: Path, edit) -> None:
    obj = torch.load(path, weights_only=True)
    edit(obj["model"])
    torch.save(obj, path)


def test_import_shape_mismatch_names_tensor(tmp_path):
    make_checkpoint(tmp_path / "ckpt.pt")
    _edit_checkpoint(tmp_path / "ckpt.pt", lambda sd: sd.__setitem__("transformer.h.1.mlp.c_fc.weight",
                                                                     torch.zeros(500, 128)))
    with pytest.raises(CheckpointError, match=r"transformer\.h\.1\.mlp\.c_fc\.weight.*\(128, 500\).*\(128, 512\)"):
        import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf")


def test_import_missing_and_unexpected_tensors(tmp_path):
    make_checkpoint(tmp_path / "a.pt")
    _edit_checkpoint(tmp_path / "a.pt", lambda sd: sd.pop("transformer.h.0.ln_2.weight"))
    with pytest.raises(CheckpointError, match=r"lacks tensor 'transformer\.h\.0\.ln_2\.weight'"):
        import_nanogpt(tmp_path / "a.pt", tmp_path / "hf")
    make_checkpoint(tmp_path / "b.pt")
    _edit_checkpoint(tmp_path / "b.pt", lambda sd: sd.__setitem__("transformer.h.0.attn.rotary", torch.zeros(4)))
    with pytest.raises(CheckpointError, match="unexpected tensors.*rotary"):
        import_nanogpt(tmp_path / "b.pt", tmp_path / "hf")


def test_import_rejects_untied_head(tmp_path):
    make_checkpoint(tmp_path / "ckpt.pt")
    _edit_checkpoint(tmp_path / "ckpt.pt", lambda sd: sd.__setitem__("lm_head.weight", torch.ones(320, 128)))
    with pytest.raises(CheckpointError, match="untied"):
        import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "hf")


def test_import_replaces_existing_folder_atomically(tmp_path):
    ref = make_checkpoint(tmp_path / "ckpt.pt")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "stale.bin").write_text("old export")
    import_nanogpt(tmp_path / "ckpt.pt", out)
    assert {p.name for p in out.iterdir()} == HF_FILES
    assert_same_logits(ref, out)
    # A failing import leaves the previous folder as it was and no temp folders behind.
    (tmp_path / "bad.pt").write_text("garbage")
    with pytest.raises(CheckpointError):
        import_nanogpt(tmp_path / "bad.pt", out)
    assert {p.name for p in out.iterdir()} == HF_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "ckpt.pt", "hf"]


def test_save_and_load_hf_model_round_trip(tmp_path):
    model = build_model(model_config("tiny", 300, n_layer=2, n_ctx=64), bos_id=4, eos_id=5, pad_id=6).eval()
    out = save_hf_model(model, tmp_path / "m")
    assert {p.name for p in out.iterdir()} == HF_FILES
    loaded = load_hf_model(out)
    assert uses_sdpa(loaded) and not loaded.training
    assert (loaded.config.bos_token_id, loaded.config.eos_token_id, loaded.config.pad_token_id) == (4, 5, 6)
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    idx = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=idx).logits, model(input_ids=idx).logits, atol=0, rtol=0)
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        load_hf_model(tmp_path / "nowhere")

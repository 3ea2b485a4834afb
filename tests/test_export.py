"""Exports (engine/export.py): the GGUF file read back with gguf.GGUFReader (every tensor with its llama.cpp
name and shape, hparams, the BPE vocabulary and merges, special and era tokens as CONTROL tokens with their
ids), CTranslate2 greedy tokens and logits against transformers on fixed prompts, and llama.cpp parity through
llama-cpp-python when it is installed (`make export-check` installs it).

The parity model is the tiny tokenizer's vocabulary on a 2 x 64 GPT-2 with weights drawn at std 0.2, not
GPT-2's 0.02: at 0.02 the next-token logits are nearly flat and greedy choices would hinge on rounding noise;
at 0.2 they are spread, and the greedy runs below visit several different tokens."""
import json

import numpy as np
import pytest
import torch

from engine.checkpoint import TOKENIZER_FILES, save_hf_model
from engine.export import ExportError, export
from engine.model import ModelConfig, build_model
from engine.tokenizer import ERA_TOKENS, SPECIAL_TOKENS

PROMPTS = ["<|1600s|>The king and the merchant", "<|1550s|>Thou hath a letter from London",
           "<|1800s|>It was in the winter"]  # no apostrophes: see export.PRE_TOKENIZER_NOTE
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def parity_model(tiny_tokenizer, tmp_path_factory):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_head=2, n_embd=64, n_ctx=64, vocab_size=len(tok)), 0, 0, 0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2:
                p.normal_(0, 0.2)
    out = tmp_path_factory.mktemp("export") / "model"
    save_hf_model(model.eval(), out, [tiny_tokenizer / f for f in TOKENIZER_FILES if (tiny_tokenizer / f).is_file()])
    return out, model.eval(), tok


def _hf_greedy(model, ids):
    out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0,
                         eos_token_id=None)
    return out[0, len(ids):].tolist()


def test_gguf_layout(parity_model, tmp_path):
    import gguf

    src, model, tok = parity_model
    path = export(src, "gguf", tmp_path / "g")
    r = gguf.GGUFReader(str(path))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    assert f["general.architecture"] == "gpt2" and f["gpt2.block_count"] == 2 and f["gpt2.embedding_length"] == 64
    assert f["gpt2.context_length"] == 64 and f["gpt2.attention.head_count"] == 2 and f["gpt2.feed_forward_length"] == 256
    assert abs(f["gpt2.attention.layer_norm_epsilon"] - 1e-5) < 1e-12 and f["tokenizer.ggml.add_bos_token"] is False
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "gpt-2"
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    vocab = tok.get_vocab()
    assert len(tokens) == len(vocab) and all(tokens[i] == t for t, i in vocab.items())
    for t in SPECIAL_TOKENS:  # <|endoftext|> 0, <|1500s|> 1 ... <|1850s|> 36, <|unknown-era|> 37: control tokens
        assert types[vocab[t]] == gguf.TokenType.CONTROL and tokens[vocab[t]] == t
    assert [vocab[t] for t in ERA_TOKENS] == list(range(1, 37))
    assert sum(ty == gguf.TokenType.CONTROL for ty in types) == len(SPECIAL_TOKENS)
    eot = vocab["<|endoftext|>"]
    assert f["tokenizer.ggml.bos_token_id"] == f["tokenizer.ggml.eos_token_id"] == f["tokenizer.ggml.padding_token_id"] == eot
    merges = json.loads((src / "tokenizer.json").read_text())["model"]["merges"]
    assert len(f["tokenizer.ggml.merges"]) == len(merges)
    # every tensor, llama.cpp's names, numpy shapes = torch's with Conv1D transposed to out x in
    sd = model.state_dict()
    want = {"token_embd.weight": (len(vocab), 64), "position_embd.weight": (64, 64), "output.weight": (len(vocab), 64),
            "output_norm.weight": (64,), "output_norm.bias": (64,)}
    for i in range(2):
        want |= {f"blk.{i}.attn_norm.weight": (64,), f"blk.{i}.attn_norm.bias": (64,),
                 f"blk.{i}.attn_qkv.weight": (192, 64), f"blk.{i}.attn_qkv.bias": (192,),
                 f"blk.{i}.attn_output.weight": (64, 64), f"blk.{i}.attn_output.bias": (64,),
                 f"blk.{i}.ffn_norm.weight": (64,), f"blk.{i}.ffn_norm.bias": (64,),
                 f"blk.{i}.ffn_up.weight": (256, 64), f"blk.{i}.ffn_up.bias": (256,),
                 f"blk.{i}.ffn_down.weight": (64, 256), f"blk.{i}.ffn_down.bias": (64,)}
    got = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in r.tensors}  # GGUF lists ne, innermost first
    assert got == want
    data = {t.name: np.asarray(t.data) for t in r.tensors}
    assert np.array_equal(data["blk.1.attn_qkv.weight"], sd["transformer.h.1.attn.c_attn.weight"].T.numpy())
    assert np.array_equal(data["output.weight"], sd["transformer.wte.weight"].numpy())
    info = json.loads((tmp_path / "g" / "export.json").read_text())
    assert info["special_tokens"]["<|1850s|>"] == 36 and "pre_tokenizer" in info["notes"]


def test_ct2_greedy_and_logits_match_transformers(parity_model, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2")
    src, model, tok = parity_model
    out = export(src, "ct2", tmp_path / "c")
    gen = ctranslate2.Generator(str(out), device="cpu", compute_type="float32", intra_threads=1)
    seen = set()
    for prompt in PROMPTS:
        ids = tok(prompt).input_ids
        want = _hf_greedy(model, ids)
        res = gen.generate_batch([tok.convert_ids_to_tokens(ids)], max_length=NEW_TOKENS, sampling_topk=1,
                                 include_prompt_in_result=False, end_token=[])
        assert res[0].sequences_ids[0] == want, prompt
        seen |= set(want)
        full = ids + want[:-1]
        ct_logits = torch.tensor(np.array(gen.forward_batch([tok.convert_ids_to_tokens(full)])))[0]
        with torch.no_grad():
            hf_logits = model(torch.tensor([full])).logits[0]
        assert torch.allclose(ct_logits, hf_logits, atol=1e-4, rtol=0), (ct_logits - hf_logits).abs().max()
    assert len(seen) >= 6  # the greedy runs are not one repeated token


def test_export_bad_input(parity_model, tmp_path):
    src, _, _ = parity_model
    with pytest.raises(ExportError, match="format='onnx': allowed gguf, ct2"):
        export(src, "onnx", tmp_path / "x")
    with pytest.raises(ExportError, match="dtype='q4' for gguf: allowed f32, f16"):
        export(src, "gguf", tmp_path / "x", dtype="q4")
    assert not (tmp_path / "x").exists()


def test_llama_cpp_parity(parity_model, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it compiles llama.cpp, "
                                                        "several minutes): `make export-check` installs it and runs this")
    src, model, tok = parity_model
    path = export(src, "gguf", tmp_path / "g")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=1, seed=0)
    for prompt in PROMPTS:
        ids = tok(prompt).input_ids
        assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids, prompt
        want = _hf_greedy(model, ids)
        llm.reset()
        llm.eval(ids + want[:-1])
        lc_logits = torch.tensor(np.array(llm.scores[:len(ids) + len(want) - 1]))
        with torch.no_grad():
            hf_logits = model(torch.tensor([ids + want[:-1]])).logits[0]
        # llama.cpp's gpt2 graph uses tanh-approximate GELU, the model exact GELU (export.json notes it)
        assert (lc_logits - hf_logits).abs().max() < 0.05
        assert lc_logits[len(ids) - 1:].argmax(-1).tolist() == want, prompt

"""Tests for engine/fastpath.py, the lean CPU decode step: logits bit-equal to the model's own forward (fp32,
one row, any column split), greedy ids equal to `model.generate` (fp32 and int8-cpu), batched rows equal to
each row alone, the KV cache's row bookkeeping, the time lock on the fast path (no detector finding after
the lock year), and the fallback for models it does not run."""
from __future__ import annotations

import copy
import threading

import pytest
import torch
from transformers import LogitsProcessor

from engine.fastpath import KVCache, LeanGPT2, LeanRows, unsupported
from engine.generate import GenerationConfig, generate_ids, stream
from engine.model import build_model, model_config
from engine.tokenizer import load_tokenizer

PROMPTS = ([5, 17, 300, 42, 9], [1], list(range(40, 73)))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok(tiny_tokenizer):
    return load_tokenizer(tiny_tokenizer)


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    return build_model(model_config("tiny", len(tok), n_ctx=128), 0, 0, 0).eval()


def _model_logits(model, prompt, feed):
    """The model's own next-token logits after the prompt and after each id of feed (its KV cache)."""
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)
        got = [out.logits[:, -1]]
        for t in feed:
            out = model(input_ids=torch.tensor([[t]]), past_key_values=out.past_key_values, use_cache=True,
                        logits_to_keep=1)
            got.append(out.logits[:, -1])
    return got


@pytest.mark.parametrize("split", [1, 2, 4])
def test_logits_bit_equal_to_model_forward(model, split):
    feed = [7, 300, 2, 2, 450, 11, 90, 5]
    lean = LeanGPT2(model, split=split)
    for prompt in PROMPTS:
        ref = _model_logits(model, prompt, feed)
        with torch.inference_mode():
            cache = lean.new_cache(1, 4)  # too narrow on purpose: it grows
            got = [lean.prefill(prompt, cache, 0)] + [lean.step([t], cache) for t in feed]
        assert all(torch.equal(a, b) for a, b in zip(ref, got))
        assert cache.lengths == [len(prompt) + len(feed)]


def _hf_greedy(model, prompt, n):
    x = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=n,
                             min_new_tokens=n, eos_token_id=None, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def test_greedy_ids_equal_model_generate_fp32_and_int8(model):
    from engine.quantize import int8_cpu

    q8 = int8_cpu(copy.deepcopy(model))
    cfg = GenerationConfig(max_new_tokens=30, temperature=0)
    for m in (model, q8):
        assert unsupported(m) is None  # the fast path really runs
        for prompt in PROMPTS:
            fast = list(generate_ids(m, prompt, cfg, eos_id=-1))
            assert fast == _hf_greedy(m, prompt, 30)
            assert fast == list(generate_ids(m, prompt, cfg, eos_id=-1, fast=False))


def test_batched_rows_equal_each_row_alone(model):
    n = 20
    alone = [list(generate_ids(model, p, GenerationConfig(max_new_tokens=n, temperature=0), eos_id=-1))
             for p in PROMPTS]
    rows = LeanRows(model)
    got: list[list[int]] = [[] for _ in PROMPTS]
    owner = []  # batch row -> prompt index
    with torch.inference_mode():
        for i, p in enumerate(PROMPTS):  # rows of different lengths join one by one
            t = int(rows.add(p, n).argmax(-1))
            got[i].append(t)
            owner.append(i)
            rows.set_next(rows.rows - 1, t)
        for step in range(n - 1):
            logits = rows.step()
            for r, i in enumerate(owner):
                t = int(logits[r].argmax(-1))
                got[i].append(t)
                rows.set_next(r, t)
            if step == 5:  # the first row leaves early; the others go on from their moved slots
                alone[0] = alone[0][:7]
                owner = [owner[o] for o in rows.keep([1, 2])]
    assert got == alone


def _batched_greedy(rows, n):
    """Greedy ids of PROMPTS decoded together in `rows` (a LeanRows), joining one by one as in the batcher,
    and the first batched step's logits."""
    got, first = [[] for _ in PROMPTS], None
    with torch.inference_mode():
        for i, p in enumerate(PROMPTS):
            t = int(rows.add(p, n).argmax(-1))
            got[i].append(t)
            rows.set_next(i, t)
        for _ in range(n - 1):
            logits = rows.step()
            first = logits.clone() if first is None else first
            for i in range(len(PROMPTS)):
                t = int(logits[i].argmax(-1))
                got[i].append(t)
                rows.set_next(i, t)
    return got, first


def test_packed_weights_used_for_several_rows_and_equal_to_unpacked(tok):
    """Layers of >= PACK_MIN_WEIGHTS weights run several-row steps through oneDNN's packed copy; the logits
    match the unpacked step up to float rounding and the greedy ids of every row are those of the row alone."""
    from engine.fastpath import PACK_MIN_WEIGHTS, packed

    torch.manual_seed(1)
    # c_fc 256x1024 = 2**18 weights: packed; c_attn 256x768 is not
    cfg = model_config("tiny", len(tok), n_ctx=128, n_embd=256, n_head=4, n_layer=2)
    m = build_model(cfg, 0, 0, 0).eval()
    assert m.transformer.h[0].mlp.c_fc.weight.numel() >= PACK_MIN_WEIGHTS > m.transformer.h[0].attn.c_attn.weight.numel()
    if packed(m.transformer.h[0].mlp.c_fc) is None:
        pytest.skip("oneDNN is not available in this torch build")
    lean = LeanGPT2(m, pack=True)
    assert lean.rows_blocks[0][7] is not lean.blocks[0][7]  # c_fc: packed
    assert lean.rows_blocks[0][2] is lean.blocks[0][2]  # c_attn: too small, the module's own
    n = 16
    alone = [list(generate_ids(m, p, GenerationConfig(max_new_tokens=n, temperature=0), eos_id=-1)) for p in PROMPTS]
    results = {pack: _batched_greedy(LeanRows(m, pack=pack), n) for pack in (False, True)}
    assert results[True][0] == alone == results[False][0]
    diff = (results[True][1] - results[False][1]).abs().max()
    assert 0 < diff < 1e-4  # a different kernel (not the same op by accident), the same numbers to rounding


def test_kv_cache_remove_moves_last_rows_into_holes():
    c = KVCache(n_layer=2, n_head=1, head_dim=1, slots=4, width=3)
    for r in range(4):
        c.lengths.append(r % 3 + 1)
        for t in c.k + c.v:
            t[r, 0, :c.lengths[r], 0] = 10 * r + torch.arange(c.lengths[r])
    order = c.remove([0, 2])
    assert order == [3, 1] and c.lengths == [1, 2]  # old row 3 (length 1) now in slot 0
    assert c.k[1][0, 0, :1, 0].tolist() == [30.0] and c.v[0][1, 0, :2, 0].tolist() == [10.0, 11.0]
    c.reserve(6, 9)
    assert (c.slots, c.width) == (8, 9) and c.k[0][1, 0, :2, 0].tolist() == [10.0, 11.0]


class Force(LogitsProcessor):
    """Pushes a model to write `text` over and over (a random model would never write a dated word)."""

    def __init__(self, ids):
        self.ids, self.start = ids, None

    def __call__(self, input_ids, scores):
        self.start = input_ids.shape[1] if self.start is None else self.start
        bias = torch.zeros_like(scores)
        bias[:, self.ids[(input_ids.shape[1] - self.start) % len(self.ids)]] = 100.0
        return scores + bias


def test_time_lock_on_fast_path_leaves_no_finding_after_the_lock_year(model, tok):
    from evals import check

    text = " He sent a telegraph by the railway and the steam engine. The telephone rang."
    target = tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
    cfg = GenerationConfig(max_new_tokens=60, temperature=0, top_k=0, top_p=1.0)
    free = list(stream(model, tok, "It was", cfg, processors=[Force(target)]))[-1].text
    assert [f for f in check(free, 1700) if f.year > 1700]  # unlocked, the forced words are there
    for seed in (1, 2):
        sampled = GenerationConfig(max_new_tokens=60, temperature=1.0, seed=seed, lock_year=1700)
        for c in (GenerationConfig(max_new_tokens=60, temperature=0, lock_year=1700), sampled):
            locked = list(stream(model, tok, "It was", c, processors=[Force(target)]))[-1]
            assert locked.generated_tokens == 60 and not [f for f in check(locked.text, 1700) if f.year > 1700]


def test_cancel_on_fast_path_stops_within_one_token(model):
    event, got = threading.Event(), []
    for token in generate_ids(model, [3, 4], GenerationConfig(max_new_tokens=50, temperature=0), event):
        got.append(token)
        if len(got) == 3:
            event.set()
    assert len(got) == 3


def test_models_it_does_not_run_fall_back_to_their_own_forward(model, tok):
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    assert "bfloat16" in unsupported(bf16)
    assert "is not a GPT2LMHeadModel" in unsupported(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="LeanGPT2 cannot run this model: embeddings are torch.bfloat16"):
        LeanGPT2(bf16)
    cfg = GenerationConfig(max_new_tokens=8, temperature=0)
    assert len(list(generate_ids(bf16, [3, 4, 5], cfg, eos_id=-1))) == 8


def _greedy(eng, prompt, n):
    with torch.inference_mode():
        cache = eng.new_cache(1, len(prompt) + n - 1)
        logits, out = eng.prefill(prompt, cache, 0), []
        for i in range(n):
            out.append(int(logits.argmax(-1)))
            if i < n - 1:
                logits = eng.step([out[-1]], cache)
    return out


@pytest.fixture(scope="module")
def small(tok):
    from engine.compiled_step import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("no C++ compiler (g++ or $CXX): AOTInductor cannot build the compiled decode step")
    torch.manual_seed(2)
    return build_model(model_config("tiny", len(tok), n_ctx=64, n_embd=32, n_head=2, n_layer=1), 0, 0, 0).eval()


def test_compiled_step_greedy_ids_equal_model_generate_and_uses_the_models_weights(small):
    """engine/compiled_step.py: the AOTInductor-compiled decode step gives `model.generate`'s greedy ids, and
    runs on the model's own parameters (an in-place weight update is seen, as on the lean path)."""
    from engine.compiled_step import CompiledGPT2, package_path

    m, n = small, 20
    comp, lean = CompiledGPT2(m), LeanGPT2(m)
    for prompt in PROMPTS:
        assert _greedy(comp, prompt, n) == _hf_greedy(m, prompt, n)
    assert list(comp.runners) == [(1, 64, torch.get_num_threads())]  # one shape, compiled once, really used
    assert package_path(m, 1, 64).is_file()  # kept for later processes
    with torch.inference_mode():
        caches = [e.new_cache(1, 40) for e in (comp, lean)]
        for e, c in zip((comp, lean), caches):
            e.prefill(PROMPTS[2], c, 0)
        before = [e.step([7], c) for e, c in zip((comp, lean), caches)]
        m.transformer.h[0].mlp.c_fc.weight.mul_(1.5)
        after = [e.step([7], c) for e, c in zip((comp, lean), caches)]
        m.transformer.h[0].mlp.c_fc.weight.div_(1.5)
    torch.testing.assert_close(before[0], before[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after[0], after[1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(before[0], after[0], atol=1e-3)


def test_compiled_prefill_equals_the_eager_one_and_fills_the_same_cache(small, monkeypatch):
    """CompiledGPT2.prefill runs a prompt through the compiled package in one call (causal attention over
    keys it writes in the same call): the same next-token logits and cache as LeanGPT2's eager prefill, also
    into the second slot of a cache whose first row is left untouched; prompts over PREFILL_ROWS tokens go
    to the eager prefill."""
    from engine import compiled_step as C

    comp, lean = C.CompiledGPT2(small), LeanGPT2(small)
    comp.runner(2, 64)  # compiled before the eager path is disabled below
    eager = comp.lean.prefill
    comp.lean.prefill = lambda *a: pytest.fail("a short prompt took the eager prefill")
    with torch.inference_mode():
        caches = [e.new_cache(2, 64) for e in (comp, lean)]
        for slot, prompt in enumerate(PROMPTS[:2]):
            got, want = comp.prefill(prompt, caches[0], slot), lean.prefill(prompt, caches[1], slot)
            assert got.shape == want.shape == (1, small.config.vocab_size)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
            if slot == 0:
                first = [t[0].clone() for t in (*caches[0].k, *caches[0].v)]
        assert caches[0].lengths == caches[1].lengths == [len(p) for p in PROMPTS[:2]]
        for a, b in zip((*caches[0].k, *caches[0].v), (*caches[1].k, *caches[1].v)):
            for slot, n in enumerate(caches[0].lengths):
                torch.testing.assert_close(a[slot, :, :n], b[slot, :, :n], rtol=1e-4, atol=1e-4)
        assert all(torch.equal(t[0], f) for t, f in zip((*caches[0].k, *caches[0].v), first))  # row 0 kept
        step = [e.step([5, 6], c) for e, c in zip((comp, lean), caches)]
        torch.testing.assert_close(step[0], step[1], rtol=1e-4, atol=1e-4)
        monkeypatch.setattr(C, "PREFILL_ROWS", 2)
        calls = []
        comp.lean.prefill = lambda *a: calls.append(len(a[0])) or eager(*a)
        long = comp.prefill(PROMPTS[2], comp.new_cache(1, 64), 0)
        assert calls == [len(PROMPTS[2])] and len(PROMPTS[2]) > 2
        torch.testing.assert_close(long, lean.prefill(PROMPTS[2], lean.new_cache(1, 64), 0), rtol=1e-4, atol=1e-4)


def test_engine_for_rechecks_a_model_changed_in_place(small):
    """A model's engine is kept on it, but a dtype changed in place afterwards gives no engine (the lean
    check runs on every call; the full one only when the engine is made)."""
    from engine import compiled_step as C

    m = copy.deepcopy(small)
    assert C.engine_for(m) is C.engine_for(m) is not None
    m.to(torch.bfloat16)
    assert C.engine_for(m) is None


def test_served_engines_run_eager_until_precompile_then_compiled_with_the_same_ids(small, tok):
    """generate_ids and the batcher take the compiled step only once `precompile` (cli.py compile-step) has
    built its package: before, the same engine runs the eager step; after, one package serves every row
    count of the batcher, and batched rows equal each row alone."""
    from engine import compiled_step as C
    from engine.batching import Batcher

    m = copy.deepcopy(small)  # a fresh model: no engine cached on it yet
    cfg = GenerationConfig(max_new_tokens=12, temperature=0)
    eng = C.engine_for(m)
    assert eng is C.engine_for(m) and eng.wait is False
    had = C.package_path(m, 1, 64).is_file()  # when this test runs alone, no package yet
    alone = [list(generate_ids(m, p, cfg, eos_id=-1)) for p in PROMPTS]
    assert bool(eng.runners) == had  # no package: the eager step ran and nothing compiled in the request
    shapes = C.serving_shapes(m, 3)
    assert shapes == [(1, 64), (3, 64)]
    report = C.precompile(m, 3, progress=lambda line: None)
    assert [(r["slots"], r["width"]) for r in report] == shapes
    assert C.precompile(m, 3, progress=lambda line: None)[0]["built"] is False  # kept, not rebuilt
    eng._looked.clear()  # the engine looks for new packages at most once a second
    assert [list(generate_ids(m, p, cfg, eos_id=-1)) for p in PROMPTS] == alone
    assert (1, 64, torch.get_num_threads()) in eng.runners
    rows = LeanRows(m, engine=C.engine_for(m, C.batch_shape(m, 3), pack=True))
    rows.lean._looked.clear()
    got = _batched_greedy(rows, cfg.max_new_tokens)[0]
    assert (3, 64, torch.get_num_threads()) in rows.lean.runners and rows.cache.slots == 3
    assert got == alone
    with Batcher(m, tok, max_batch=3) as b:  # the batcher runs this engine
        assert b._state.lean is C.engine_for(m, C.batch_shape(m, 3), pack=True)
    with pytest.raises(ValueError, match="max_batch"):
        C.precompile(m, 0)


def test_batcher_with_no_fixed_shape_compiles_several_rows_and_a_lone_row(small, tok, monkeypatch):
    """A model whose fixed batch cache would be too large (12x768) is batched on a growing cache: several
    rows share the (max_batch, width) package, and once one row is left its cache returns to one slot and
    decodes on the batch-1 package; every row's ids are those of the row alone, and no step runs eager."""
    from engine import compiled_step as C
    from engine.batching import Batcher

    m = copy.deepcopy(small)
    monkeypatch.setattr(C, "BATCH_CACHE_BYTES", 0)
    assert C.batch_shape(m, 3) is None and C.serving_shapes(m, 3) == [(1, 64), (3, 64)]
    C.precompile(m, 3, progress=lambda line: None)
    n = 14
    alone = [list(generate_ids(m, p, GenerationConfig(max_new_tokens=n, temperature=0), eos_id=-1)) for p in PROMPTS]
    rows = LeanRows(m, engine=C.engine_for(m, None, pack=True, batch_slots=3))
    eager = []
    monkeypatch.setattr(rows.lean.lean, "step", lambda *a, f=rows.lean.lean.step: eager.append(1) or f(*a))
    got, owner, threads = [[] for _ in PROMPTS], list(range(len(PROMPTS))), torch.get_num_threads()
    with torch.inference_mode():
        for i, p in enumerate(PROMPTS):
            got[i].append(int(rows.add(p, n).argmax(-1)))
            rows.set_next(i, got[i][-1])
            assert rows.cache.slots == (1 if i == 0 else 3)  # one row, then max_batch slots
        for step in range(1, n):
            if step == 4:  # two rows leave: the last one goes on alone
                owner = [owner[o] for o in rows.keep([1])]
                assert rows.cache.slots == 1 and rows.cache.width == 64
            logits = rows.step()
            for r, o in enumerate(owner):
                got[o].append(int(logits[r].argmax(-1)))
                rows.set_next(r, got[o][-1])
    assert not eager and {(1, 64, threads), (3, 64, threads)} <= set(rows.lean.runners)
    assert got[1] == alone[1] and got[0] == alone[0][:4] and got[2] == alone[2][:4]
    with Batcher(m, tok, max_batch=3) as b:  # the batcher runs such an engine
        assert b._state.lean is C.engine_for(m, None, pack=True, batch_slots=3)


def test_waiting_prompts_prefill_together_in_one_call(small, tok, monkeypatch):
    """LeanRows.add_many on a compiled engine prefills several prompts in one call of the package (each
    prompt's tokens rows of its own slot), and every row then decodes the ids it decodes alone; the batcher
    takes its waiting requests that way."""
    from engine import compiled_step as C
    from engine.batching import Batcher

    m = copy.deepcopy(small)
    C.precompile(m, 3, progress=lambda line: None)
    n = 10
    cfg = GenerationConfig(max_new_tokens=n, temperature=0)
    alone = [list(generate_ids(m, p, cfg, eos_id=-1)) for p in PROMPTS]
    rows = LeanRows(m, engine=C.engine_for(m, C.batch_shape(m, 3), pack=True))
    one_by_one = []
    monkeypatch.setattr(rows.lean, "prefill", lambda *a, f=rows.lean.prefill: one_by_one.append(1) or f(*a))
    got = [[] for _ in PROMPTS]
    with torch.inference_mode():
        first = rows.add_many(PROMPTS, [n] * len(PROMPTS))
        assert not one_by_one and rows.cache.lengths == [len(p) for p in PROMPTS]
        for i, lg in enumerate(first):
            got[i].append(int(lg.argmax(-1)))
            rows.set_next(i, got[i][-1])
        for _ in range(n - 1):
            logits = rows.step()
            for i in range(len(PROMPTS)):
                got[i].append(int(logits[i].argmax(-1)))
                rows.set_next(i, got[i][-1])
    assert got == alone
    joint = []
    with Batcher(m, tok, max_batch=3) as b:
        monkeypatch.setattr(b._state, "add_many", lambda *a, f=b._state.add_many: joint.append(len(a[0])) or f(*a))
        with b._cond:  # queue all three before the thread looks, so they wait together
            streams = [b.submit(p, GenerationConfig(max_new_tokens=4, temperature=0)) for p in ["a b", "c d e", "f"]]
            assert len(b._inbox) == 3
        assert all(list(s)[-1].generated_tokens == 4 for s in streams)
    assert joint == [3]

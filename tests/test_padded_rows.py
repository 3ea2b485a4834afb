"""engine/padded_rows.py: the batcher's state over the model's own forward. Rows of different lengths, added,
stepped and cut, give each sequence's own next-token logits (as a forward of that sequence alone), and a
batcher on it (fast=False) gives each request the ids `generate_ids` gives it alone."""
from __future__ import annotations

import random

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from engine.batching import Batcher
from engine.generate import GenerationConfig, eot_id, generate_ids, prompt_ids
from engine.padded_rows import PaddedRows
from engine.tokenizer import TokenizerConfig, train_tokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=50)).eval()


def alone(model, ids):
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1]


def test_rows_of_different_lengths_step_and_leave_as_if_alone(model):
    rows, a, b, c = PaddedRows(model), [1, 2, 3, 4, 5], [7, 8], [9, 10, 11]
    with torch.inference_mode():
        got = rows.add_many([a, b], [8, 8])
        assert rows.rows == 2
        for ids, lg in zip((a, b), got):
            torch.testing.assert_close(lg[0], alone(model, ids), rtol=1e-5, atol=1e-5)
        rows.set_next(0, 20), rows.set_next(1, 21)
        a, b = a + [20], b + [21]
        step = rows.step()
        torch.testing.assert_close(step[0], alone(model, a), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step[1], alone(model, b), rtol=1e-5, atol=1e-5)
        assert rows.keep([1]) == [1] and rows.rows == 1  # the longer row leaves; padding columns go with it
        torch.testing.assert_close(rows.add(c, 8)[0], alone(model, c), rtol=1e-5, atol=1e-5)  # joins the cut batch
        rows.set_next(0, 22), rows.set_next(1, 23)
        b, c = b + [22], c + [23]
        step = rows.step()
        torch.testing.assert_close(step[0], alone(model, b), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step[1], alone(model, c), rtol=1e-5, atol=1e-5)
    rows.reset()
    assert rows.rows == 0


def test_batcher_on_padded_rows_gives_each_request_its_own_ids(tmp_path):
    """Batcher(fast=False) runs PaddedRows; greedy requests of different prompt lengths decoded together get
    exactly the ids each gets alone from generate_ids on the model's own forward."""
    rng = random.Random(0)
    words = "the of and to in that was he for it with London Thames yeare".split()
    texts = [" ".join(rng.choice(words) for _ in range(40)) + "\n" for _ in range(40)]
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=300), tmp_path / "tok")
    torch.manual_seed(1)
    m = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(tok))).eval()
    cfg = GenerationConfig(max_new_tokens=12, temperature=0.0)
    prompts = ["the Thames was", "in London that yeare he with", "of"]
    with Batcher(m, tok, max_batch=4, fast=False) as b:
        assert not b.fast
        streams = [b.submit(p, cfg) for p in prompts]
        got = [list(list(s)[-1].generated_ids) for s in streams]
    for p, ids in zip(prompts, got):
        want = list(generate_ids(m, prompt_ids(tok, p, cfg, 64)[0], cfg, eos_id=eot_id(tok), fast=False))
        assert ids == want

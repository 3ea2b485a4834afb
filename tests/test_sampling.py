"""engine/sampling.py: TopK, TopP and draw give exactly what transformers' warpers and torch.multinomial give
(same tensors, same ids, same generator state after), on ordinary, tied, subnormal, NaN and inf inputs."""
import math

import numpy as np
import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from engine.sampling import MAX_FINITE, TopK, TopP, draw

IDS = torch.zeros((1, 3), dtype=torch.long)


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def rows(seed: int):
    """Logit rows of the kinds a sampler meets: wide and narrow spreads, ties, -inf masks, subnormal gaps."""
    g = torch.Generator().manual_seed(seed)
    v = int(torch.randint(2, 9000, (1,), generator=g))
    x = torch.randn(1, v, generator=g) * float(torch.rand(1, generator=g) * 8 + 0.01)
    yield x
    yield (x * 2).round() / 2  # many ties
    m = x.clone()
    m[torch.rand(1, v, generator=g) < 0.7] = float("-inf")
    yield m
    yield torch.full((1, v), float("-inf"))
    t = torch.zeros(1, v)
    t[0, :: max(1, v // 7)] = 1e-44  # subnormal steps
    yield t


@pytest.mark.parametrize("seed", range(12))
def test_topk_equals_transformers(seed):
    for x in rows(seed):
        for k in (1, 5, 50, 400, x.shape[1], x.shape[1] + 3):
            same(TopK(k)(IDS, x.clone()), TopKLogitsWarper(k)(IDS, x.clone()))
        same(TopK(3, min_tokens_to_keep=9)(IDS, x.clone()), TopKLogitsWarper(3, min_tokens_to_keep=9)(IDS, x.clone()))


@pytest.mark.parametrize("seed", range(12))
def test_topp_equals_transformers_after_topk(seed):
    for x in rows(seed):
        for k in (1, 2, 50, 900, 3000):
            y = TopKLogitsWarper(k)(IDS, TemperatureLogitsWarper(0.8)(IDS, x.clone()))
            for p in (0.0, 0.3, 0.9, 0.95, 0.999, 1.0):
                same(TopP(p)(IDS, y.clone()), TopPLogitsWarper(p)(IDS, y.clone()))
            same(TopP(0.5, min_tokens_to_keep=3)(IDS, y.clone()), TopPLogitsWarper(0.5, min_tokens_to_keep=3)(IDS, y.clone()))


def test_special_values_and_shapes_take_the_original():
    x = torch.randn(1, 300)
    x[0, 7], x[0, 9], x[0, 11] = float("nan"), float("inf"), float("-inf")
    for k in (1, 5, 299):
        same(TopK(k)(IDS, x.clone()), TopKLogitsWarper(k)(IDS, x.clone()))
    for p in (0.5, 0.95):
        same(TopP(p)(IDS, x.clone()), TopPLogitsWarper(p)(IDS, x.clone()))
    two = torch.randn(2, 100)
    same(TopK(5)(IDS, two.clone()), TopKLogitsWarper(5)(IDS, two.clone()))
    same(TopP(0.9)(IDS, two.clone()), TopPLogitsWarper(0.9)(IDS, two.clone()))
    d = torch.randn(1, 100, dtype=torch.float64)
    same(TopP(0.9)(IDS, d.clone()), TopPLogitsWarper(0.9)(IDS, d.clone()))
    zeros = torch.tensor([[0.0, -0.0, 1.0, 2.0] + [float("-inf")] * 20])  # -0.0 == 0.0: a tie
    same(TopP(0.4)(IDS, zeros.clone()), TopPLogitsWarper(0.4)(IDS, zeros.clone()))


def check_draws(probs: torch.Tensor, seeds) -> None:
    for seed in seeds:
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert draw(probs, a) == int(torch.multinomial(probs, 1, generator=b)), seed
        assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))  # same state after


@pytest.mark.parametrize("seed", range(8))
def test_draw_equals_multinomial(seed):
    for x in rows(seed):
        for k, p in ((50, 0.95), (1, 1.0), (2000, 0.999), (x.shape[1], 1.0)):
            y = TopPLogitsWarper(p)(IDS, TopKLogitsWarper(k)(IDS, TemperatureLogitsWarper(0.8)(IDS, x.clone())))
            probs = torch.softmax(y, dim=-1)
            if torch.isnan(probs).any():
                continue
            check_draws(probs, range(seed * 40, seed * 40 + 40))


def test_draw_when_every_ratio_underflows():
    # one subnormal probability: p / q underflows to 0 whenever q > 1, and multinomial then returns entry 0,
    # a zero-probability id (argmax of all zeros); both branches are taken over these seeds
    probs = torch.zeros(1, 500)
    probs[0, 321] = 1e-45
    picked = set()
    for seed in range(60):
        a, b = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        got = draw(probs, a)
        assert got == int(torch.multinomial(probs, 1, generator=b))
        picked.add(got)
    assert picked == {0, 321}


def test_draw_many_candidates_and_bad_input():
    probs = torch.softmax(torch.randn(1, MAX_FINITE + 500), dim=-1)  # over MAX_FINITE: multinomial itself
    check_draws(probs, range(5))
    for bad in (torch.tensor([[0.5, float("nan")]]), torch.tensor([[0.5, -0.1]]), torch.zeros(1, 4),
                torch.tensor([[1.0, float("inf")]])):
        with pytest.raises(RuntimeError) as ours:
            draw(bad, torch.Generator().manual_seed(0))
        with pytest.raises(RuntimeError) as theirs:
            torch.multinomial(bad, 1, generator=torch.Generator().manual_seed(0))
        assert str(ours.value) == str(theirs.value)


def test_exponential_is_minus_log1p_of_the_uniform_draw():
    # the aten fact draw() stands on (see engine/sampling.py): same values, same generator state after
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    q = torch.empty(8000).exponential_(1, generator=a)
    u = torch.empty(8000, dtype=torch.float64).uniform_(0, 1, generator=b)
    assert torch.equal(q, torch.tensor([-math.log1p(-x) for x in u.tolist()], dtype=torch.float64).float())
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))
    assert np.isfinite(q.numpy()).all()

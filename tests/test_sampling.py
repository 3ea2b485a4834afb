"""engine/sampling.py: Warp and draw give exactly what transformers' warpers and torch.multinomial give
(same tensors, same ids, same generator state after), on ordinary, tied, subnormal, NaN and inf inputs."""
import math

import numpy as np
import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from engine.sampling import MAX_FINITE, Warp, draw

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


def chain(t: float, k: int, p: float):
    """What `model.generate` builds for these settings: each warper only where it is on."""
    return ([TemperatureLogitsWarper(t)] if t != 1 else []) + ([TopKLogitsWarper(k)] if k else []) \
        + ([TopPLogitsWarper(p)] if p < 1 else [])


def original(t: float, k: int, p: float, x: torch.Tensor) -> torch.Tensor:
    for w in chain(t, k, p):
        x = w(IDS, x)
    return x


def check_warp(t: float, k: int, p: float, x: torch.Tensor) -> None:
    before = x.clone()
    same(Warp(t, k, p)(IDS, x), original(t, k, p, x.clone()))
    same(x, before)  # the input is not written


@pytest.mark.parametrize("seed", range(12))
def test_warp_equals_transformers_warpers(seed):
    for x in rows(seed):
        v = x.shape[1]
        for t in (1.0, 0.8, 0.3):
            for k in (0, 1, 2, 50, 400, 3000, v, v + 3):
                for p in (0.0, 0.3, 0.9, 0.95, 0.999, 1.0):
                    check_warp(t, k, p, x)


def test_special_values_and_shapes_take_the_original():
    x = torch.randn(1, 300)
    x[0, 7], x[0, 9], x[0, 11] = float("nan"), float("inf"), float("-inf")
    y = torch.randn(1, 300)
    y[0, 9] = float("inf")  # +inf without NaN: top-k is exact, top-p takes the original
    for z in (x, y):
        for k in (0, 1, 5, 299):
            for p in (0.5, 0.95, 1.0):
                check_warp(0.8, k, p, z)
    two = torch.randn(2, 100)
    check_warp(0.8, 5, 0.9, two)
    check_warp(0.8, 5, 0.9, torch.randn(1, 100, dtype=torch.float64))
    check_warp(0.8, 5, 0.9, torch.randn(1, 200)[:, ::2])  # not contiguous
    zeros = torch.tensor([[0.0, -0.0, 1.0, 2.0] + [float("-inf")] * 20])  # -0.0 == 0.0: a tie
    check_warp(1.0, 0, 0.4, zeros)
    huge = torch.randn(1, 500) * 3e38  # overflows to inf when divided by 0.3: both sides alike
    check_warp(0.3, 50, 0.9, huge)


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

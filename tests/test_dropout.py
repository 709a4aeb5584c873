"""Packed dropout (``layers/dropout.py``, ``dropout_rng=packed``): its masks' law, the reference formula, gradients,
the module swap, and the run option."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnbench.layers.dropout import (
    PackedDropout,
    effective_p,
    packed_dropout,
    packed_keep_mask,
    use_packed_dropout,
)


def test_effective_p_rounds_to_sixteen_bit_levels():
    assert effective_p(0.1) == 6554 / 65536 and abs(effective_p(0.1) - 0.1) < 2 ** -17
    assert effective_p(0.0) == 0.0 and effective_p(1.0) == 1.0 and effective_p(0.5) == 0.5
    assert effective_p(1e-6) == 0.0  # below half a level: no dropout at all


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_keeps_each_entry_with_probability_one_minus_p(p):
    g = torch.Generator().manual_seed(0)
    n = 1 << 20
    keep = packed_keep_mask((n,), p, generator=g)
    assert keep.dtype == torch.bool and keep.shape == (n,)
    q = effective_p(p)
    sd = math.sqrt(q * (1 - q) / n)
    assert abs((~keep).float().mean().item() - q) < 5 * sd  # binomial: 5 standard deviations
    # the four lanes of one 64-bit draw are independent: each lane position drops at rate q, and two neighbours
    # (same word) are both dropped at rate q^2
    lanes = (~keep).view(-1, 4).float()  # (n/4, 4)
    assert (lanes.mean(0) - q).abs().max().item() < 5 * math.sqrt(q * (1 - q) / (n // 4))
    both = (lanes[:, 0] * lanes[:, 1]).mean().item()
    assert abs(both - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / (n // 4))


def test_mask_dtype_and_odd_sizes():
    g = torch.Generator().manual_seed(1)
    for shape in [(1,), (3, 5), (2, 3, 7)]:  # sizes that are not a multiple of four lanes
        m = packed_keep_mask(shape, 0.3, dtype=torch.float32, generator=g)
        assert m.shape == shape and m.dtype == torch.float32 and set(m.unique().tolist()) <= {0.0, 1.0}
    # the same generator state gives the same mask in any dtype
    a = packed_keep_mask((4, 9), 0.3, generator=torch.Generator().manual_seed(5))
    b = packed_keep_mask((4, 9), 0.3, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b.bool())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_packed_dropout_is_mask_times_inverse_keep_rate(dtype):
    """The reference formula: y = x * keep / (1 - effective_p), the mask drawn from the same generator state."""
    x = torch.randn(6, 33, dtype=dtype)
    y = packed_dropout(x, 0.2, generator=torch.Generator().manual_seed(3))
    keep = packed_keep_mask(x.shape, 0.2, generator=torch.Generator().manual_seed(3))
    want = x.double() * keep.double() / (1 - effective_p(0.2))
    assert y.dtype == dtype and y.shape == x.shape
    tol = {torch.bfloat16: 1e-2, torch.float32: 1e-6, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(y.double(), want, rtol=tol, atol=tol)
    assert torch.equal(y == 0, (~keep) | (x == 0))


def test_packed_dropout_gradient_is_the_same_mask_and_scale():
    x = torch.randn(5, 17, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 17, dtype=torch.float64)
    y = packed_dropout(x, 0.3, generator=torch.Generator().manual_seed(7))
    y.backward(g)
    keep = packed_keep_mask(x.shape, 0.3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(x.grad, g * keep / (1 - effective_p(0.3)))
    # and torch's own check on the function under one fixed mask
    assert torch.autograd.gradcheck(
        lambda t: packed_dropout(t, 0.3, generator=torch.Generator().manual_seed(7)), (x.detach().requires_grad_(),))


def test_packed_dropout_is_unbiased():
    torch.manual_seed(0)
    y = packed_dropout(torch.ones(1 << 20), 0.1)
    assert abs(y.mean().item() - 1.0) < 5 * math.sqrt(0.1 / 0.9 / (1 << 20))


def test_identity_cases_and_bad_p():
    x = torch.randn(4, 8)
    assert packed_dropout(x, 0.5, training=False) is x
    assert packed_dropout(x, 0.0) is x
    assert torch.equal(packed_dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1, but got 1.5"):
        packed_dropout(x, 1.5)


def test_seeded_runs_repeat_and_differ_from_nn_dropout():
    x = torch.randn(64, 64)
    torch.manual_seed(11)
    a = packed_dropout(x, 0.1)
    torch.manual_seed(11)
    b = packed_dropout(x, 0.1)
    torch.manual_seed(11)
    c = nn.functional.dropout(x, 0.1)
    assert torch.equal(a, b) and not torch.equal(a == 0, c == 0)  # reproducible by seed, another draw than torch's


def test_use_packed_dropout_swaps_every_dropout_and_keeps_the_function():
    from attnbench.models.forecaster import PatchForecaster

    torch.manual_seed(0)
    net = PatchForecaster(seq_len=16, pred_len=8, patch_len=4, d_model=16, n_heads=2, n_layers=2, d_mlp=32,
                          dropout=0.1, attention={"name": "hot"})
    before = [m for m in net.modules() if type(m) is nn.Dropout]
    x = torch.randn(3, 16, 5)
    net.eval()
    y0 = net(x)
    assert use_packed_dropout(net) == len(before) > 0
    assert not any(type(m) is nn.Dropout for m in net.modules())
    assert sum(isinstance(m, PackedDropout) for m in net.modules()) == len(before)
    assert torch.equal(net(x), y0)  # eval: no dropout, the same function
    net.train()
    torch.manual_seed(3)
    y1 = net(x)
    torch.manual_seed(3)
    assert torch.equal(net(x), y1) and not torch.equal(y1, y0)
    y1.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)
    assert use_packed_dropout(net) == 0  # nothing left to swap


def test_inplace_dropout_is_left_alone():
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.1, inplace=True), nn.Dropout(0.2))
    assert use_packed_dropout(net) == 1 and type(net[1]) is nn.Dropout and isinstance(net[2], PackedDropout)

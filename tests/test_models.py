"""Layers and the forecaster: shapes, gradients, RoPE and instance-normalisation properties."""

from __future__ import annotations

import pytest
import torch

from attnbench.layers.attention import MultiAxisAttention
from attnbench.layers.rope import apply_rope
from attnbench.models.forecaster import PatchForecaster

HOT = {"name": "hot"}
FULL = {"name": "full"}
LIN = {"name": "hot_linear"}


def small(attention, **kw):
    args = dict(seq_len=32, pred_len=24, attention=attention, patch_len=4, d_model=32, n_heads=4, n_layers=2,
                d_mlp=64, dropout=0.0, per_axis_qk=attention["name"] != "full")
    args.update(kw)
    return PatchForecaster(**args)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(1, 8), torch.randn(1, 8)
    qs = apply_rope(q.expand(10, 8).contiguous(), 0)  # the same vector at positions 0..9
    ks = apply_rope(k.expand(10, 8).contiguous(), 0)
    s = qs @ ks.T  # (10, 10)
    torch.testing.assert_close(s[2, 5], s[4, 7])
    torch.testing.assert_close(s[0, 0], (q @ k.T)[0, 0])
    torch.testing.assert_close(qs.norm(dim=-1), q.norm().expand(10))  # rotations keep norms


@pytest.mark.parametrize("attention", [HOT, FULL, LIN])
def test_multi_axis_attention_shapes(attention):
    layer = MultiAxisAttention(32, 4, n_axes=3, attention=attention, rope_axes=(0, 2),
                               per_axis_qk=attention["name"] != "full")
    x = torch.randn(2, 3, 4, 5, 32)
    assert layer(x).shape == x.shape
    with pytest.raises(ValueError, match="expected \\(B, 3 axes, E\\)"):
        layer(torch.randn(2, 4, 5, 32))


def test_layer_refuses_bad_options():
    with pytest.raises(ValueError, match="n_heads=5 must divide d_model=32"):
        MultiAxisAttention(32, 5, 2, HOT)
    with pytest.raises(ValueError, match="per_axis_qk=True but attention 'full'"):
        MultiAxisAttention(32, 4, 2, FULL, per_axis_qk=True)
    with pytest.raises(ValueError, match="set by the layer"):
        MultiAxisAttention(32, 4, 2, {"name": "hot_linear", "head_dim": 8})
    with pytest.raises(ValueError, match="rope_axes=\\[2\\] out of range"):
        MultiAxisAttention(32, 4, 2, HOT, rope_axes=(2,))


def test_full_layer_on_one_axis_equals_hot_layer_on_one_axis():
    """With one axis, the HOT layer (pool = identity) computes exactly full attention."""
    torch.manual_seed(0)
    hot = MultiAxisAttention(32, 4, 1, HOT, rope_axes=(0,), per_axis_qk=False).double()
    full = MultiAxisAttention(32, 4, 1, FULL, rope_axes=(0,), per_axis_qk=False).double()
    full.load_state_dict(hot.state_dict())
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    torch.testing.assert_close(hot(x), full(x))


@pytest.mark.parametrize("attention", [HOT, FULL, LIN, {"name": "hot", "mode": "sum"}])
@pytest.mark.parametrize("head", ["mean", "flatten"])
def test_forecaster_shapes_and_gradients(attention, head):
    torch.manual_seed(0)
    m = small(attention, head=head)
    x = torch.randn(3, 32, 5)
    y = m(x)
    assert y.shape == (3, 24, 5)
    y.square().mean().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_instance_norm_makes_forecasts_affine_equivariant():
    torch.manual_seed(0)
    m = small(HOT).eval().double()
    x = torch.randn(2, 32, 3, dtype=torch.float64)
    a, b = 3.0, -7.0
    torch.testing.assert_close(m(a * x + b), a * m(x) + b, rtol=1e-4, atol=1e-4)


def test_variables_are_exchangeable_for_hot():
    """HOT has no variable embedding: permuting variables permutes the forecasts."""
    torch.manual_seed(0)
    m = small(HOT).eval().double()
    x = torch.randn(2, 32, 4, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(m(x[:, :, perm]), m(x)[:, :, perm])


def test_default_size_matches_the_official_parameter_count():
    # D=128, d_mlp=512, 4 blocks, 8 heads, patch 4, one 720-step head: 1,279,056 parameters (HOT code)
    m = PatchForecaster(seq_len=96, pred_len=720, attention=HOT)
    assert sum(p.numel() for p in m.parameters()) == 1_279_056


def test_forecaster_rejects_bad_lengths():
    with pytest.raises(ValueError, match="patch_len=5 must divide seq_len=32"):
        small(HOT, patch_len=5)
    with pytest.raises(ValueError, match="input length 16 != seq_len=32"):
        small(HOT)(torch.randn(1, 16, 3))

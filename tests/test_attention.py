"""Attention registry and math: equivalences with full attention and with slow references."""

from __future__ import annotations

import pytest
import torch

from attnbench import attention
from attnbench.attention.full import full_attention, full_attention_reference
from attnbench.attention.hot import (
    HOTAttention,
    HOTLinearAttention,
    combine,
    kronecker_dense,
    linear_factor,
    mode_product,
)
from attnbench.attention.registry import AttentionBase, Caps, register, require

torch.manual_seed(0)


def rand(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype)


# ----------------------------------------------------------------------------- registry
def test_registry_lists_entries_and_rejects_bad_requests():
    assert {"full", "hot", "hot_linear"} <= set(attention.available())
    with pytest.raises(KeyError, match="did you mean 'hot'|Did you mean 'hot'"):
        attention.get("hott")
    with pytest.raises(TypeError, match="unknown option 'window'.*accepted: mode, pool"):
        attention.build("hot", window=3)
    with pytest.raises(ValueError, match="does not support causal=True; entries that do: .*full"):
        require(attention.get("hot"), causal=True)
    require(attention.get("full"), causal=True, key_padding_mask=True)  # supported: no error
    with pytest.raises(ValueError, match="already registered"):
        register("full")(type("Dup", (AttentionBase,), {}))
    with pytest.raises(TypeError, match="not a subclass of AttentionBase"):
        register("not_an_attention")(dict)
    assert attention.get("hot").caps.tensor and not attention.get("full").caps.tensor
    assert isinstance(attention.get("hot_linear").caps, Caps)


# ----------------------------------------------------------------------------- full
def test_full_attention_matches_reference_with_masks():
    q, k, v = rand(2, 3, 5, 8), rand(2, 3, 7, 8), rand(2, 3, 7, 4)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, :] = False  # a batch element whose keys are all padding: zeros, not NaN
    for causal in (False, True):
        out = full_attention(q, k, v, key_padding_mask=mask, causal=causal)
        ref = full_attention_reference(q, k, v, key_padding_mask=mask, causal=causal)
        torch.testing.assert_close(out, ref)
        assert torch.isfinite(out).all() and (out[1] == 0).all()
    # padded keys change nothing
    k2, v2 = k.clone(), v.clone()
    k2[0, :, 4:] += 5.0
    v2[0, :, 4:] -= 3.0
    torch.testing.assert_close(full_attention(q, k2, v2, key_padding_mask=mask)[0],
                               full_attention(q, k, v, key_padding_mask=mask)[0])


# ----------------------------------------------------------------------------- HOT (softmax)
@pytest.mark.parametrize("mode", ["product", "sum"])
def test_hot_on_one_axis_equals_full_attention(mode):
    q, k, v = rand(2, 4, 9, 8), rand(2, 4, 9, 8), rand(2, 4, 9, 8)
    out = HOTAttention(mode=mode)(q, k, v)
    torch.testing.assert_close(out, full_attention_reference(q, k, v))


def test_hot_product_equals_explicit_kronecker_attention():
    B, H, N1, N2, N3, D = 2, 3, 4, 5, 3, 6
    q, k, v = rand(B, H, N1, N2, N3, D), rand(B, H, N1, N2, N3, D), rand(B, H, N1, N2, N3, D)
    hot = HOTAttention(mode="product")
    factors = hot.factors(q, k, v)
    dense = kronecker_dense(factors, "product")  # (B, H, N, N), N = N1*N2*N3
    assert dense.shape == (B, H, N1 * N2 * N3, N1 * N2 * N3)
    torch.testing.assert_close(dense.sum(-1), torch.ones(B, H, N1 * N2 * N3, dtype=dense.dtype))
    ref = (dense @ v.flatten(2, 4)).unflatten(2, (N1, N2, N3))
    torch.testing.assert_close(hot(q, k, v), ref)
    # element-wise: weight((n1,n2,n3),(m1,m2,m3)) = prod_i A_i[n_i, m_i]
    a1, a2, a3 = factors
    w = dense[0, 1].reshape(N1, N2, N3, N1, N2, N3)[1, 2, 0, 3, 4, 2]
    torch.testing.assert_close(w, a1[0, 1, 1, 3] * a2[0, 1, 2, 4] * a3[0, 1, 0, 2])


def test_hot_sum_equals_explicit_kronecker_sum():
    q, k, v = rand(1, 2, 3, 4, 5), rand(1, 2, 3, 4, 5), rand(1, 2, 3, 4, 5)
    for norm in (False, True):
        hot = HOTAttention(mode="sum", sum_normalize=norm)
        dense = kronecker_dense(hot.factors(q, k, v), "sum") / (2 if norm else 1)
        ref = (dense @ v.flatten(2, 3)).unflatten(2, (3, 4))
        torch.testing.assert_close(hot(q, k, v), ref)


def test_hot_pooling_and_per_axis_queries():
    q, k, v = rand(2, 2, 3, 4, 6), rand(2, 2, 3, 4, 6), rand(2, 2, 3, 4, 6)
    hot = HOTAttention()
    a_sum = hot.factors(q, k, v)
    # per-axis tuples with the same tensor give the same result as one shared tensor
    torch.testing.assert_close(hot(q, k, v), hot((q, q), (k, k), v))
    # pooled query of axis 0 is the sum over axis 1
    qi = q.sum(dim=3)
    ki = k.sum(dim=3)
    ref = torch.softmax(qi @ ki.transpose(-1, -2) / 6**0.5, -1)
    torch.testing.assert_close(a_sum[0], ref)
    with pytest.raises(ValueError, match="2 axes"):
        hot((q, q, q), k, v)
    with pytest.raises(ValueError, match="hot does not support causal"):
        hot(q, k, v, causal=True)


def test_hot_cross_attention_changes_axis_lengths():
    q = rand(2, 2, 3, 5, 4)  # queries on a 3 x 5 grid
    k, v = rand(2, 2, 6, 7, 4), rand(2, 2, 6, 7, 4)  # keys/values on 6 x 7
    out = HOTAttention()(q, k, v)
    assert out.shape == (2, 2, 3, 5, 4)


def test_mode_product_contracts_one_axis():
    a, v = rand(2, 3, 4, 5), rand(2, 3, 6, 5, 7, 2)  # contract axis 1 (length 5 -> 4)
    out = mode_product(a, v, 1)
    ref = torch.einsum("bhnm,bhimjd->bhinjd", a, v)
    torch.testing.assert_close(out, ref)


# ----------------------------------------------------------------------------- HOT (kernelised)
@pytest.mark.parametrize("feature_map", ["favor", "elu"])
@pytest.mark.parametrize("mode", ["product", "sum"])
def test_hot_linear_equals_its_explicit_formula(feature_map, mode):
    D = 8
    att = HOTLinearAttention(head_dim=D, mode=mode, feature_map=feature_map).double()
    q, k, v = rand(2, 2, 5, 6, D), rand(2, 2, 5, 6, D), rand(2, 2, 5, 6, D)
    pq, pk = att.pooled(q, k, v, None)
    factors = [linear_factor(att.features(a, True), att.features(b, False)) for a, b in zip(pq, pk, strict=True)]
    ref = combine(factors, v, mode)
    torch.testing.assert_close(att(q, k, v), ref, rtol=1e-6, atol=1e-6)
    # and on one axis it is linear attention written quadratically
    q1, k1, v1 = rand(2, 2, 7, D), rand(2, 2, 7, D), rand(2, 2, 7, D)
    fq, fk = att.features(q1, True), att.features(k1, False)
    ref1 = linear_factor(fq, fk) @ v1
    torch.testing.assert_close(att(q1, k1, v1), ref1, rtol=1e-6, atol=1e-6)


def test_hot_linear_favor_approximates_softmax_better_with_more_features():
    torch.manual_seed(1)
    D = 8
    # small inputs: the variance of positive random features grows like exp(|q|^2 + |k|^2)
    q, k, v = 0.2 * rand(4, 2, 6, 5, D), 0.2 * rand(4, 2, 6, 5, D), rand(4, 2, 6, 5, D)
    exact = HOTAttention().double()(q, k, v)
    errs = []
    for m in (4, 64, 2048):
        att = HOTLinearAttention(head_dim=D, n_features=m, seed=3).double()
        errs.append((att(q, k, v) - exact).abs().mean().item())
    assert errs[2] < errs[1] < errs[0]
    assert errs[2] < 0.05


def test_hot_linear_is_deterministic_until_redraw():
    att = HOTLinearAttention(head_dim=8).eval()
    q, k, v = torch.randn(1, 2, 4, 5, 8), torch.randn(1, 2, 4, 5, 8), torch.randn(1, 2, 4, 5, 8)
    a, b = att(q, k, v), att(q, k, v)
    assert torch.equal(a, b)
    att.redraw()
    assert not torch.allclose(att(q, k, v), a)
    assert att.n_features == 32  # ceil(8 * (1 + log2 8))


@pytest.mark.parametrize("name", ["full", "hot", "hot_linear"])
def test_gradients_are_finite(name):
    kw = {"head_dim": 8} if name == "hot_linear" else {}
    att = attention.build(name, **kw)
    shape = (2, 2, 12, 8) if name == "full" else (2, 2, 3, 4, 8)
    q, k, v = (torch.randn(*shape, requires_grad=True) for _ in range(3))
    out = att(q, k, v)
    assert out.shape == shape and out.dtype == torch.float32
    out.square().sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_favor_features_survive_large_norms():
    """The stabiliser covers the whole exponent: |x'|^2 / 2 > 745 does not underflow every feature to 0."""
    from attnbench.attention.feature_maps import favor_feature_map, orthogonal_gaussian

    proj = orthogonal_gaussian(32, 16, torch.Generator().manual_seed(0)).double()
    x = 200.0 * torch.randn(3, 5, 16, dtype=torch.float64)  # |x'|^2 / 2 ~ 1e5
    fq = favor_feature_map(x, proj, is_query=True, eps=0.0)
    torch.testing.assert_close(fq.amax(-1), torch.full((3, 5), 32**-0.5, dtype=torch.float64))
    fk = favor_feature_map(x, proj, is_query=False, eps=0.0)
    torch.testing.assert_close(fk.amax(dim=(-1, -2)), torch.full((3,), 32**-0.5, dtype=torch.float64))
    # the kernel ratios are unchanged by the stabiliser: compare with an unstabilised small-norm copy
    small = x / 100.0
    raw = torch.exp(small * 16**-0.25 @ proj.T - 0.5 * (small * 16**-0.25).square().sum(-1, keepdim=True))
    ref = raw / raw.amax(-1, keepdim=True) / 32**0.5
    torch.testing.assert_close(favor_feature_map(small, proj, is_query=True, eps=0.0), ref)

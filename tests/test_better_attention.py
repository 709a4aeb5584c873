"""Optimised / Efficient / Super Attention at the layer level, and the layer's shared query/key projection."""

from __future__ import annotations

import pytest
import torch

from attnbench.attention.better import super_attention_reference, super_values
from attnbench.layers.attention import MultiAxisAttention

E, NH, L = 16, 4, 10


def layer(name: str, **opts) -> MultiAxisAttention:
    torch.manual_seed(0)
    return MultiAxisAttention(E, NH, n_axes=1, attention={"name": name, **opts}, qk_norm=False, bias=False).double()


def n_weights(m: MultiAxisAttention) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_follow_the_paper():
    assert n_weights(layer("full")) == 4 * E * E
    assert n_weights(layer("optimised")) == 3 * E * E  # -25 %
    assert n_weights(layer("efficient")) == 2 * E * E  # -50 %
    assert n_weights(layer("super", max_len=L)) == 2 * E * E + L * L
    m = layer("efficient")
    assert m.k_proj is None and m.v_proj is None and m.q_proj is not None


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", ["efficient", "super"])
def test_layer_equals_the_per_head_formula(name, causal):
    m = layer(name, max_len=L) if name == "super" else layer(name)
    x = torch.randn(2, L, E, dtype=torch.float64)
    w_q, w_o = m.q_proj.weight.T, m.o_proj.weight.T  # (E, E) as x @ W
    w_a = m.attn.w_a if name == "super" else torch.eye(L, dtype=torch.float64)
    ref = torch.stack([super_attention_reference(xb, xb, w_q, w_a, NH, causal) @ w_o for xb in x])
    torch.testing.assert_close(m(x, causal=causal), ref)


def test_optimised_values_are_the_input_slices():
    m = layer("optimised")
    ref = layer("full")
    with torch.no_grad():  # the full layer with W^V = identity is Optimised Attention
        ref.q_proj.weight.copy_(m.q_proj.weight)
        ref.k_proj.weight.copy_(m.k_proj.weight)
        ref.o_proj.weight.copy_(m.o_proj.weight)
        ref.v_proj.weight.copy_(torch.eye(E))
    x = torch.randn(2, L, E, dtype=torch.float64)
    torch.testing.assert_close(m(x), ref(x))


def test_super_is_causal_only_through_a_triangular_w_a_and_ignores_padding():
    w_a = torch.randn(6, 6, dtype=torch.float64)
    v = torch.randn(1, 2, 6, 3, dtype=torch.float64)
    v2 = v.clone()
    v2[:, :, 4:] += 10.0
    causal = super_values(v, w_a, causal=True)[:, :, :4]
    torch.testing.assert_close(super_values(v2, w_a, causal=True)[:, :, :4], causal)
    assert not torch.allclose(super_values(v2, w_a)[:, :, :4], super_values(v, w_a)[:, :, :4])
    keep = torch.tensor([[True, True, True, True, False, False]])
    torch.testing.assert_close(super_values(v2, w_a, keep), super_values(v, w_a, keep))
    # a shorter sequence uses the top-left block: the same as zero-padding to max_len
    padded = torch.cat([v[:, :, :4], torch.zeros_like(v[:, :, 4:])], 2)
    torch.testing.assert_close(super_values(v[:, :, :4], w_a), super_values(padded, w_a)[:, :, :4])


def test_super_refuses_longer_inputs_and_bad_options():
    m = layer("super", max_len=L)
    with pytest.raises(ValueError, match=f"key length {L + 1} exceeds max_len={L}"):
        m(torch.randn(1, L + 1, E, dtype=torch.float64))
    with pytest.raises(ValueError, match="init='zeros'; allowed: 'xavier', 'identity'"):
        layer("super", max_len=L, init="zeros")
    torch.testing.assert_close(layer("super", max_len=L, init="identity").attn.w_a,
                               torch.eye(L, dtype=torch.float64))


def test_shared_qk_layer_passes_one_tensor_to_reformer():
    m = MultiAxisAttention(E, NH, n_axes=1, attention={"name": "reformer", "shared_qk": True, "n_buckets": 2,
                                                        "chunk_size": 4})
    assert m.shared_qk and m.k_proj is None
    x = torch.randn(2, 12, E)
    assert m(x).shape == x.shape  # reformer raises unless k is q
    with pytest.raises(ValueError, match="shared query/key projection .* self-attention only"):
        m(x, context=x.clone())
    sep = MultiAxisAttention(E, NH, n_axes=1, attention={"name": "reformer", "shared_qk": False})
    assert not sep.shared_qk and sep.k_proj is not None

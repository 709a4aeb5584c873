"""Treeformer TF/TC attention: routing, the blocked fast path against the dense-mask references,
limits, capacity, gradients into the tree and the active-height schedule."""

from __future__ import annotations

import pytest
import torch

from attnbench.attention import build
from attnbench.attention.full import full_attention_reference
from attnbench.attention.treeformer import (
    leaf_slots,
    path_matrix,
    route,
    tc_attention_reference,
    tf_attention_reference,
)

B, H, D, DV = 2, 3, 8, 5


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def traverse(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, height: int) -> torch.Tensor:
    """Leaf of one token by walking the tree: left (bit 0) where x.w + b >= 0."""
    u, leaf = 0, 0
    for _ in range(height):
        right = int(x @ w[u] + b[u] < 0)
        leaf = 2 * leaf + right
        u = 2 * u + 1 + right
    return torch.tensor(leaf)


def test_path_matrix_small():
    assert path_matrix(1).tolist() == [[1.0], [-1.0]]
    P = path_matrix(2)  # nodes: 0 root, 1 left child, 2 right child
    assert P.tolist() == [[1, 1, 0], [1, -1, 0], [-1, 0, 1], [-1, 0, -1]]
    assert (P.abs().sum(1) == 2).all()


@pytest.mark.parametrize("height", [1, 3])
def test_route_matches_an_explicit_walk_and_is_a_straight_through_one_hot(height):
    x = rand(B, H, 20, D, seed=1).requires_grad_(True)
    w, b = rand(2**height - 1, D, seed=2), rand(2**height - 1, seed=3) * 0.1
    leaf, onehot = route(x, w, b, height)
    expect = torch.stack([traverse(t, w, b, height) for t in x.detach().reshape(-1, D)]).view(B, H, 20)
    assert torch.equal(leaf, expect)
    assert torch.equal(onehot.detach(), torch.nn.functional.one_hot(leaf, 2**height).double())
    onehot.gather(-1, leaf[..., None]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the surrogate gradient reaches the tokens


@pytest.mark.parametrize("causal", [False, True])
def test_tf_with_one_leaf_is_full_attention(causal):
    att = build("treeformer_tf", head_dim=D, height=0).double()
    q, k, v = rand(B, H, 11, D, seed=1), rand(B, H, 11, D, seed=2), rand(B, H, 11, DV, seed=3)
    mask = torch.ones(B, 11, dtype=torch.bool)
    mask[0, 7:] = False
    for m in (None, mask):
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m, causal=causal),
                                   full_attention_reference(q, k, v, key_padding_mask=m, causal=causal))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("Lq", "S"), [(17, 17), (9, 17), (17, 6)])
@pytest.mark.parametrize("height", [1, 3])
def test_tf_blocks_equal_the_dense_leaf_mask(causal, Lq, S, height):
    torch.manual_seed(0)
    att = build("treeformer_tf", head_dim=D, height=height).double()
    q, k, v = rand(B, H, Lq, D, seed=1), rand(B, H, S, D, seed=2), rand(B, H, S, DV, seed=3)
    mask = torch.ones(B, S, dtype=torch.bool)
    mask[0, S // 2:] = False
    mask[1, 0] = False
    leaf_q, _ = route(q, att.weight, att.bias, height)
    leaf_k, _ = route(k, att.weight, att.bias, height)
    assert len(leaf_k.unique()) > 1, "the test needs several occupied leaves"
    for m in (None, mask):
        ref = tf_attention_reference(q, k, v, leaf_q, leaf_k, key_padding_mask=m, causal=causal)
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m, causal=causal), ref)


def test_leaf_slots_sort_by_leaf_then_position_and_capacity_drops_the_latest():
    leaf = torch.tensor([[[1, 0, 1, 1, 0, 1]]])  # (1, 1, 6)
    keep = torch.tensor([[True, True, True, True, True, False]])
    idx, valid = leaf_slots(leaf, keep, 2, None)
    assert idx.tolist() == [[[[1, 4, 0], [0, 2, 3]]]] and valid.tolist() == [[[[1, 1, 0], [1, 1, 1]]]]
    idx, valid = leaf_slots(leaf, keep, 2, capacity=2)
    assert idx.tolist() == [[[[1, 4], [0, 2]]]] and valid.all()  # token 3 of the full leaf 1 is dropped


def test_tf_capacity_bounds_blocks_and_matches_the_exact_result_when_nothing_overflows():
    torch.manual_seed(0)
    exact = build("treeformer_tf", head_dim=D, height=2).double()
    roomy = build("treeformer_tf", head_dim=D, height=2, capacity_factor=4.0).double()
    tight = build("treeformer_tf", head_dim=D, height=2, capacity_factor=0.5).double()
    for m in (roomy, tight):
        m.load_state_dict(exact.state_dict())
    q, k, v = rand(B, H, 16, D, seed=1), rand(B, H, 16, D, seed=2), rand(B, H, 16, DV, seed=3)
    torch.testing.assert_close(roomy(q, k, v), exact(q, k, v))  # 4 x 16/4 = 16 slots: no overflow
    out = tight(q, k, v)  # 2 slots per leaf: at most 2 x 4 queries per (b, h) get an output
    assert ((out.abs().sum(-1) > 0).sum(-1) <= 8).all() and not torch.allclose(out, exact(q, k, v))


@pytest.mark.parametrize("height", [0, 1, 3])
def test_tc_equals_its_loop_reference(height):
    torch.manual_seed(0)
    att = build("treeformer_tc", head_dim=D, height=height).double()
    q, k, v = rand(B, H, 10, D, seed=1), rand(B, H, 13, D, seed=2), rand(B, H, 13, DV, seed=3)
    mask = torch.ones(B, 13, dtype=torch.bool)
    mask[0, 5:] = False
    leaf_q, _ = route(q, att.weight, att.bias, height)
    leaf_k, _ = route(k, att.weight, att.bias, height)
    for m in (None, mask):
        ref = tc_attention_reference(q, k, v, leaf_q, leaf_k, height, key_padding_mask=m)
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m), ref)
    if height == 0:  # one node: the mean of the values
        torch.testing.assert_close(att(q, k, v), v.mean(2, keepdim=True).expand(-1, -1, 10, -1))


@pytest.mark.parametrize("name", ["treeformer_tf", "treeformer_tc"])
def test_the_tree_gets_gradient(name):
    torch.manual_seed(0)
    att = build(name, head_dim=D, height=2).double().train()
    q, k, v = rand(B, H, 16, D, seed=1), rand(B, H, 16, D, seed=2), rand(B, H, 16, DV, seed=3)
    att(q, k, v).square().sum().backward()
    assert att.weight.grad is not None and att.weight.grad.abs().sum() > 0
    assert att.bias.grad is not None and att.bias.grad.abs().sum() > 0


def test_tc_gradient_is_dense_over_keys():
    """Every key feeds the root summary, so every key gets gradient (TF: only keys sharing a query's leaf)."""
    torch.manual_seed(0)
    att = build("treeformer_tc", head_dim=D, height=3).double()
    q, v = rand(1, 1, 4, D, seed=1), rand(1, 1, 32, DV, seed=3)
    k = rand(1, 1, 32, D, seed=2).requires_grad_(True)
    att(q, k, v).sum().backward()
    assert (k.grad.abs().sum(-1) > 0).all()


def test_active_height_routes_with_the_top_levels():
    torch.manual_seed(0)
    att = build("treeformer_tf", head_dim=D, height=3).double()
    q, k, v = rand(B, H, 12, D, seed=1), rand(B, H, 12, D, seed=2), rand(B, H, 12, DV, seed=3)
    att.set_active_height(0)
    torch.testing.assert_close(att(q, k, v), full_attention_reference(q, k, v))
    att.set_active_height(1)
    leaf_q, _ = route(q, att.weight, att.bias, 1)
    leaf_k, _ = route(k, att.weight, att.bias, 1)
    full_leaf_q, _ = route(q, att.weight, att.bias, 3)
    assert torch.equal(leaf_q, full_leaf_q >> 2)  # the top level of the full tree
    torch.testing.assert_close(att(q, k, v), tf_attention_reference(q, k, v, leaf_q, leaf_k))
    with pytest.raises(ValueError, match=r"active height 4 must be in \[0, 3\]"):
        att.set_active_height(4)


def test_bad_options_and_causal_tc_raise():
    with pytest.raises(ValueError, match="height=-1"):
        build("treeformer_tf", head_dim=D, height=-1)
    with pytest.raises(ValueError, match="capacity_factor=0"):
        build("treeformer_tf", head_dim=D, capacity_factor=0)
    q = rand(1, 1, 4, D)
    with pytest.raises(ValueError, match="treeformer_tc does not support causal"):
        build("treeformer_tc", head_dim=D, height=1).double()(q, q, q, causal=True)

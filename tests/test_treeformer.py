"""Treeformer TF/TC attention: routing, the blocked fast path against the dense-mask references,
limits, capacity, gradients into the tree and the active-height schedule."""

from __future__ import annotations

import pytest
import torch

from attnbench.attention import build, treeformer
from attnbench.attention.full import full_attention_reference
from attnbench.attention.treeformer import (
    leaf_slots,
    path_matrix,
    route,
    tc_attention_reference,
    tf_attention,
    tf_attention_padded,
    tf_attention_reference,
    tf_pair_count,
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
    att = build("treeformer_tf", head_dim=D, n_heads=H, height=0).double()
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
    att = build("treeformer_tf", head_dim=D, n_heads=H, height=height).double()
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


def assignment(kind: str, rows: int, N: int, n: int, seed: int) -> torch.Tensor:
    """Leaves (rows, N) of n: random, all in one leaf, one token per leaf (the rest in the last), every other leaf
    empty, or skewed (half the tokens in leaf 0, the rest spread)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randint(0, n, (rows, N), generator=g)
    if kind == "one":
        return torch.full((rows, N), n - 1)
    if kind == "singletons":
        return torch.stack([torch.randperm(N, generator=g).clamp(max=n - 1) for _ in range(rows)])
    if kind == "gaps":
        return torch.randint(0, max(n // 2, 1), (rows, N), generator=g) * 2 if n > 1 else torch.zeros(rows, N).long()
    if kind == "skewed":
        leaf = torch.randint(0, n, (rows, N), generator=g)
        return leaf.masked_fill(torch.rand(rows, N, generator=g) < 0.5, 0)
    raise ValueError(kind)


def tf_inputs(Lq: int, S: int, n: int, kind: str, seed: int = 0):
    q, k, v = rand(B, H, Lq, D, seed=seed), rand(B, H, S, D, seed=seed + 1), rand(B, H, S, DV, seed=seed + 2)
    leaf_q = assignment(kind, B * H, Lq, n, seed + 3).view(B, H, Lq)
    leaf_k = assignment(kind, B * H, S, n, seed + 4).view(B, H, S)
    mask = torch.ones(B, S, dtype=torch.bool)  # rows with different amounts of padding
    mask[0, S // 3:] = False
    mask[1, S - 1] = False
    return q, k, v, leaf_q, leaf_k, mask


def ones_gates(leaf_q, leaf_k):
    return torch.ones(leaf_q.shape, dtype=torch.float64), torch.ones(leaf_k.shape, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["random", "one", "singletons", "gaps", "skewed"])
@pytest.mark.parametrize("height", [0, 1, 2, 3, 4])
def test_tf_tile_kernel_equals_the_dense_leaf_mask(kind, height):
    """Every case: lengths off the tile size, cross attention both ways, padding, causal (L == S and L < S)."""
    n = 2**height
    for Lq, S, causal in [(37, 37, False), (37, 37, True), (21, 50, True), (50, 21, False), (64, 64, False)]:
        q, k, v, leaf_q, leaf_k, mask = tf_inputs(Lq, S, n, kind, seed=height)
        gq, gk = ones_gates(leaf_q, leaf_k)
        for m in (None, mask):
            ref = tf_attention_reference(q, k, v, leaf_q, leaf_k, key_padding_mask=m, causal=causal)
            for block in (8, None):
                got = tf_attention(q, k, v, leaf_q, leaf_k, gq, gk, n, m, causal, block=block)
                torch.testing.assert_close(got, ref, msg=lambda s, a=(Lq, S, causal, block): f"{a}: {s}")


@pytest.mark.parametrize("capacity", [None, 3, 9])
@pytest.mark.parametrize("kind", ["random", "skewed", "one"])
def test_tf_tile_kernel_equals_the_padded_kernel_with_capacity_and_gradients(kind, capacity):
    """Forward and the gradients w.r.t. q, k, v and both gates equal the padded leaf blocks (capacity: the same
    tokens dropped: later queries give zeros, later keys are invisible)."""
    n = 8
    for Lq, S, causal in [(37, 37, False), (37, 37, True), (21, 50, False)]:
        q, k, v, leaf_q, leaf_k, mask = tf_inputs(Lq, S, n, kind, seed=5)
        gq, gk = rand(B, H, Lq, seed=8) + 1, rand(B, H, S, seed=9) + 1  # stand-ins for 1 with a backward
        outs = []
        for fn, kw in ((tf_attention, {"block": 8}), (tf_attention_padded, {})):
            leaves = [x.clone().requires_grad_(True) for x in (q, k, v, gq, gk)]
            out = fn(*leaves[:3], leaf_q, leaf_k, *leaves[3:], n, mask, causal, capacity, **kw)
            (out * rand(*out.shape, seed=10)).sum().backward()
            outs.append([out] + [x.grad for x in leaves])
        for a, b in zip(*outs, strict=True):
            torch.testing.assert_close(a, b)
        if capacity == 3:  # something was dropped: queries beyond the capacity of their leaf give zeros
            assert (outs[0][0].abs().sum(-1) == 0).any()


@pytest.mark.parametrize(("causal", "trees"), [(False, "shared"), (True, "shared"), (False, "per_head")])
def test_tf_module_gradients_into_the_tree_equal_the_padded_kernel(monkeypatch, causal, trees):
    torch.manual_seed(0)
    att = build("treeformer_tf", head_dim=D, n_heads=H, height=3, trees=trees).double().train()
    q, k, v = rand(B, H, 40, D, seed=1), rand(B, H, 40, D, seed=2), rand(B, H, 40, DV, seed=3)
    mask = torch.ones(B, 40, dtype=torch.bool)
    mask[0, 29:] = False
    grads = []
    for fn in (tf_attention, tf_attention_padded):
        monkeypatch.setattr(treeformer, "tf_attention", fn)
        att.zero_grad()
        leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
        out = att(*leaves, key_padding_mask=mask, causal=causal)
        (out * rand(*out.shape, seed=4)).sum().backward()
        grads.append([out, att.weight.grad.clone(), att.bias.grad.clone()] + [x.grad for x in leaves])
    assert grads[0][1].abs().sum() > 0
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_tf_tile_kernel_dropout_drops_normalised_probabilities():
    """v = 1, one leaf: out_i = sum_j p_ij m_ij / (1 - p) with kept m_ij: 1 on average, not on every row."""
    leaf = torch.zeros(B, H, 64, dtype=torch.long)
    q, k, v = rand(B, H, 64, D, seed=1), rand(B, H, 64, D, seed=2), torch.ones(B, H, 64, 1, dtype=torch.float64)
    gq, gk = ones_gates(leaf, leaf)
    torch.manual_seed(0)
    out = tf_attention(q, k, v, leaf, leaf, gq, gk, 1, dropout_p=0.5)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05) and out.std().item() > 0.05
    torch.testing.assert_close(tf_attention(q, k, v, leaf, leaf, gq, gk, 1), torch.ones_like(out))


def test_tf_tile_pairs_scale_with_the_leaf_products_not_the_fullest_leaf():
    """Balanced leaves: about N^2 / n_leaves scores; one big leaf + many tiny ones: far below the padded kernel's
    n_leaves x max^2 (and below full attention)."""
    N, n, T = 256, 8, 32
    g = torch.Generator().manual_seed(0)
    balanced = torch.stack([torch.randperm(N, generator=g) % n for _ in range(4)])[None]  # (1, 4, N): 32 each
    assert treeformer.tf_block(N, n) == T and treeformer.tf_block(N, 4) == 64
    assert tf_pair_count(balanced, balanced, n) * T * T <= 4 * N * N / n
    uneven = torch.randint(0, n, (1, 4, N), generator=g)  # 20..45 per leaf
    assert tf_pair_count(uneven, uneven, n) * T * T <= 4 * 3 * N * N / n
    n = 16
    skewed = torch.randint(1, n, (1, 4, N), generator=g).masked_fill(torch.arange(N) % 2 == 0, 0)  # leaf 0: N / 2
    scores = tf_pair_count(skewed, skewed, n, block=T) * T * T
    assert scores <= 0.15 * 4 * n * (N // 2) ** 2  # padded: 16 x 128^2 per row, 4 x full attention
    assert scores <= 0.5 * 4 * N * N
    assert tf_pair_count(skewed, skewed, n, block=8) * 64 <= 0.3 * 4 * N * N  # smaller tiles: closer to sum n^2


def test_leaf_slots_sort_by_leaf_then_position_and_capacity_drops_the_latest():
    leaf = torch.tensor([[[1, 0, 1, 1, 0, 1]]])  # (1, 1, 6)
    keep = torch.tensor([[True, True, True, True, True, False]])
    idx, valid = leaf_slots(leaf, keep, 2, None)
    assert idx.tolist() == [[[[1, 4, 0], [0, 2, 3]]]] and valid.tolist() == [[[[1, 1, 0], [1, 1, 1]]]]
    idx, valid = leaf_slots(leaf, keep, 2, capacity=2)
    assert idx.tolist() == [[[[1, 4], [0, 2]]]] and valid.all()  # token 3 of the full leaf 1 is dropped


def test_tf_capacity_bounds_blocks_and_matches_the_exact_result_when_nothing_overflows():
    torch.manual_seed(0)
    exact = build("treeformer_tf", head_dim=D, n_heads=H, height=2).double()
    roomy = build("treeformer_tf", head_dim=D, n_heads=H, height=2, capacity_factor=4.0).double()
    tight = build("treeformer_tf", head_dim=D, n_heads=H, height=2, capacity_factor=0.5).double()
    for m in (roomy, tight):
        m.load_state_dict(exact.state_dict())
    q, k, v = rand(B, H, 16, D, seed=1), rand(B, H, 16, D, seed=2), rand(B, H, 16, DV, seed=3)
    torch.testing.assert_close(roomy(q, k, v), exact(q, k, v))  # 4 x 16/4 = 16 slots: no overflow
    out = tight(q, k, v)  # 2 slots per leaf: at most 2 x 4 queries per (b, h) get an output
    assert ((out.abs().sum(-1) > 0).sum(-1) <= 8).all() and not torch.allclose(out, exact(q, k, v))


@pytest.mark.parametrize("height", [0, 1, 3])
def test_tc_equals_its_loop_reference(height):
    torch.manual_seed(0)
    att = build("treeformer_tc", head_dim=D, n_heads=H, height=height).double()
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
    att = build(name, head_dim=D, n_heads=H, height=2).double().train()
    q, k, v = rand(B, H, 16, D, seed=1), rand(B, H, 16, D, seed=2), rand(B, H, 16, DV, seed=3)
    att(q, k, v).square().sum().backward()
    assert att.weight.grad is not None and att.weight.grad.abs().sum() > 0
    assert att.bias.grad is not None and att.bias.grad.abs().sum() > 0


def test_tc_gradient_is_dense_over_keys():
    """Every key feeds the root summary, so every key gets gradient (TF: only keys sharing a query's leaf)."""
    torch.manual_seed(0)
    att = build("treeformer_tc", head_dim=D, n_heads=H, height=3).double()
    q, v = rand(1, 1, 4, D, seed=1), rand(1, 1, 32, DV, seed=3)
    k = rand(1, 1, 32, D, seed=2).requires_grad_(True)
    att(q, k, v).sum().backward()
    assert (k.grad.abs().sum(-1) > 0).all()


def test_active_height_routes_with_the_top_levels():
    torch.manual_seed(0)
    att = build("treeformer_tf", head_dim=D, n_heads=H, height=3).double()
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
        build("treeformer_tf", head_dim=D, n_heads=H, height=-1)
    with pytest.raises(ValueError, match="capacity_factor=0"):
        build("treeformer_tf", head_dim=D, n_heads=H, capacity_factor=0)
    q = rand(1, 1, 4, D)
    with pytest.raises(ValueError, match="treeformer_tc does not support causal"):
        build("treeformer_tc", head_dim=D, n_heads=H, height=1).double()(q, q, q, causal=True)


# ----------------------------------------------------------------------------- per-head trees, routing input
# (options ``trees`` and ``route_on``; the layer fills ``n_heads``)
def per_head_copy(shared: torch.nn.Module, name: str, **options) -> torch.nn.Module:
    """A per-head entry whose H trees are all copies of ``shared``'s one tree."""
    att = build(name, head_dim=D, n_heads=H, trees="per_head", **options).double()
    with torch.no_grad():
        att.weight.copy_(shared.weight.expand(H, -1, -1))
        att.bias.copy_(shared.bias.expand(H, -1))
    return att


@pytest.mark.parametrize(("name", "options"), [("treeformer_tf", {}), ("treeformer_tf", {"capacity_factor": 0.5}),
                                               ("treeformer_tc", {})])
def test_per_head_with_identical_trees_equals_shared_forward_and_backward(name, options):
    torch.manual_seed(0)
    shared = build(name, head_dim=D, n_heads=H, height=2, **options).double().train()
    per_head = per_head_copy(shared, name, height=2, **options).train()
    assert shared.weight.shape == (3, D) and per_head.weight.shape == (H, 3, D) and per_head.bias.shape == (H, 3)
    mask = torch.ones(B, 16, dtype=torch.bool)
    mask[0, 11:] = False
    grads = []
    for att in (shared, per_head):
        q, k, v = (rand(B, H, 16, d, seed=s).requires_grad_(True) for s, d in ((1, D), (2, D), (3, DV)))
        out = att(q, k, v, key_padding_mask=mask)
        (out * rand(*out.shape, seed=4)).sum().backward()
        grads.append((out, q.grad, k.grad, v.grad, att.weight.grad, att.bias.grad))
    (o1, *g1), (o2, *g2) = grads
    torch.testing.assert_close(o2, o1)
    for a, b in zip(g1[:3], g2[:3], strict=True):
        torch.testing.assert_close(b, a)
    torch.testing.assert_close(g2[3].sum(0), g1[3])  # the shared tree's gradient is the sum over the heads' copies
    torch.testing.assert_close(g2[4].sum(0), g1[4])
    assert g1[3].abs().sum() > 0


def test_per_head_trees_route_each_head_by_its_own_tree():
    """Head 0's root sends a token left, head 1's (the opposite hyperplane) right: the same token (same q in both
    heads) lands in different leaves, and each head's leaves are those of its own tree walked by hand."""
    att = build("treeformer_tf", head_dim=D, n_heads=2, height=1, trees="per_head").double()
    w = rand(D, seed=5)
    with torch.no_grad():
        att.weight.copy_(torch.stack([w, -w])[:, None, :])  # (H, 1 node, D)
        att.bias.zero_()
    x = rand(1, 1, 9, D, seed=6).expand(1, 2, 9, D)  # one token set, seen by both heads
    leaf, _ = route(x, att.weight, att.bias, 1)
    expect0 = torch.stack([traverse(t, att.weight[0], att.bias[0], 1) for t in x[0, 0]])
    expect1 = torch.stack([traverse(t, att.weight[1], att.bias[1], 1) for t in x[0, 1]])
    assert torch.equal(leaf[0, 0], expect0) and torch.equal(leaf[0, 1], expect1)
    assert torch.equal(leaf[0, 0], 1 - leaf[0, 1]) and 0 < int(leaf[0, 0].sum()) < 9  # both leaves used
    # and the outputs: head h equals TF-Attention with head h's own leaves
    q, k, v = rand(1, 2, 9, D, seed=7), rand(1, 2, 9, D, seed=8), rand(1, 2, 9, DV, seed=9)
    leaf_q, _ = route(q, att.weight, att.bias, 1)
    leaf_k, _ = route(k, att.weight, att.bias, 1)
    torch.testing.assert_close(att(q, k, v), tf_attention_reference(q, k, v, leaf_q, leaf_k))
    with pytest.raises(ValueError, match="per-head trees for n_heads=2, got 3 heads"):
        att(rand(1, 3, 9, D), rand(1, 3, 9, D), rand(1, 3, 9, DV))


def test_data_init_balances_every_heads_tree_over_its_own_keys():
    """Per-head median splits: each head's keys sit in a different place (offsets +5 and -5 along different
    directions), yet every head's own tree splits them into equal leaves."""
    from attnbench.attention.treeformer import median_split_init

    torch.manual_seed(0)
    att = build("treeformer_tc", head_dim=D, n_heads=H, height=3, trees="per_head", data_init=True).train()
    k = torch.randn(2, H, 64, D) + torch.randn(H, 1, D) * 5.0  # (B, H, S, D) a different centre per head
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[1, 48:] = False  # 112 real keys per head
    att(k, k, k, key_padding_mask=mask)  # the first training forward moves the splits
    assert bool(att.data_init_done)
    leaf, _ = route(k, att.weight, att.bias, 3)
    for h in range(H):
        counts = torch.bincount(leaf[:, h][mask], minlength=8)
        assert counts.tolist() == [14] * 8, (h, counts)  # 112 real keys, 8 leaves
    # the shared tree pools all heads' keys: per head the leaves are then far from balanced
    shared_w, shared_b = att.weight[0].detach().clone(), torch.zeros(7)
    median_split_init(k, shared_w, shared_b, 3, mask)
    leaf_s, _ = route(k, shared_w, shared_b, 3)
    assert max(int(torch.bincount(leaf_s[:, h][mask], minlength=8).max()) for h in range(H)) > 28


@pytest.mark.parametrize("name", ["treeformer_tf", "treeformer_tc"])
def test_per_head_balance_loss_stats_and_active_height(name):
    from attnbench.attention.treeformer import balance_loss, leaf_probs

    torch.manual_seed(0)
    shared = build(name, head_dim=D, n_heads=H, height=3, balance_weight=1.0).double().train()
    att = per_head_copy(shared, name, height=3, balance_weight=1.0).train()
    q, k, v = rand(B, H, 16, D, seed=1), rand(B, H, 16, D, seed=2), rand(B, H, 16, DV, seed=3)
    torch.testing.assert_close(leaf_probs(q, att.weight, att.bias, 3), leaf_probs(q, shared.weight, shared.bias, 3))
    torch.testing.assert_close(balance_loss(q, k, att.weight, att.bias, 3),
                               balance_loss(q, k, shared.weight, shared.bias, 3))
    for h in (1, 3):
        att.set_active_height(h)
        shared.set_active_height(h)
        torch.testing.assert_close(att(q, k, v), shared(q, k, v))
        assert att.last_stats["key_counts"].shape == (B, H, 2**h)
        assert torch.equal(att.last_stats["key_counts"], shared.last_stats["key_counts"])
        torch.testing.assert_close(att.aux_loss(), shared.aux_loss())


@pytest.mark.parametrize("name", ["treeformer_tf", "treeformer_tc"])
def test_per_head_flops_equal_shared_and_the_flop_counter(name):
    """Routing is per head in both cases (each head's q and k go through a tree), so the formula is the same."""
    from attnbench.attention.flops import attention_flops, occupancy
    from tests.test_attention_flops import counted

    torch.manual_seed(0)
    shared = build(name, head_dim=D, n_heads=H, height=2).eval()
    att = build(name, head_dim=D, n_heads=H, height=2, trees="per_head").eval()
    q, k, v = torch.randn(B, H, 16, D), torch.randn(B, H, 16, D), torch.randn(B, H, 16, D)
    f_shared = attention_flops(shared, B=B, H=H, q_axes=16, D=D)
    assert attention_flops(att, B=B, H=H, q_axes=16, D=D) == f_shared
    occ = occupancy(att, q, k)
    assert attention_flops(att, B=B, H=H, q_axes=16, D=D, **occ).matmul == counted(att, q, k, v, False)


def test_layer_fills_n_heads_and_bad_tree_options_fail_naming_key_and_values(compose_cfg):
    from attnbench import attention_spec
    from attnbench.attention.treeformer import ROUTE_ON, TREES
    from attnbench.config import ConfigError, check_attention
    from attnbench.layers.attention import MultiAxisAttention

    for name in ("treeformer_tf", "treeformer_tc"):  # the config reads the allowed values off the constructor
        assert attention_spec.get(name).choices == {"trees": TREES, "route_on": ROUTE_ON}

    from attnbench.layers.attention import LAYER_PROVIDED
    from tests.test_config_defaults import FILLED_BY_LAYER

    assert set(LAYER_PROVIDED) == FILLED_BY_LAYER  # the yaml check knows every size the layer fills in
    layer = MultiAxisAttention(4 * D, 4, 1, {"name": "treeformer_tf", "height": 2, "trees": "per_head"})
    assert layer.attn.n_heads == 4 and layer.attn.weight.shape == (4, 3, D)
    assert layer(torch.randn(2, 10, 4 * D)).shape == (2, 10, 4 * D)
    with pytest.raises(ValueError, match="'n_heads' is set by the layer"):
        MultiAxisAttention(4 * D, 4, 1, {"name": "treeformer_tf", "n_heads": 4})
    for key, bad, allowed in (("trees", "per_layer", "shared, per_head"), ("route_on", "k", "qk")):
        msg = f"model.net.attention.{key}='{bad}' is invalid.*allowed: {allowed}"
        with pytest.raises(ConfigError, match=msg):
            check_attention("model.net.attention", {"name": "treeformer_tc", key: bad})
        with pytest.raises(ValueError, match=f"treeformer_tf: {key}='{bad}' is invalid; allowed: {allowed}"):
            build("treeformer_tf", head_dim=D, n_heads=H, **{key: bad})
    from attnbench.config import validate

    validate(compose_cfg(["experiment=treeformer/listops", "model.net.attention.trees=per_head"]))
    with pytest.raises(ConfigError, match=r"model\.net\.attention\.trees='per_layer' is invalid.*shared, per_head"):
        validate(compose_cfg(["experiment=treeformer/listops", "model.net.attention.trees=per_layer"]))

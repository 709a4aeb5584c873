"""SMYRF's cluster layout (official: clusters of exactly C in hash order, one short last cluster) against the
slow reference at lengths that are and are not multiples of C, and padding invariance through the layer."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from attnbench.attention.smyrf import SmyrfAttention, smyrf_reference, xbox_plus
from attnbench.layers.attention import MultiAxisAttention

H, D, DV = 2, 8, 6


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def real_mask(lengths: list[int], n: int) -> torch.Tensor:
    """(B, n) True for the first lengths[b] positions of row b."""
    return torch.arange(n)[None] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("n", [40, 65, 100, 1000])
def test_smyrf_matches_the_slow_reference(n):
    """No padding, and batch 2 with different real lengths per row (query + key mask, and key mask only)."""
    q, k, v = rand(2, H, n, D, seed=1), rand(2, H, n, D, seed=2), rand(2, H, n, DV, seed=3)
    att = SmyrfAttention(D, n_hashes=2, cluster_size=32, seed=4).double()
    torch.testing.assert_close(att(q, k, v), smyrf_reference(q, k, v, att.proj, 32))
    m = real_mask([n - n // 3, n - 1], n)
    out = att(q, k, v, key_padding_mask=m, query_padding_mask=m)
    torch.testing.assert_close(out, smyrf_reference(q, k, v, att.proj, 32, m, m))
    assert (out.masked_select(~m[:, None, :, None].expand_as(out)) == 0).all()  # padded queries: zeros
    torch.testing.assert_close(att(q, k, v, key_padding_mask=m), smyrf_reference(q, k, v, att.proj, 32, m))
    for b in range(2):  # no leakage between batch rows: each row alone, unpadded, gives the same real outputs
        r = int(m[b].sum())
        alone = att(q[b:b + 1, :, :r], k[b:b + 1, :, :r], v[b:b + 1, :, :r])
        torch.testing.assert_close(out[b:b + 1, :, :r], alone)


def clusters(att: SmyrfAttention, q, k, keep):
    """Black-box clusters of a 1-round SMYRF: with v = identity each real query's output row is its attention
    weights, positive exactly on its cluster's keys. Returns, per (b, h), a list of (query set, key set)."""
    B, _, n, _ = q.shape
    w = att(q, k, torch.eye(n, dtype=q.dtype).expand(B, H, n, n), key_padding_mask=keep, query_padding_mask=keep)
    found = []
    for b in range(B):
        for h in range(H):
            groups: dict[frozenset, set] = {}
            for i in torch.nonzero(keep[b]).squeeze(-1).tolist():
                groups.setdefault(frozenset(torch.nonzero(w[b, h, i] > 0).squeeze(-1).tolist()), set()).add(i)
            found.append([(qs, ks) for ks, qs in groups.items()])
    return found


@pytest.mark.parametrize(("n", "C", "lengths"), [(65, 16, [65, 50]), (100, 32, [100, 33]), (40, 32, [40, 7])])
def test_smyrf_clusters_hold_exactly_cluster_size_in_hash_order(n, C, lengths):
    """Every cluster holds exactly C queries and C keys (self-attention) except one short last cluster per row;
    clusters are consecutive in hash order."""
    q, k = rand(2, H, n, D, seed=5), rand(2, H, n, D, seed=6)
    keep = real_mask(lengths, n)
    att = SmyrfAttention(D, n_hashes=1, cluster_size=C, seed=7).double()
    fq, gk = xbox_plus(q, k, keep, keep)
    hq, hk = (fq @ att.proj)[..., 0], (gk @ att.proj)[..., 0]  # (B, H, n) hashes
    for j, found in enumerate(clusters(att, q, k, keep)):
        b, h = divmod(j, H)
        r = lengths[b]
        found.sort(key=lambda g: hq[b, h, sorted(g[0])].min().item())  # clusters in hash order
        sizes = [len(qs) for qs, _ in found]
        assert sizes == [C] * (r // C) + ([r % C] if r % C else []), sizes  # short cluster last, only one
        assert [len(ks) for _, ks in found] == sizes  # keys cut the same way
        assert set().union(*(qs for qs, _ in found)) == set(range(r))
        assert set().union(*(ks for _, ks in found)) == set(range(r))  # real keys only, each in one cluster
        for (q0, k0), (q1, k1) in pairwise(found):  # consecutive in hash order, queries and keys
            assert hq[b, h, sorted(q0)].max() < hq[b, h, sorted(q1)].min()
            assert hk[b, h, sorted(k0)].max() < hk[b, h, sorted(k1)].min()


def test_smyrf_cross_attention_keys_cut_proportionally():
    """L != S: query clusters of C, key clusters at the same fractions floor(c C S / L) of the key ranks."""
    L, S, C = 50, 20, 16
    q, k, v = rand(1, H, L, D, seed=1), rand(1, H, S, D, seed=2), rand(1, H, S, S, seed=3)
    att = SmyrfAttention(D, n_hashes=1, cluster_size=C, seed=2).double()
    w = att(q, k, torch.eye(S, dtype=torch.float64)[None, None].expand(1, H, S, S))
    n_keys = sorted({int((w[0, h, i] > 0).sum()) for h in range(H) for i in range(L)})
    starts = [min(c * C, L) * S // L for c in range(math.ceil(L / C) + 1)]  # 0, 6, 12, 19, 20
    assert n_keys == sorted({b - a for a, b in pairwise(starts)})  # key clusters of 6, 6, 7, 1
    torch.testing.assert_close(att(q, k, v), smyrf_reference(q, k, v, att.proj, C))


@pytest.mark.parametrize("rope", [(), (0,)])
def test_layer_self_attention_real_tokens_ignore_the_amount_of_padding(rope):
    """Through MultiAxisAttention, the padding mask is the query mask too: 128 and 192 real tokens padded to
    256 (garbage in the padding) give the real tokens' outputs of each row run alone, unpadded."""
    torch.manual_seed(0)
    E, lengths, N = 32, [128, 192], 256
    layer = MultiAxisAttention(E, 2, 1, {"name": "smyrf", "n_hashes": 2, "cluster_size": 32}, rope_axes=rope)
    layer = layer.double().eval()
    x = rand(2, N, E, seed=1)
    keep = real_mask(lengths, N)
    out = layer(x, key_padding_mask=keep)
    x2 = torch.where(keep[..., None], x, 40 * rand(2, N, E, seed=2))  # other padding content
    torch.testing.assert_close(layer(x2, key_padding_mask=keep)[keep], out[keep])
    for b, r in enumerate(lengths):
        alone = layer(x[b:b + 1, :r])
        torch.testing.assert_close(out[b:b + 1, :r], alone)
        torch.testing.assert_close(layer(x[b:b + 1, :r + 40], key_padding_mask=keep[b:b + 1, :r + 40])[:, :r], alone)
    # the key mask alone (padded queries take cluster slots) does depend on the padding: what the layer avoids
    qkv = [layer._heads(p(x[:1]), 1)[0] for p in (layer.q_proj, layer.k_proj, layer.v_proj)]
    q, k, v = layer.q_norm(qkv[0]), layer.k_norm(qkv[1]), qkv[2]
    if not rope:
        r = lengths[0]
        key_only = layer.attn(q, k, v, key_padding_mask=keep[:1])[:, :, :r]
        assert not torch.allclose(key_only, layer.attn(q[:, :, :r], k[:, :, :r], v[:, :, :r]))

"""SMYRF and Reformer LSH attention: exact limits (float64), any length, padding, approximation quality."""

from __future__ import annotations

import pytest
import torch

from attnbench.attention.full import full_attention_reference
from attnbench.attention.reformer import ReformerAttention, reformer_full_reference
from attnbench.attention.smyrf import SmyrfAttention, smyrf_reference

B, H, D, DV = 2, 2, 8, 6


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def pad_mask(S: int) -> torch.Tensor:
    """(B, S): element 0 keeps its first 2/3, element 1 its first 3/4 with position 1 padded too."""
    m = torch.ones(B, S, dtype=torch.bool)
    m[0, 2 * S // 3:] = False
    m[1, 3 * S // 4:] = False
    m[1, 1] = False
    return m


def clustered(n: int, n_centers: int = 4, seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    """(B, H, n, D) tokens around a few centroids: peaked attention that LSH can find."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_centers, D, generator=g, dtype=torch.float64)
    centers = scale * centers / centers.norm(dim=-1, keepdim=True)
    idx = torch.randint(n_centers, (B, H, n), generator=g)
    return centers[idx] + 0.1 * torch.randn(B, H, n, D, generator=g, dtype=torch.float64)


def rel_err(out, ref, keep=None):
    if keep is not None:
        w = keep[:, None, :, None].to(out.dtype)
        out, ref = out * w, ref * w
    return ((out - ref).norm() / ref.norm()).item()


# ----------------------------------------------------------------------------- SMYRF
@pytest.mark.parametrize(("L", "S"), [(12, 12), (37, 37), (9, 20), (20, 9)])
def test_smyrf_one_cluster_is_full_attention(L, S):
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, S, D, seed=2), rand(B, H, S, DV, seed=3)
    att = SmyrfAttention(D, n_hashes=3, cluster_size=L).double()
    for m in (None, pad_mask(S)):
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m), full_attention_reference(q, k, v, m))


@pytest.mark.parametrize(("L", "S", "cs"), [(37, 37, 8), (100, 100, 16), (13, 40, 4), (40, 13, 8)])
def test_smyrf_any_length_matches_the_slow_reference(L, S, cs):
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, S, D, seed=2), rand(B, H, S, DV, seed=3)
    att = SmyrfAttention(D, n_hashes=2, cluster_size=cs, seed=4).double()
    for m in (None, pad_mask(S)):
        out = att(q, k, v, key_padding_mask=m)
        assert out.shape == (B, H, L, DV) and torch.isfinite(out).all()
        torch.testing.assert_close(out, smyrf_reference(q, k, v, att.proj, cs, m))


@pytest.mark.parametrize(("L", "cs"), [(37, 8), (64, 16), (30, 64)])
def test_smyrf_query_padding_matches_the_slow_reference(L, cs):
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, L, D, seed=2), rand(B, H, L, DV, seed=3)
    att = SmyrfAttention(D, n_hashes=3, cluster_size=cs, seed=4).double()
    m = pad_mask(L)
    out = att(q, k, v, key_padding_mask=m, query_padding_mask=m)
    torch.testing.assert_close(out, smyrf_reference(q, k, v, att.proj, cs, m, m))
    assert (out.masked_select(~m[:, None, :, None].expand_as(out)) == 0).all()  # padded queries: zeros


def test_smyrf_with_query_padding_ignores_how_much_padding():
    """Self-attention with both masks: the real tokens' outputs do not depend on the padded length (clusters
    of cluster_size real tokens, as the official code's padding-sorted-last gives)."""
    n = 23
    q, k, v = rand(1, H, n, D, seed=1), rand(1, H, n, D, seed=2), rand(1, H, n, DV, seed=3)
    att = SmyrfAttention(D, n_hashes=2, cluster_size=8, seed=0).double()
    alone = att(q, k, v)
    for L in (24, 40, 128):
        pad = [rand(1, H, L - n, d, seed=9) * 50 for d in (D, D, DV)]
        qp, kp, vp = (torch.cat([t, p_], 2) for t, p_ in zip((q, k, v), pad, strict=True))
        m = torch.arange(L)[None] < n
        torch.testing.assert_close(att(qp, kp, vp, key_padding_mask=m, query_padding_mask=m)[:, :, :n], alone)
    # without the query mask the clusters cover the padded length: real tokens see fewer real keys
    m = torch.arange(128)[None] < n
    qp, kp, vp = (torch.cat([t, torch.zeros(1, H, 128 - n, t.shape[-1], dtype=t.dtype)], 2) for t in (q, k, v))
    assert not torch.allclose(att(qp, kp, vp, key_padding_mask=m)[:, :, :n], alone)


def test_smyrf_padding_batch2_and_dead_rows():
    L = S = 37
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, S, D, seed=2), rand(B, H, S, DV, seed=3)
    m = pad_mask(S)
    k2 = torch.where(m[:, None, :, None], k, 10 * rand(B, H, S, D, seed=5))
    v2 = torch.where(m[:, None, :, None], v, rand(B, H, S, DV, seed=6))
    att = SmyrfAttention(D, n_hashes=2, cluster_size=8).double()
    out = att(q, k, v, key_padding_mask=m)
    torch.testing.assert_close(att(q, k2, v2, key_padding_mask=m), out)
    # each batch element alone gives the same rows (no mixing of batch rows)
    for b in range(B):
        torch.testing.assert_close(att(q[b:b + 1], k[b:b + 1], v[b:b + 1], key_padding_mask=m[b:b + 1]), out[b:b + 1])
    # every query of a cluster pair with valid keys gets weight only on valid keys: v = one-hot of key
    eye = torch.eye(S, dtype=torch.float64).expand(B, H, S, S)
    w = att(q, k, eye, key_padding_mask=m)  # (B, H, L, S) attention weights
    assert (w.masked_select(~m[:, None, None, :].expand_as(w)) == 0).all()
    m[1] = False
    assert (att(q, k, v, key_padding_mask=m)[1] == 0).all()


def test_smyrf_error_decreases_with_hashes_and_cluster_size():
    L = 128
    q, k, v = clustered(L, seed=1), clustered(L, seed=1), rand(B, H, L, DV, seed=3)
    ref = full_attention_reference(q, k, v)
    errs_h = [rel_err(SmyrfAttention(D, n_hashes=h, cluster_size=16, seed=0).double()(q, k, v), ref)
              for h in (1, 4, 16)]
    errs_c = [rel_err(SmyrfAttention(D, n_hashes=1, cluster_size=c, seed=0).double()(q, k, v), ref)
              for c in (8, 32, 128)]
    assert errs_h[2] < errs_h[1] < errs_h[0], errs_h
    assert errs_c[2] < errs_c[1] < errs_c[0], errs_c
    assert errs_c[2] < 1e-12


def test_smyrf_gradients_finite_and_refusals():
    q, k, v = (rand(B, H, 21, D, seed=s).float().requires_grad_() for s in (1, 2, 3))
    att = SmyrfAttention(D, n_hashes=2, cluster_size=4, dropout=0.1).train()
    att(q, k, v, key_padding_mask=pad_mask(21)).square().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    with pytest.raises(ValueError, match="smyrf: causal"):
        att(q, k, v, causal=True)
    assert torch.equal(SmyrfAttention(D, seed=3).proj, SmyrfAttention(D, seed=3).proj)


# ----------------------------------------------------------------------------- Reformer
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("N", [12, 37])
def test_reformer_one_bucket_one_chunk_is_full_attention_with_self_exclusion(N, causal, shared):
    q, k, v = rand(B, H, N, D, seed=1), rand(B, H, N, D, seed=2), rand(B, H, N, DV, seed=3)
    k = q if shared else k
    att = ReformerAttention(D, shared, n_buckets=1, chunk_size=N, n_hashes=2).double()
    for m in (None, pad_mask(N)):
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m, causal=causal),
                                   reformer_full_reference(q, k, v, m, causal, shared))
    if not shared:  # without shared QK the limit is plain full attention
        torch.testing.assert_close(att(q, k, v, causal=causal), full_attention_reference(q, k, v, causal=causal))


def test_reformer_self_exclusion():
    q = rand(1, 1, 6, D, seed=1)
    v = torch.eye(6, dtype=torch.float64)[None, None]
    att = ReformerAttention(D, True, n_buckets=1, chunk_size=8).double()
    w = att(q, q, v)[0, 0]  # w[i, j] = weight of key j for query i
    assert (w.diagonal() == 0).all()
    w = att(q, q, v, causal=True)[0, 0]
    assert w[0, 0] == 1 and (w.diagonal()[1:] == 0).all()  # token 0 has only itself


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("N", [37, 100])
def test_reformer_any_length_padding_and_gradients(N, causal):
    q, v = rand(B, H, N, D, seed=1), rand(B, H, N, DV, seed=3)
    m = pad_mask(N)
    att = ReformerAttention(D, True, n_buckets=4, chunk_size=8, n_hashes=2).double()
    out = att(q, q, v, key_padding_mask=m, causal=causal)
    assert out.shape == (B, H, N, DV) and torch.isfinite(out).all()
    # changing padded positions (they are keys and queries) changes nothing
    q2 = torch.where(m[:, None, :, None], q, 5 * rand(B, H, N, D, seed=7))
    v2 = torch.where(m[:, None, :, None], v, rand(B, H, N, DV, seed=8))
    torch.testing.assert_close(att(q2, q2, v2, key_padding_mask=m, causal=causal), out)
    for b in range(B):  # batch rows independent
        torch.testing.assert_close(att(q[b:b + 1], q[b:b + 1], v[b:b + 1], key_padding_mask=m[b:b + 1],
                                       causal=causal), out[b:b + 1])
    eye = torch.eye(N, dtype=torch.float64).expand(B, H, N, N)
    w = att(q, q, eye, key_padding_mask=m, causal=causal)
    assert (w.masked_select(~m[:, None, None, :].expand_as(w)) == 0).all()
    if causal:
        assert (w.triu(1) == 0).all()
        # future tokens do not move chunk boundaries: outputs up to t ignore later tokens
        t = N // 2
        q3, v3 = q.clone(), v.clone()
        q3[:, :, t + 1:], v3[:, :, t + 1:] = rand(B, H, N - t - 1, D, seed=9), rand(B, H, N - t - 1, DV, seed=10)
        torch.testing.assert_close(att(q3, q3, v3, key_padding_mask=m, causal=True)[:, :, :t + 1], out[:, :, :t + 1])
    qg, vg = q.float().requires_grad_(), v.float().requires_grad_()
    att.float().train()
    att(qg, qg, vg, key_padding_mask=m, causal=causal).square().sum().backward()
    assert torch.isfinite(qg.grad).all() and torch.isfinite(vg.grad).all()


@pytest.mark.parametrize("causal", [False, True])
def test_reformer_error_decreases_with_hashes_and_chunk_size(causal):
    N = 128
    q, v = clustered(N, n_centers=6, seed=2, scale=6.0), rand(B, H, N, DV, seed=3)
    ref = reformer_full_reference(q, q, v, causal=causal)

    def err(**kw):
        return rel_err(ReformerAttention(D, True, seed=1, **kw).double()(q, q, v, causal=causal), ref)

    errs_h = [err(n_buckets=8, chunk_size=8, n_hashes=h) for h in (1, 4, 16)]
    errs_c = [err(n_buckets=8, chunk_size=c, n_hashes=1) for c in (4, 16, 128)]
    assert errs_h[2] < errs_h[1] < errs_h[0], errs_h
    assert errs_c[1] < errs_c[0], errs_c
    if not causal:
        assert errs_c[2] < 1e-12  # one chunk: every token sees every other


def test_reformer_refusals():
    q, k, v = (rand(B, H, 12, D, seed=s) for s in (1, 2, 3))
    att = ReformerAttention(D, True).double()
    with pytest.raises(ValueError, match="reformer: shared_qk=True needs the same tensor"):
        att(q, k, v)
    with pytest.raises(ValueError, match="reformer: self-attention only"):
        ReformerAttention(D, False).double()(q[:, :, :7], k, v)
    with pytest.raises(ValueError, match="n_buckets=3"):
        ReformerAttention(D, True, n_buckets=3)

"""The work-saving kernels (issue 14) against their slow references: the blocked sliding-window local
attention, the fused FAVOR+ features, Reformer's packed causal layout; and their memory: no (L, L)
buffer, the largest intermediate grows linearly with L."""

from __future__ import annotations

import itertools

import pytest
import torch

from attnbench.attention.feature_maps import orthogonal_gaussian
from attnbench.attention.local import (
    LocalAttention,
    local_attention,
    local_attention_banded,
    local_attention_reference,
)
from attnbench.attention.performer import (
    favor_attention,
    favor_attention_reference,
    favor_features,
    favor_features_reference,
)
from attnbench.attention.reformer import lsh_attention, reformer_full_reference
from attnbench.attention.smyrf import smyrf_attention
from tests.conftest import LargestTensor


def largest_intermediate(fn, *shapes: tuple[int, ...]) -> int:
    """Largest tensor (elements) produced while running fn on random inputs of ``shapes`` and backpropagating."""
    xs = [torch.randn(*s, requires_grad=True) for s in shapes]
    with LargestTensor() as rec:
        fn(*xs).sum().backward()
    return rec.numel


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- local
@pytest.mark.parametrize("causal", [False, True])
def test_blocked_local_equals_the_reference(causal):
    """Odd lengths, lengths around the block size, windows 0 .. larger than the length, padding at the end
    (one row fully padded), values and gradients."""
    B, H, D = 2, 2, 4
    for L, window in itertools.product((1, 7, 31, 32, 33, 70), (0, 1, 5, 33, 100)):
        q, k, v = (rand(B, H, L, D, seed=s).requires_grad_() for s in (1, 2, 3))
        mask = torch.ones(B, L, dtype=torch.bool)
        mask[0, L - L // 3:] = False
        mask[1] = False
        for m in (None, mask):
            out = local_attention(q, k, v, window, m, causal)
            ref = local_attention_reference(q, k, v, window, m, causal)
            torch.testing.assert_close(out, ref)
            torch.testing.assert_close(local_attention_banded(q, k, v, window, m, causal), ref)
            g = torch.autograd.grad((out * ref.detach()).sum(), (q, k, v))
            g_ref = torch.autograd.grad((ref * ref.detach()).sum(), (q, k, v))
            for a, b in zip(g, g_ref, strict=True):
                torch.testing.assert_close(a, b)


def test_blocked_local_module_under_autocast_matches_fp32():
    q, k, v = (torch.randn(1, 2, 50, 8) for _ in range(3))
    att = LocalAttention(window=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = att(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), local_attention_reference(q, k, v, 3, causal=True), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("causal", [False, True])
def test_blocked_local_memory_is_linear(causal):
    """No (L, L) buffer: the largest tensor of forward + backward is O(L window), twice as large for twice L."""
    fn = lambda q, k, v: local_attention(q, k, v, 8, causal=causal)  # noqa: E731
    small, big = (largest_intermediate(fn, *[(1, 2, n, 16)] * 3) for n in (512, 1024))
    assert big <= 2.1 * small
    assert big < 1024 * 1024 / 4  # a quarter of one (L, L) map of one head
    banded = lambda q, k, v: local_attention_banded(q, k, v, 8, causal=causal)  # noqa: E731
    assert largest_intermediate(banded, *[(1, 2, 1024, 16)] * 3) >= 1024 * 1024  # the check can fail


# ----------------------------------------------------------------------------- performer
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_fused_favor_features_equal_the_definition(scale):
    """Values and gradients (the stabilisers' detach included) of the fused features and of the attention."""
    B, H, L, D = 2, 2, 37, 16
    proj = orthogonal_gaussian(40, D, torch.Generator().manual_seed(0)).double()
    q, k, v = ((scale * rand(B, H, L, D, seed=s)).requires_grad_() for s in (1, 2, 3))
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[0, -5:] = False
    for m in (None, mask):
        for a, b in zip(favor_features(q, k, proj, m), favor_features_reference(q, k, proj, m), strict=True):
            torch.testing.assert_close(a, b)
        for causal in (False, True):
            out, ref = favor_attention(q, k, v, proj, m, causal), favor_attention_reference(q, k, v, proj, m, causal)
            torch.testing.assert_close(out, ref)
            g = torch.autograd.grad(out.square().sum(), (q, k, v))
            g_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
            for a, b in zip(g, g_ref, strict=True):
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize("causal", [False, True])
def test_performer_memory_is_linear(causal):
    """Chunked prefix sums: no (L, m, Dv) state and no (L, L) map; the largest tensor doubles with L."""
    proj = orthogonal_gaussian(32, 16, torch.Generator().manual_seed(0))
    fn = lambda q, k, v: favor_attention(q, k, v, proj, causal=causal)  # noqa: E731
    small, big = (largest_intermediate(fn, *[(1, 2, n, 16)] * 3) for n in (512, 1024))
    assert big <= 2.1 * small
    assert big < 2 * 1024 * 32 * 17  # far below one (L, m, Dv + 1) prefix state of both heads
    quadratic = lambda q, k, v: favor_attention_reference(q, k, v, proj, causal=causal)  # noqa: E731
    assert largest_intermediate(quadratic, *[(1, 2, 1024, 16)] * 3) >= 2 * 1024 * 1024  # the check can fail



# ----------------------------------------------------------------------------- reformer, smyrf
def test_reformer_packed_causal_layout_equals_the_padded_one():
    """Same keys per query in both layouts: values and gradients; the one-bucket limit is full attention."""
    B, H, D = 2, 2, 8
    for N, n_buckets, chunk, n_hashes in itertools.product((5, 37, 130), (1, 4, 8), (4, 64), (1, 2)):
        q, v = rand(B, H, N, D, seed=1).requires_grad_(), rand(B, H, N, 5, seed=2).requires_grad_()
        rot = rand(n_hashes, D, max(n_buckets // 2, 1), seed=3)
        mask = torch.ones(B, N, dtype=torch.bool)
        mask[0, -3:] = False
        for m in (None, mask):
            padded, packed = (lsh_attention(q, q, v, rot, n_buckets, chunk, m, causal=True, causal_layout=lay)
                              for lay in ("padded", "packed"))
            torch.testing.assert_close(packed, padded)
            g = torch.autograd.grad(packed.square().sum(), (q, v))
            g_ref = torch.autograd.grad(padded.square().sum(), (q, v))
            for a, b in zip(g, g_ref, strict=True):
                torch.testing.assert_close(a, b)
            if n_buckets == 1 and chunk >= N:
                torch.testing.assert_close(packed, reformer_full_reference(q, q, v, m, causal=True))
    with pytest.raises(ValueError, match="causal_layout='diagonal'; allowed: auto, padded, packed"):
        lsh_attention(q, q, v, rot, 8, 4, causal=True, causal_layout="diagonal")
    with pytest.raises(ValueError, match="needs shared_qk=True"):
        lsh_attention(q, q, v, rot, 8, 4, causal=True, shared_qk=False, causal_layout="packed")


@pytest.mark.parametrize("causal", [False, True])
def test_reformer_memory_is_linear(causal):
    rot = torch.randn(1, 16, 4, generator=torch.Generator().manual_seed(0))
    fn = lambda q, k, v: lsh_attention(q, q, v, rot, 8, 32, causal=causal)  # noqa: E731
    small, big = (largest_intermediate(fn, *[(1, 2, n, 16)] * 3) for n in (512, 1024))
    assert big <= 2.2 * small
    assert big < 1024 * 1024 / 4


def test_smyrf_memory_is_linear():
    proj = torch.randn(18, 2, generator=torch.Generator().manual_seed(0))
    fn = lambda q, k, v: smyrf_attention(q, k, v, proj, 32)  # noqa: E731
    small, big = (largest_intermediate(fn, *[(1, 2, n, 16)] * 3) for n in (512, 1024))
    assert big <= 2.1 * small
    assert big < 1024 * 1024 / 4

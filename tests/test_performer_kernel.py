"""The blocked non-causal FAVOR+ kernel with its hand-written backward (issue 14) against the slow reference
(the features as defined, the explicit (L, S) kernel matrix): values and gradients, self and cross, padding."""

from __future__ import annotations

import pytest
import torch

from attnbench.attention import performer
from attnbench.attention.feature_maps import orthogonal_gaussian
from attnbench.attention.performer import (
    PerformerAttention,
    favor_attention,
    favor_attention_causal,
    favor_attention_noncausal,
    favor_attention_reference,
)


def _inputs(L: int, S: int, scale: float, dtype: torch.dtype, seed: int = 0, B: int = 2, H: int = 3, D: int = 16,
            Dv: int = 8) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    q = scale * torch.randn(B, H, L, D, generator=g, dtype=dtype)
    k = scale * torch.randn(B, H, S, D, generator=g, dtype=dtype)
    v = torch.randn(B, H, S, Dv, generator=g, dtype=dtype)
    return tuple(t.requires_grad_() for t in (q, k, v))


def _mask(B: int, S: int) -> torch.Tensor:
    """Batch 0 loses its last 5 keys, batch 1 has no valid key at all (its rows must give zeros)."""
    m = torch.ones(B, S, dtype=torch.bool)
    m[0, -5:] = False
    m[1] = False
    return m


def _check(out_fn, ref_fn, q, k, v, rtol: float, atol: float) -> None:
    out, ref = out_fn(q, k, v), ref_fn(q, k, v)
    torch.testing.assert_close(out, ref, rtol=rtol, atol=atol)
    go = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=out.dtype)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), go), torch.autograd.grad(ref, (q, k, v), go), strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("scale", [0.3, 3.0])
@pytest.mark.parametrize(("L", "S"), [(37, 37), (20, 33), (41, 9)])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_favor_attention_equals_reference_float64(scale, L, S, causal, masked):
    """float64: values and gradients equal to the reference (stabilisers' detach and the query eps included)."""
    proj = orthogonal_gaussian(40, 16, torch.Generator().manual_seed(0)).double()
    q, k, v = _inputs(L, S, scale, torch.float64)
    m = _mask(2, S) if masked else None
    _check(lambda a, b, c: favor_attention(a, b, c, proj, m, causal),
           lambda a, b, c: favor_attention_reference(a, b, c, proj, m, causal), q, k, v, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("causal", [False, True])
def test_favor_attention_equals_reference_float32(causal):
    """float32 at the paper's width (D 64, m = D ln D = 266): equal to ~1e-5, padding included."""
    proj = orthogonal_gaussian(266, 64, torch.Generator().manual_seed(1))
    q, k, v = _inputs(150, 150, 1.0, torch.float32, D=64, Dv=64)
    m = torch.ones(2, 150, dtype=torch.bool)
    m[0, 100:] = False
    _check(lambda a, b, c: favor_attention(a, b, c, proj, m, causal),
           lambda a, b, c: favor_attention_reference(a, b, c, proj, m, causal), q, k, v, rtol=1e-5, atol=1e-5)


def test_noncausal_kernel_gradcheck():
    """torch.autograd.gradcheck of the hand-written backward (float64, tiny sizes, padding, cross)."""
    proj = orthogonal_gaussian(12, 4, torch.Generator().manual_seed(0)).double()
    q, k, v = _inputs(5, 7, 0.7, torch.float64, B=2, H=1, D=4, Dv=3)
    m = torch.ones(2, 7, dtype=torch.bool)
    m[1, 4:] = False
    assert torch.autograd.gradcheck(lambda a, b, c: favor_attention_noncausal(a, b, c, proj, m), (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_kernel_blocks_and_autograd_do_not_change_the_result(monkeypatch, causal):
    """One (batch, head) pair per block and all pairs in one block give the same values and gradients; the
    forward without autograd (no stored maps) gives the same values as with it."""
    proj = orthogonal_gaussian(40, 16, torch.Generator().manual_seed(0)).double()
    q, k, v = _inputs(30, 30, 1.0, torch.float64)
    m = _mask(2, 30)
    results = []
    for elems in (1, 1 << 30):
        monkeypatch.setattr(performer, "_BLOCK_ELEMS", elems)
        out = favor_attention(q, k, v, proj, m, causal)
        results.append((out, *torch.autograd.grad(out.square().sum(), (q, k, v))))
        with torch.no_grad():
            torch.testing.assert_close(favor_attention(q, k, v, proj, m, causal), out, rtol=0, atol=1e-14)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


def test_causal_kernel_gradcheck_with_a_ragged_last_chunk():
    """gradcheck of the causal backward; N = 11 with chunk 4: the padded tail chunk, and padding."""
    proj = orthogonal_gaussian(12, 4, torch.Generator().manual_seed(0)).double()
    q, k, v = _inputs(11, 11, 0.7, torch.float64, B=2, H=1, D=4, Dv=3)
    m = torch.ones(2, 11, dtype=torch.bool)
    m[1, 7:] = False
    assert torch.autograd.gradcheck(lambda a, b, c: favor_attention_causal(a, b, c, proj, m, chunk=4), (q, k, v))
    ref = favor_attention_reference(q, k, v, proj, m, causal=True)
    torch.testing.assert_close(favor_attention_causal(q, k, v, proj, m, chunk=4), ref)


def test_performer_module_uses_the_kernel_with_non_contiguous_inputs():
    """Head-split (transposed) inputs, as the attention layer passes them: same output as contiguous ones."""
    att = PerformerAttention(head_dim=16, n_features=24).double()
    x = torch.randn(2, 11, 3, 16, dtype=torch.float64)  # (B, L, H, D)
    q = x.transpose(1, 2)  # (B, H, L, D), non-contiguous
    torch.testing.assert_close(att(q, q, q), att(q.contiguous(), q.contiguous(), q.contiguous()))
    torch.testing.assert_close(att(q, q, q), favor_attention_reference(q, q, q, att.proj))


@pytest.mark.parametrize(("causal", "L", "S"), [(False, 256, 256), (True, 256, 256), (True, 200, 256),
                                                 (True, 256, 200)])
def test_no_feature_map_of_every_head_is_kept(monkeypatch, causal, L, S):
    """Forward and backward hold one block of features at a time (the backward recomputes them): with one
    (batch, head) pair per block, no tensor reaches the size of the maps of all pairs (B H N m); causal
    cross-attention (L != S) included."""
    from tests.conftest import LargestTensor

    monkeypatch.setattr(performer, "_BLOCK_ELEMS", 1)
    B, H, N, m = 2, 4, max(L, S), 96  # maps (N, m) of all pairs: 6x the inputs (B, H, N, D)
    proj = orthogonal_gaussian(m, 16, torch.Generator().manual_seed(0))
    q, k, v = _inputs(L, S, 1.0, torch.float32, B=B, H=H, D=16, Dv=16)
    with LargestTensor() as mode:
        favor_attention(q, k, v, proj, causal=causal).sum().backward()
    assert N * m <= mode.numel < B * H * N * m / 4  # one pair's map, far from all of them

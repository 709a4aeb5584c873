"""CAB's ProbSparse, Transformer-LS and S4D entries (attention/probsparse.py, long_short.py, s4d.py): the kernels
against their slow references in float64, the causal variants against their masked forms, the S4D convolution
against the explicit one, and option validation. The registry contract and CAB pattern checks run in
test_attention_contract.py / test_cab_patterns.py."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench.attention import build
from attnbench.attention.full import full_attention_reference
from attnbench.attention.long_short import (
    LongShortAttention,
    long_short_attention,
    long_short_attention_causal,
    long_short_attention_reference,
)
from attnbench.attention.probsparse import (
    ProbSparseAttention,
    n_active,
    probsparse_attention,
    probsparse_attention_reference,
    sample_keys,
    sample_size,
    sampled_scores,
    sparsity,
)
from attnbench.attention.registry import CapabilityError
from attnbench.attention.s4d import (
    S4DAttention,
    conv_reference,
    fft_conv,
    s4d_kernel,
    s4d_kernel_reference,
)

B, H, D, DV = 2, 3, 8, 6


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def padding(L: int) -> torch.Tensor:
    """(B, L): row 0 padded at its first token and its last third, row 1 all padding."""
    m = torch.ones(B, L, dtype=torch.bool)
    m[0, 0], m[0, 2 * L // 3:], m[1] = False, False, False
    return m


def qkv(L: int, S: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    S = L if S is None else S
    return rand(B, H, L, D, seed=seed), rand(B, H, S, D, seed=seed + 1), rand(B, H, S, DV, seed=seed + 2)


# ----------------------------------------------------------------------------- probsparse
@pytest.mark.parametrize(("L", "S", "causal"), [(40, 40, False), (40, 25, False), (25, 60, False), (40, 40, True)])
def test_probsparse_equals_its_reference(L, S, causal):
    q, k, v = qkv(L, S)
    index = sample_keys(L, S, sample_size(S, 5), torch.Generator().manual_seed(0))
    for mask in (None, padding(S)):
        for n_top in (n_active(L, 5), 3, L):
            out = probsparse_attention(q, k, v, index, n_top, mask, causal=causal)
            torch.testing.assert_close(out, probsparse_attention_reference(q, k, v, index, n_top, mask, causal))
            if mask is not None:
                assert (out[1] == 0).all()  # no real key: zeros


def test_probsparse_sizes_follow_informer():
    assert (sample_size(96, 5), n_active(96, 5)) == (25, 25)  # 5 ceil(ln 96) = 5 * 5
    assert (sample_size(720, 5), n_active(48, 5)) == (35, 20)
    assert sample_size(10, 5) == 10 and n_active(10, 5) == 10  # capped at the lengths
    assert sample_size(1, 5) == 1 and n_active(1, 5) == 0  # ln 1 = 0: one sampled key, no active query


def test_probsparse_active_queries_attend_and_lazy_queries_get_the_mean():
    """Every query active is full attention; none active is the mean of V; the queries with the most peaked sampled
    scores (large norms here) are the active ones."""
    L = 30
    q, k, v = qkv(L)
    index = sample_keys(L, L, L)  # every query samples (nearly) every key
    torch.testing.assert_close(probsparse_attention(q, k, v, index, L), full_attention_reference(q, k, v))
    mean = v.mean(2, keepdim=True).expand_as(v)
    torch.testing.assert_close(probsparse_attention(q, k, v, index, 0), mean)
    q = q.clone()
    q[:, :, [4, 17, 23]] *= 20.0  # peaked rows: the largest max - mean
    out = probsparse_attention(q, k, v, index, 3)
    active = ~torch.isclose(out, mean).all(-1)  # (B, H, L)
    assert active.sum(-1).eq(3).all() and active[:, :, [4, 17, 23]].all()
    torch.testing.assert_close(out[:, :, [4, 17, 23]], full_attention_reference(q, k, v)[:, :, [4, 17, 23]])


def test_probsparse_sparsity_is_max_minus_sum_over_the_key_length():
    q, k, _ = qkv(6, 9)
    index = torch.tensor([[0, 0, 3], [1, 2, 8], [5, 5, 5], [0, 1, 2], [7, 8, 6], [4, 3, 2]])
    s = q @ k.transpose(-1, -2)  # (B, H, 6, 9)
    sampled = torch.stack([s[:, :, i, index[i]] for i in range(6)], dim=2)  # (B, H, 6, 3)
    torch.testing.assert_close(sparsity(q, k, index), sampled.amax(-1) - sampled.sum(-1) / 9)
    torch.testing.assert_close(sampled_scores(q, k, index), sampled)  # the sparse sampled product
    keep = torch.ones(B, 9, dtype=torch.bool)
    keep[:, [5, 8]] = False  # row 2 sampled only key 5: -inf; the sum over the 7 real keys
    m = sparsity(q, k, index, keep)
    assert torch.isinf(m[:, :, 2]).all()
    real = keep[0, index][None, None]  # (1, 1, 6, 3)
    want = sampled.masked_fill(~real, -math.inf).amax(-1) - (sampled * real).sum(-1) / 7
    torch.testing.assert_close(m[:, :, [0, 1, 3, 4, 5]], want[:, :, [0, 1, 3, 4, 5]])


def test_probsparse_sampling_is_seeded_in_eval_and_drawn_from_torch_in_training():
    L = 200
    q, k, v = qkv(L)
    att = ProbSparseAttention(seed=1).eval()
    out = att(q, k, v)
    torch.testing.assert_close(att(q, k, v), out)  # eval: the same sample every call
    index = sample_keys(L, L, sample_size(L, 5), torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, probsparse_attention(q, k, v, index, n_active(L, 5)))
    assert not torch.allclose(ProbSparseAttention(seed=2).eval()(q, k, v), out)  # another seed, another sample
    att.train()
    torch.manual_seed(5)
    a, b = att(q, k, v), att(q, k, v)  # training: fresh draws from torch's generator
    assert not torch.allclose(a, b)
    torch.manual_seed(5)
    index = torch.randint(L, (L, sample_size(L, 5)))  # Informer2020's draw
    torch.testing.assert_close(a, probsparse_attention(q, k, v, index, n_active(L, 5)))


def test_probsparse_refuses_causal_because_its_masked_variant_sees_the_future():
    """Informer2020's masked variant (causal=True in the pure function) picks the active queries over the whole
    sequence: later tokens with peaked scores take the slots, and an earlier output changes."""
    L, t = 40, 20
    q, k, v = qkv(L)
    with pytest.raises(ValueError, match="probsparse: causal=True is refused"):
        ProbSparseAttention()(q, k, v, causal=True)
    index = sample_keys(L, L, sample_size(L, 5), torch.Generator().manual_seed(0))
    q2 = q.clone()
    q2[:, :, t:] *= 30.0
    a = probsparse_attention(q, k, v, index, n_active(L, 5), causal=True)
    b = probsparse_attention(q2, k, v, index, n_active(L, 5), causal=True)
    assert (a[:, :, :t] - b[:, :, :t]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="causal needs as many queries as keys"):
        probsparse_attention(q[:, :, :5], k, v, index[:5], 2, causal=True)


def test_probsparse_options_are_checked():
    with pytest.raises(ValueError, match="factor=0 must be >= 1"):
        ProbSparseAttention(factor=0)
    with pytest.raises(ValueError, match="dropout=1.0"):
        ProbSparseAttention(dropout=1.0)


def test_informer_takes_probsparse_where_it_is_not_causal():
    """Informer's encoder self-attention and cross-attention take probsparse; its causal decoder self-attention is
    refused with the entries that can."""
    from attnbench.models.informer import InformerForecaster

    def net(**att):
        opts = {"self_attention": {"name": "full"}, "cross_attention": {"name": "full"},
                "decoder_self_attention": {"name": "full"}} | att
        torch.manual_seed(0)
        return InformerForecaster(48, 24, 12, 3, 4, d_model=16, n_heads=2, d_ff=32, dropout=0.0, **opts).eval()

    prob = {"name": "probsparse"}
    full, sparse = net(), net(self_attention=prob, cross_attention=prob)
    sparse.load_state_dict(full.state_dict())
    x, xm, ym = torch.randn(2, 48, 3), torch.rand(2, 48, 4), torch.rand(2, 36, 4)
    out = sparse(x, xm, ym)
    assert out.shape == (2, 12, 3) and torch.isfinite(out).all()
    assert (out - full(x, xm, ym)).abs().max() > 1e-4  # lazy queries: not full attention
    with pytest.raises(CapabilityError, match="'probsparse' does not support causal=True"):
        net(decoder_self_attention=prob)


# ----------------------------------------------------------------------------- long_short
def ls_params(r: int = 4, seed: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    return rand(H, D, r, seed=seed), rand(H, r, seed=seed + 1)


@pytest.mark.parametrize("L", [12, 37])
@pytest.mark.parametrize("window", [1, 2, 7])
@pytest.mark.parametrize(("norm", "compress_normed"), [("head", False), ("model", True), ("model", False)])
def test_long_short_equals_its_reference(L, window, norm, compress_normed):
    q, k, v = qkv(L)
    w_p, b_p = ls_params()
    for mask in (None, padding(L)):
        out = long_short_attention(q, k, v, w_p, b_p, window, mask, norm, compress_normed)
        ref = long_short_attention_reference(q, k, v, w_p, b_p, window, mask, norm=norm,
                                             compress_normed=compress_normed)
        torch.testing.assert_close(out, ref)
        for chunk, rank in ((3, 1), (4, 2), (64, 1)):
            out = long_short_attention_causal(q, k, v, w_p, b_p, window, chunk, rank, mask, norm, compress_normed)
            ref = long_short_attention_reference(q, k, v, w_p, b_p, window, mask, True, chunk, rank, norm,
                                                 compress_normed)
            torch.testing.assert_close(out, ref)
            if mask is not None:
                assert (out[1] == 0).all() and (out[0, :, 0] == 0).all()  # no visible key: zeros


def test_long_short_causal_output_equals_the_prefix_run():
    """With chunks of 3 and a window of 4, output i depends on tokens <= i only: equal to the run on the prefix."""
    att = LongShortAttention(head_dim=D, n_heads=H, window=4, n_landmarks=4, chunk_size=3, chunk_rank=2).double()
    q, k, v = qkv(20)
    out = att(q, k, v, causal=True)
    for i in (0, 2, 3, 8, 19):
        torch.testing.assert_close(att(q[:, :, :i + 1], k[:, :, :i + 1], v[:, :, :i + 1], causal=True)[:, :, i],
                                   out[:, :, i])
    # query 9 (chunk 3, window 6..9) sees token 5 only through the compressed chunk 1; tokens before 5 never see it
    k2 = k.clone()
    k2[:, :, 5] += 3.0
    moved = (att(q, k2, v, causal=True) - out).abs().amax(dim=(0, 1, 3))  # per position
    assert moved[9] > 1e-6 and (moved[:5] == 0).all()


def test_long_short_model_norm_is_the_head_norm_with_one_head():
    """norm="model" normalises over every head's features of a position: with one head, the per-head norm."""
    q, k, v = (t[:, :1] for t in qkv(15))
    w_p, b_p = (t[:1] for t in ls_params())
    for cn in (False, True):
        torch.testing.assert_close(long_short_attention(q, k, v, w_p, b_p, 4, None, "model", cn),
                                   long_short_attention(q, k, v, w_p, b_p, 4, None, "head", cn))
    q, k, v = qkv(15)
    w_p, b_p = ls_params()
    assert not torch.allclose(long_short_attention(q, k, v, w_p, b_p, 4, None, "model"),
                              long_short_attention(q, k, v, w_p, b_p, 4, None, "head"))


def test_long_short_module_and_options():
    att = build("long_short", {"head_dim": D, "n_heads": H}, window=3, n_landmarks=4).double()
    assert att.w_p.shape == (H, D, 4) and att.b_p.shape == (H, 4)
    q, k, v = qkv(10)
    ref = long_short_attention_reference(q, k, v, att.w_p, att.b_p, 3)
    torch.testing.assert_close(att(q, k, v), ref)
    with pytest.raises(ValueError, match="built for n_heads=3, head_dim=8"):
        att(q[:, :2], k[:, :2], v[:, :2])
    for bad, match in (({"window": 0}, "window=0 must be >= 1"), ({"chunk_rank": 5}, "chunk_rank=5 must be <="),
                       ({"norm": "batch"}, "norm='batch'"), ({"dropout": -0.1}, "dropout=-0.1")):
        with pytest.raises(ValueError, match=match):
            LongShortAttention(head_dim=D, n_heads=H, n_landmarks=4, **bad)


# ----------------------------------------------------------------------------- s4d
def s4d(**kw) -> S4DAttention:
    torch.manual_seed(0)
    return S4DAttention(head_dim=DV, n_heads=H, **kw).double().eval()


@pytest.mark.parametrize("opts", [{}, {"init": "lin"}, {"tie_a": True}, {"d_state": 4, "bidirectional": False}])
def test_s4d_kernel_is_the_impulse_response_of_the_recurrence(opts):
    m = s4d(**opts)
    c = torch.view_as_complex(m.c)
    want = s4d_kernel_reference(m.log_dt, m.log_a_real, m.a_imag, c, 30)
    torch.testing.assert_close(s4d_kernel(m.log_dt, m.log_a_real, m.a_imag, c, 30), want)
    assert want.abs().amax() > 1e-3


@pytest.mark.parametrize("L", [1, 7, 32])
def test_s4d_fft_convolution_equals_the_explicit_convolution(L):
    u, kernel, back = rand(B, H, L, DV, seed=1), rand(H, DV, L, seed=2), rand(H, DV, L, seed=3)
    torch.testing.assert_close(fft_conv(u, kernel), conv_reference(u, kernel))
    torch.testing.assert_close(fft_conv(u, kernel, back), conv_reference(u, kernel, back))
    # by hand at one position: y_2 = k0 u_2 + k1 u_1 + k2 u_0 (+ backward b0 u_3 + b1 u_4 + ...)
    if L == 7:
        y = fft_conv(u, kernel, back)[:, :, 2]
        want = sum(kernel[..., m] * u[:, :, 2 - m] for m in range(3)) + sum(back[..., m - 1] * u[:, :, 2 + m]
                                                                             for m in range(1, 5))
        torch.testing.assert_close(y, want)


def test_s4d_fft_convolution_backward_and_kernel_gradients():
    """The hand-written backward of the FFT convolution (real FFTs only) and the kernel's gradients, by gradcheck."""
    u = rand(2, 2, 9, 3, seed=1).requires_grad_()
    kernel, back = rand(2, 3, 9, seed=2).requires_grad_(), rand(2, 3, 9, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(fft_conv, (u, kernel, back))
    assert torch.autograd.gradcheck(fft_conv, (u, kernel))
    m = S4DAttention(head_dim=2, n_heads=2, d_state=4).double()
    c = torch.view_as_complex(m.c.detach()).clone().requires_grad_()
    params = (m.log_dt.detach().requires_grad_(), m.log_a_real.detach().requires_grad_(),
              m.a_imag.detach().requires_grad_(), c)
    assert torch.autograd.gradcheck(lambda *p: s4d_kernel(*p, 11), params)


def test_s4d_module_is_gelu_of_the_convolution_plus_skip():
    m = s4d()
    L = 16
    q, k, _ = qkv(L)
    v = rand(B, H, L, DV, seed=4)
    kern = m.kernels(L, causal=False)
    for causal, want in ((False, conv_reference(v, kern[0], kern[1])), (True, conv_reference(v, kern[0]))):
        torch.testing.assert_close(m(q, k, v, causal=causal), torch.nn.functional.gelu(want + v * m.d[:, None]))
    # one direction: the noncausal pass is the causal one
    uni = s4d(bidirectional=False)
    torch.testing.assert_close(uni(q, k, v), uni(q, k, v, causal=True))
    assert not torch.allclose(m(q, k, v), m(q, k, v, causal=True))


def test_s4d_mixes_the_values_only_and_padded_inputs_reach_nothing():
    m = s4d()
    L = 12
    q, k, _ = qkv(L)
    v = rand(B, H, L, DV, seed=4).requires_grad_()
    q.requires_grad_()
    mask = padding(L)
    for causal in (False, True):
        out = m(q, k, v, key_padding_mask=mask, causal=causal)
        torch.testing.assert_close(m(7 * q, -k, v, key_padding_mask=mask, causal=causal), out)
        v2 = torch.where(mask[:, None, :, None], v, 9.0)
        torch.testing.assert_close(m(q, k, v2, key_padding_mask=mask, causal=causal), out)
        assert (out[1] == 0).all()
        assert (out[0, :, 0] == 0).all() == causal  # causal: position 0 sees only padding
        out.sum().backward()
        assert (q.grad == 0).all() and v.grad.abs().sum() > 0
        q.grad = v.grad = None
    # without the mask the padded values do reach the outputs
    assert not torch.allclose(m(q, k, v2), m(q, k, v))


def test_s4d_step_equals_the_causal_pass_and_narrow_values_use_the_first_features():
    m = s4d()
    L = 10
    q, k, _ = qkv(L)
    v = rand(B, H, L, DV, seed=4)
    out, state, steps = m(q, k, v, causal=True), None, []
    for t in range(L):
        y, state = m.step(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], state)
        steps.append(y)
    torch.testing.assert_close(torch.cat(steps, dim=2), out)
    torch.testing.assert_close(m(q, k, v[..., :4]), m(q, k, v)[..., :4])
    with pytest.raises(ValueError, match="values of 7 features per head; built for head_dim=6"):
        m(q, k, rand(B, H, L, 7, seed=5))
    with pytest.raises(ValueError, match="s4d mixes one sequence"):
        m(q[:, :, :5], k, v)


def test_s4d_init_and_options():
    m = S4DAttention(head_dim=4, n_heads=2, d_state=8)
    n = torch.arange(4.0)
    torch.testing.assert_close(m.a_imag[0, 0], 8 / math.pi * (8 / (1 + 2 * n) - 1))  # S4D-Inv
    torch.testing.assert_close(S4DAttention(head_dim=4, n_heads=2, d_state=8, init="lin").a_imag[1, 3], math.pi * n)
    assert S4DAttention(head_dim=4, n_heads=2, tie_a=True).log_a_real.shape == (1, 1, 8)
    assert ((m.log_dt >= math.log(1e-3)) & (m.log_dt <= math.log(1e-1))).all()
    assert torch.exp(m.log_a_real).eq(0.5).all() and m.c.shape == (2, 2, 4, 4, 2)
    assert S4DAttention(head_dim=4, n_heads=2, bidirectional=False).c.shape[0] == 1
    for bad, match in (({"d_state": 3}, "d_state=3 must be even"), ({"init": "legs"}, "init='legs'"),
                       ({"dropout": 1.5}, "dropout=1.5")):
        with pytest.raises(ValueError, match=match):
            S4DAttention(head_dim=4, n_heads=2, **bad)

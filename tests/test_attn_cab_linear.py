"""cosFormer, LARA and ABC (CAB's linear attentions): the fast pure functions against their slow references (float64),
causal prefix forms against masked quadratic forms, LARA's estimator (per-proposal unbiasedness, the limit of many
samples), ABC's stabiliser and incremental decoding, the options each entry takes, and their FLOP formulas on the
non-default options (tests/test_attention_flops.py covers the defaults)."""

from __future__ import annotations

import math

import pytest
import torch

from attnbench.attention import build
from attnbench.attention.abc import (
    ABCAttention,
    abc_causal,
    abc_causal_cab,
    abc_noncausal,
    abc_reference,
    control_logits,
)
from attnbench.attention.cosformer import (
    CosformerAttention,
    cosformer_attention,
    cosformer_attention_reference,
    cosformer_features,
)
from attnbench.attention.flops import attention_flops
from attnbench.attention.full import full_attention_reference
from attnbench.attention.lara import (
    LaraAttention,
    lara_attention,
    lara_attention_reference,
    lara_proposals,
    lara_samples,
    log_features,
    segment_ids,
    segment_means,
)
from tests.test_attention_flops import counted

B, H, D, DV = 2, 3, 8, 5
SHAPES = [(9, 9), (5, 9), (9, 5), (150, 150)]  # 150: several chunks of the causal prefix sums (64)


def rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def qkv(L: int, S: int, seed: int = 0, scale: float = 1.0):
    return rand(B, H, L, D, seed=seed, scale=scale), rand(B, H, S, D, seed=seed + 1, scale=scale), \
        rand(B, H, S, DV, seed=seed + 2)


def mask(S: int) -> torch.Tensor:
    """(B, S): row 0 with its last third padded, row 1 with its first two keys padded."""
    m = torch.ones(B, S, dtype=torch.bool)
    m[0, S - S // 3:] = False
    m[1, :2] = False
    return m


# ----------------------------------------------------------------------------- cosFormer
def test_cosformer_features_give_the_cosine_of_the_distance():
    """Ptolemy: phi(q_i) . phi(k_j) = relu(q_i) . relu(k_j) cos(pi/2 (i - j) / M)."""
    q, k, _ = qkv(7, 7)
    pos, M = torch.arange(1, 8), 11
    got = cosformer_features(q, pos, M) @ cosformer_features(k, pos, M).transpose(-1, -2)
    i, j = torch.meshgrid(pos, pos, indexing="ij")
    want = (q.relu() @ k.relu().transpose(-1, -2)) * torch.cos(math.pi / 2 * (i - j).double() / M)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("L", "S"), SHAPES)
def test_cosformer_linear_form_equals_the_explicit_weights(causal, L, S):
    """Non-causal and the causal prefix sums (chunks of 64) against the masked (L, S) weight matrix."""
    q, k, v = qkv(L, S)
    M = max(L, S) + 3
    for m in (None, mask(S)):
        want = cosformer_attention_reference(q, k, v, M, m, causal)
        torch.testing.assert_close(cosformer_attention(q, k, v, M, m, causal), want)
        att = CosformerAttention(horizon=M, causal_horizon=M)
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m, causal=causal), want)


def test_cosformer_weights_decay_with_the_distance():
    """Equal relu(q) . relu(k) everywhere: v = identity reads the row weights, cos(pi/2 |i - j| / M) normalised."""
    N, M = 6, 8
    q = k = torch.ones(1, 1, N, D, dtype=torch.float64)
    w = CosformerAttention(horizon=M)(q, k, torch.eye(N, dtype=torch.float64)[None, None])[0, 0]  # (N, N)
    i, j = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    cos = torch.cos(math.pi / 2 * (i - j).abs().double() / M)
    torch.testing.assert_close(w, cos / cos.sum(-1, keepdim=True))
    assert (w.diagonal() == w.amax(-1)).all() and (w[0, :-1] > w[0, 1:]).all()  # nearer keys weigh more


def test_cosformer_horizons():
    """horizon=None: M = max(L, S) of the call (the official code); a set horizon is used as given; causal calls use
    causal_horizon and are prefix-consistent; inputs beyond M are refused."""
    q, k, v = qkv(7, 12)
    torch.testing.assert_close(CosformerAttention()(q, k, v), cosformer_attention_reference(q, k, v, 12))
    torch.testing.assert_close(CosformerAttention(horizon=40)(q, k, v), cosformer_attention_reference(q, k, v, 40))
    assert not torch.allclose(CosformerAttention(horizon=40)(q, k, v), CosformerAttention()(q, k, v))
    q, k, v = qkv(150, 150)
    att = CosformerAttention(causal_horizon=200)
    full = att(q, k, v, causal=True)
    torch.testing.assert_close(att(q[:, :, :100], k[:, :, :100], v[:, :, :100], causal=True), full[:, :, :100])
    # M = the call's length would leak the length into causal outputs: why causal calls take a fixed M
    m100 = cosformer_attention(q[:, :, :100], k[:, :, :100], v[:, :, :100], 100, causal=True)
    assert not torch.allclose(m100, cosformer_attention(q, k, v, 150, causal=True)[:, :, :100])
    with pytest.raises(ValueError, match=r"cosformer: input of 150 positions .* exceeds horizon=64"):
        CosformerAttention(horizon=64)(q, k, v)
    with pytest.raises(ValueError, match="cosformer: causal input of 150 positions .* causal_horizon=100"):
        CosformerAttention(causal_horizon=100)(q, k, v, causal=True)
    for bad in ({"horizon": 0}, {"causal_horizon": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            CosformerAttention(**bad)


# ----------------------------------------------------------------------------- LARA
def test_lara_segments_follow_the_official_layout():
    assert segment_ids(10, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]  # n // c first, one more in the last
    assert segment_ids(12, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert segment_ids(3, 5).tolist() == [0, 1, 2]  # fewer tokens than proposals: one each
    x = rand(B, H, 10, D, seed=1)
    keep = torch.ones(B, 10, dtype=torch.bool)
    keep[0, 3:6] = False  # segment 1 of row 0 is all padding
    keep[0, 9] = False
    means, valid = segment_means(x, segment_ids(10, 3), keep)
    torch.testing.assert_close(means[0, :, 2], x[0, :, 6:9].mean(1))  # real tokens only
    torch.testing.assert_close(means[1, :, 2], x[1, :, 6:10].mean(1))
    assert valid.shape == (B, 1, 3) and valid[0, 0].tolist() == [True, False, True] and valid[1].all()


@pytest.mark.parametrize("n_landmarks", [3, 4, 16])
def test_lara_equals_its_explicit_form(n_landmarks):
    """Log-space fast path = explicit exponentials, at w = mu and at sampled w, with and without padding."""
    q, k, v = qkv(11, 11, scale=0.7)
    for m in (None, mask(11)):
        mu, valid = lara_proposals(q, k, n_landmarks, m)
        for eps in (None, rand(*mu.shape, seed=7)):
            w = lara_samples(mu, eps)
            torch.testing.assert_close(lara_attention(q, k, v, mu, w, valid, m),
                                       lara_attention_reference(q, k, v, mu, w, valid, m))


def test_lara_per_proposal_ratio_is_unbiased_with_the_papers_noise():
    """xi(w, q) xi(w, k) / xi(w, mu) with w' ~ N(mu', I) averages to exp(q.k / sqrt(D)) (within 4 standard errors);
    the code's noise (variance D^-1/2) misses it by far more."""
    q, k, mu = rand(1, 1, 1, 4, seed=1, scale=0.7), rand(1, 1, 1, 4, seed=2, scale=0.7), rand(1, 1, 1, 4, seed=3)
    n, s = 400_000, 4 ** -0.5
    target = torch.exp(s * (q * k).sum())
    means = {}
    for noise in ("unit", "cab"):
        mu_n = mu.expand(1, 1, n, 4)
        w = lara_samples(mu_n, rand(1, 1, n, 4, seed=4), noise)
        log_r = log_features(w, q)[..., 0] + log_features(w, k)[..., 0] - (s * (w * mu_n).sum(-1)
                                                                            - 0.5 * s * (mu_n * mu_n).sum(-1))
        est = log_r.exp()
        means[noise] = (est.mean().item(), est.std().item() / n ** 0.5)
    assert abs(means["unit"][0] - target) < 4 * means["unit"][1], (means, target)
    assert abs(means["cab"][0] - target) > 20 * means["cab"][1], (means, target)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lara_tends_to_softmax_attention_with_many_samples(seed):
    """One proposal mean sampled 20,000 times: self-normalised importance sampling converges to softmax attention
    (small inputs keep the weights' variance small); w = mu alone, or the code's noise, stays off."""
    q, k = rand(1, 1, 3, 4, seed=10 * seed, scale=0.3), rand(1, 1, 5, 4, seed=10 * seed + 1, scale=0.3)
    v = rand(1, 1, 5, 3, seed=10 * seed + 2)
    exact = full_attention_reference(q, k, v)
    mu = (q.mean(2, keepdim=True) + k.mean(2, keepdim=True)).expand(1, 1, 20_000, 4)
    eps = rand(*mu.shape, seed=10 * seed + 3)
    err = {noise: (lara_attention(q, k, v, mu, lara_samples(mu, eps, noise)) - exact).abs().max().item()
           for noise in ("unit", "cab")}
    assert err["unit"] < 0.01 and err["cab"] > 0.02, err
    assert (lara_attention(q, k, v, mu[:, :, :1], mu[:, :, :1]) - exact).abs().max() > 0.04


def test_lara_module_padding_sampling_and_options():
    q, k, v = (x.float() for x in qkv(12, 12))
    att = LaraAttention(n_landmarks=4).eval()
    mu, valid = lara_proposals(q, k, 4)
    torch.testing.assert_close(att(q, k, v), lara_attention(q, k, v, mu, mu, valid))  # evaluation: w = mu
    m = mask(12)
    m[1] = False  # a batch element with every key padded
    garbage = [torch.where(m[:, None, :, None], x, 50.0 * torch.randn_like(x)) for x in (q, k, v)]
    out = att(q, k, v, key_padding_mask=m)
    real = m[:, None, :, None].expand_as(out)
    # the real tokens' outputs ignore the padded keys, values and queries (they leave the segment means)
    torch.testing.assert_close(att(*garbage, key_padding_mask=m)[real], out[real])
    assert (out[1] == 0).all()
    att.train()
    torch.manual_seed(3)
    a = att(q, k, v)
    torch.manual_seed(3)
    torch.testing.assert_close(att(q, k, v), a)  # training draws from the global generator
    assert not torch.allclose(att(q, k, v), a)
    with pytest.raises(ValueError, match="lara: causal=True is not supported"):
        att(q, k, v, causal=True)
    with pytest.raises(ValueError, match="lara: self-attention only"):
        att(q[:, :, :5], k, v)
    with pytest.raises(ValueError, match="n_landmarks=0 must be >= 1"):
        LaraAttention(n_landmarks=0)
    with pytest.raises(ValueError, match="noise='x'; allowed"):
        LaraAttention(noise="x")


# ----------------------------------------------------------------------------- ABC
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("L", "S"), SHAPES)
def test_abc_equals_the_per_query_memory(causal, L, S):
    """Non-causal and the chunked causal memory (chunks of 1, 3, 64) against the (L, S)-visibility reference, one
    shared control and separate controls, with and without padding."""
    q, k, v = qkv(L, S)
    W, Wv = rand(D, 4, seed=5), rand(DV, 4, seed=6)
    for m in (None, mask(S)):
        a_k = control_logits(k, W, m)
        for a_v in (a_k, control_logits(v, Wv, m)):
            want = abc_reference(q, k, v, a_k, a_v, causal)
            if not causal:
                torch.testing.assert_close(abc_noncausal(q, k, v, a_k, a_v), want)
                continue
            for chunk in (1, 3, 64):
                torch.testing.assert_close(abc_causal(q, k, v, a_k, a_v, chunk), want)


def test_abc_causal_output_is_the_noncausal_run_on_the_prefix():
    q, k, v = qkv(70, 70)
    att = build("abc", {"head_dim": D}, n_landmarks=4).double()
    out = att(q, k, v, causal=True)
    for t in (0, 5, 63, 64, 69):
        torch.testing.assert_close(out[:, :, t], att(q[:, :, t:t + 1], k[:, :, :t + 1], v[:, :, :t + 1])[:, :, 0])


def test_abc_cab_causal_form_keeps_only_the_current_token():
    """CAB's causal branch, written out per step: slot weights exp(a_t) / sum_{i<=t} exp(a_i) of token t alone."""
    q, k, v = qkv(9, 9)
    W, Wv = rand(D, 4, seed=5), rand(D, 4, seed=6)
    a_k, a_v = control_logits(k, W), control_logits(v[..., :D] if DV >= D else k, Wv)
    got = abc_causal_cab(q, k, v, a_k, a_v)
    for t in range(9):
        wk = torch.softmax(a_k[:, :, :t + 1], dim=2)[:, :, t]  # (B, H, C)
        wv = torch.softmax(a_v[:, :, :t + 1], dim=2)[:, :, t]
        p = torch.softmax((q[:, :, t] * k[:, :, t]).sum(-1, keepdim=True) / math.sqrt(D) * wk, dim=-1)
        torch.testing.assert_close(got[:, :, t], (p * wv).sum(-1, keepdim=True) * v[:, :, t])
    assert not torch.allclose(got, abc_causal(q, k, v, a_k, a_v))


@pytest.mark.parametrize(("control", "form"), [("shared", "paper"), ("separate", "paper"), ("separate", "cab")])
def test_abc_step_equals_the_causal_pass(control, form):
    q, k, v = (rand(B, H, 20, D, seed=s) for s in (1, 2, 3))
    att = ABCAttention(D, n_landmarks=4, control=control, causal_form=form).double()
    with torch.no_grad():
        att.compress_k.mul_(30.0)  # logits of order 10^2: the running max must rescale the memory
    out, state = att(q, k, v, causal=True), None
    for t in range(20):
        y, state = att.step(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], state)
        torch.testing.assert_close(y[:, :, 0], out[:, :, t])


def test_abc_stabiliser_keeps_large_logits_finite_in_float32():
    """Control logits that jump by hundreds from chunk to chunk (exp overflows float32 beyond 88): the running max
    of each chunk, carried across chunks by rescaling the memory, keeps the causal pass at float32 accuracy of the
    float64 reference; without it the pass overflows."""
    q, k, v = qkv(100, 100)
    offsets = torch.tensor([0.0, 200.0, 150.0, -100.0, 300.0, 0.0, 250.0])  # per chunk of 16 tokens
    a = rand(B, H, 100, 4, seed=5) + offsets.repeat_interleave(16)[:100, None].double()  # (B, H, N, C)
    want = abc_reference(q, k, v, a, a, causal=True)
    got = abc_causal(q.float(), k.float(), v.float(), a.float(), a.float(), chunk=16)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)
    assert not torch.isfinite(a.float().exp().cumsum(2)).all()  # the unstabilised sums


def test_abc_one_slot_is_a_softmax_mean_of_the_values():
    """With one memory slot every query reads the same vector: the control's softmax mean of the values."""
    q, k, v = qkv(6, 9)
    att = ABCAttention(D, n_landmarks=1).double()
    phi = torch.softmax(k @ att.compress_k, dim=2)  # (B, H, S, 1)
    torch.testing.assert_close(att(q, k, v), (phi * v).sum(2, keepdim=True).expand(-1, -1, 6, -1))


def test_abc_options():
    assert [n for n, _ in ABCAttention(D).named_parameters()] == ["compress_k"]
    assert [n for n, _ in ABCAttention(D, control="separate").named_parameters()] == ["compress_k", "compress_v"]
    q, k, v = qkv(5, 5)
    with pytest.raises(ValueError, match="control='separate' .* needs v's head size 5 == head_dim=8"):
        ABCAttention(D, control="separate").double()(q, k, v)
    with pytest.raises(ValueError, match="built for head_dim=4"):
        ABCAttention(4).double()(q, k, v)
    with pytest.raises(ValueError, match="control='both'; allowed"):
        ABCAttention(D, control="both")
    with pytest.raises(ValueError, match="causal_form='x'; allowed"):
        ABCAttention(D, causal_form="x")
    with pytest.raises(ValueError, match="n_landmarks=0 must be >= 1"):
        ABCAttention(D, n_landmarks=0)


# ----------------------------------------------------------------------------- FLOPs of the non-default options
@pytest.mark.parametrize(("name", "opts"), [
    ("abc", {"control": "separate"}), ("abc", {"control": "separate", "causal_form": "cab"}),
    ("abc", {"n_landmarks": 3}), ("lara", {"n_landmarks": 128}), ("cosformer", {"horizon": 500}),
])
def test_flop_formulas_of_the_options_equal_flop_counter(name, opts):
    torch.manual_seed(0)
    m = build(name, {"head_dim": 8}, **opts).eval()
    cases = [(100, 100, False)] + ([] if name == "lara" else [(100, 100, True), (60, 100, True), (100, 60, False)])
    for L, S, causal in cases:
        q, k, v = torch.randn(2, 2, L, 8), torch.randn(2, 2, S, 8), torch.randn(2, 2, S, 8)
        f = attention_flops(m, B=2, H=2, q_axes=L, k_axes=S, D=8, causal=causal)
        assert f.matmul == counted(m, q, k, v, causal), (name, opts, L, S, causal)

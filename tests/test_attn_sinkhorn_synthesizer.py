"""Sparse Sinkhorn attention and the Synthesizer: the kernels against their slow references (float64), the Sinkhorn
normalisation, what a hard sort does, both synthesizer variants, FLOPs and option errors. The registry-wide checks
(contract, CAB patterns, caps, FLOP formula at the defaults) are in the contract / pattern / caps / flops tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from attnbench.attention import build
from attnbench.attention.flops import attention_flops
from attnbench.attention.sinkhorn import (
    sinkhorn_attention_reference,
    sinkhorn_normalize,
    sinkhorn_normalize_reference,
    sort_matrix,
    sorted_block_attention,
    sorted_block_attention_reference,
)
from attnbench.attention.synthesizer import (
    dense_logits_reference,
    synthesizer_attention_reference,
)

B, H, D, DV = 2, 3, 8, 5


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def qkv(L: int, S: int | None = None, seed: int = 0):
    S = L if S is None else S
    return rand(B, H, L, D, seed=seed), rand(B, H, S, D, seed=seed + 1), rand(B, H, S, DV, seed=seed + 2)


def pad_mask(S: int) -> torch.Tensor:
    """(B, S): row 0 has its first key and its last third padded, row 1 only its last key."""
    m = torch.ones(B, S, dtype=torch.bool)
    m[0, 0], m[0, 2 * S // 3:], m[1, -1] = False, False, False
    return m


def sinkhorn(**opts) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("sinkhorn", {"head_dim": D, "max_len": 40}, **opts).double().eval()


def synthesizer(variant: str, max_len: int = 16, **opts) -> torch.nn.Module:
    torch.manual_seed(0)
    return build("synthesizer", {"head_dim": D, "n_heads": H, "max_len": max_len}, variant=variant,
                 **opts).double().eval()


def counted(module, q, k, v, causal: bool = False) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        module(q, k, v, causal=causal)
    return fc.get_total_flops()


# ----------------------------------------------------------------------------- Sinkhorn normalisation
def test_sinkhorn_rows_and_columns_sum_to_one_after_enough_iterations():
    x = rand(4, 6, 6, seed=1) * 2
    one = sinkhorn_normalize(x, 1)
    torch.testing.assert_close(one.sum(dim=-2), torch.ones(4, 6, dtype=torch.float64))  # columns: exact each time
    assert (one.sum(dim=-1) - 1).abs().max() > 1e-2  # rows: not yet
    many = sinkhorn_normalize(x, 200)
    torch.testing.assert_close(many.sum(dim=-1), torch.ones(4, 6, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(many.sum(dim=-2), torch.ones(4, 6, dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize("n_iters", [1, 3, 20])
def test_log_domain_sinkhorn_equals_the_probability_domain_reference(n_iters):
    x = rand(2, 3, 5, 5, seed=2)
    torch.testing.assert_close(sinkhorn_normalize(x, n_iters), sinkhorn_normalize_reference(x, n_iters))


def test_a_low_temperature_gives_the_permutation_the_logits_prefer():
    perm = torch.tensor([2, 0, 3, 1])
    R = torch.eye(4, dtype=torch.float64)[perm] * 1.0 + 0.1 * rand(4, 4, seed=3)
    P = sort_matrix(R, "sinkhorn", n_iters=50, temperature=0.02)
    torch.testing.assert_close(P, torch.eye(4, dtype=torch.float64)[perm], atol=1e-6, rtol=0)
    soft = sort_matrix(R, "softmax", n_iters=50, temperature=1.0)  # the LRA code's row softmax: rows only
    torch.testing.assert_close(soft.sum(dim=-1), torch.ones(4, dtype=torch.float64))
    assert (soft.sum(dim=-2) - 1).abs().max() > 1e-3


# ----------------------------------------------------------------------------- Sinkhorn attention
@pytest.mark.parametrize("combine", ["sum", "concat"])
@pytest.mark.parametrize("sort", ["sinkhorn", "softmax"])
@pytest.mark.parametrize(("L", "block"), [(12, 4), (14, 4), (3, 4), (40, 8)])
@pytest.mark.parametrize("masked", [False, True])
def test_sinkhorn_kernel_equals_the_dense_reference(combine, sort, L, block, masked):
    """Lengths that are multiples of the block, not, and shorter than one block; with and without padding."""
    m = sinkhorn(block_size=block, sort=sort, combine=combine, sinkhorn_iters=3, temperature=0.5)
    q, k, v = qkv(L)
    mask = pad_mask(L) if masked else None
    want = sinkhorn_attention_reference(q, k, v, m.sort_hidden.weight, m.sort_hidden.bias, m.sort_out.weight,
                                        m.sort_out.bias, block, mask, sort, 3, 0.5, combine)
    torch.testing.assert_close(m(q, k, v, key_padding_mask=mask), want)


def test_a_hard_sort_attends_to_the_permuted_block():
    """P a permutation: query block i sees its own block and block perm[i] (sum: two softmaxes; concat: one)."""
    L, b = 12, 4
    q, k, v = qkv(L, seed=5)
    perm = torch.tensor([2, 0, 1])
    P = torch.eye(3, dtype=torch.float64)[perm].expand(B, H, 3, 3)
    blocks = [slice(i * b, (i + 1) * b) for i in range(3)]
    sdpa = F.scaled_dot_product_attention
    out = sorted_block_attention(q, k, v, P, b, combine="sum")
    cat = sorted_block_attention(q, k, v, P, b, combine="concat")
    for i, blk in enumerate(blocks):
        own, srt = blk, blocks[perm[i]]
        want = sdpa(q[:, :, blk], k[:, :, own], v[:, :, own]) + sdpa(q[:, :, blk], k[:, :, srt], v[:, :, srt])
        torch.testing.assert_close(out[:, :, blk], want)
        both = torch.cat([k[:, :, srt], k[:, :, own]], dim=2), torch.cat([v[:, :, srt], v[:, :, own]], dim=2)
        torch.testing.assert_close(cat[:, :, blk], sdpa(q[:, :, blk], *both))
    torch.testing.assert_close(sorted_block_attention_reference(q, k, v, P, b, combine="sum"), out)


def test_a_sorted_block_of_padding_adds_nothing_and_padded_content_never_arrives():
    """Block 0 sorted onto block 2, which is all padding: block 0 gets its local attention only, whatever the padded
    keys and values hold; a soft sort mixes real and padded keys, and the padded ones still change nothing."""
    L, b = 12, 4
    q, k, v = qkv(L, seed=6)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[:, 8:] = False  # block 2 padded
    P = torch.eye(3, dtype=torch.float64)[torch.tensor([2, 0, 1])].expand(B, H, 3, 3)
    out = sorted_block_attention(q, k, v, P, b, mask)
    local = F.scaled_dot_product_attention(q[:, :, :4], k[:, :, :4], v[:, :, :4])
    torch.testing.assert_close(out[:, :, :4], local)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 8:], v2[:, :, 8:] = 1e3, -1e3
    soft = sinkhorn_normalize(rand(B, H, 3, 3, seed=7), 5)
    torch.testing.assert_close(sorted_block_attention(q, k2, v2, soft, b, mask),
                               sorted_block_attention(q, k, v, soft, b, mask))


def test_a_shorter_input_uses_the_first_sortnet_outputs():
    m = sinkhorn(block_size=4)  # max_len 40: 10 SortNet outputs; 12 tokens use 3
    q, k, v = qkv(12, seed=8)
    out = m(q, k, v)
    with torch.no_grad():
        m.sort_out.weight[3:] = 5.0
        m.sort_out.bias[3:] = -5.0
    torch.testing.assert_close(m(q, k, v), out)
    with torch.no_grad():
        m.sort_out.weight[:3] *= 3.0
    assert not torch.allclose(m(q, k, v), out)


def test_gumbel_noise_only_in_training():
    q, k, v = qkv(12, seed=9)
    m = sinkhorn(block_size=4, gumbel_noise=True)
    torch.testing.assert_close(m(q, k, v), m(q, k, v))  # eval: no noise
    m.train()
    assert not torch.allclose(m(q, k, v), m(q, k, v))
    quiet = sinkhorn(block_size=4).train()  # no noise, no dropout: training mode is deterministic
    torch.testing.assert_close(quiet(q, k, v), quiet(q, k, v))


@pytest.mark.parametrize(("L", "opts"), [(100, {"block_size": 16}), (37, {"block_size": 8, "combine": "concat"}),
                                          (64, {"block_size": 16, "sort": "softmax"}), (5, {})])
def test_sinkhorn_flop_formula_equals_the_flop_counter(L, opts):
    m = build("sinkhorn", {"head_dim": D, "max_len": 100}, **opts).eval()
    q, k, v = (x.float() for x in qkv(L))
    f = attention_flops(m, B=B, H=H, q_axes=L, D=D, Dv=DV)
    assert f.matmul == counted(m, q, k, v)


@pytest.mark.parametrize(("opts", "match"), [
    ({"sort": "bitonic"}, "sort='bitonic'; allowed: sinkhorn, softmax"),
    ({"combine": "max"}, "combine='max'; allowed: sum, concat"),
    ({"sinkhorn_iters": 0}, "sinkhorn_iters=0 must be >= 1"),
    ({"temperature": 0.0}, "temperature=0.0 must be > 0"),
    ({"block_size": 0}, "head_dim=8, max_len=16 and block_size=0 must be >= 1"),
    ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
])
def test_sinkhorn_option_errors(opts, match):
    with pytest.raises(ValueError, match=f"sinkhorn: {match}"):
        build("sinkhorn", {"head_dim": D, "max_len": 16}, **opts)


def test_sinkhorn_refuses_what_it_cannot_do():
    m = sinkhorn(block_size=4)
    q, k, v = qkv(12)
    with pytest.raises(ValueError, match="sinkhorn attention is not causal"):
        m(q, k, v, causal=True)
    with pytest.raises(ValueError, match="as many queries as keys .* L=12, S=8"):
        m(q, k[:, :, :8], v[:, :, :8])
    with pytest.raises(ValueError, match="sinkhorn: length L=41 exceeds max_len=40"):
        m(*qkv(41))
    with pytest.raises(ValueError, match="built for head_dim=8"):
        m(q[..., :4], k[..., :4], v)


# ----------------------------------------------------------------------------- Synthesizer
def test_dense_equals_the_reference_and_reads_only_its_own_query():
    m = synthesizer("dense")
    q, k, v = qkv(12, seed=10)
    mask = pad_mask(12)
    for causal in (False, True):
        logits = dense_logits_reference(q, m.w1, m.b1, m.w2, m.b2, 12)
        want = synthesizer_attention_reference(logits, v, mask, causal)
        torch.testing.assert_close(m(q, k, v, key_padding_mask=mask, causal=causal), want)
    out = m(q, k, v)
    q2 = q.clone()
    q2[:, :, 5] += 1.0  # only row 5 of the weights changes
    out2 = m(q2, rand(*k.shape, seed=99), v)  # other keys: ignored
    changed = (out2 - out).abs().amax(dim=(0, 1, 3)) > 1e-12  # (L,)
    assert changed.tolist() == [i == 5 for i in range(12)]


@pytest.mark.parametrize("variant", ["random", "fixed_random"])
def test_random_equals_the_reference_and_ignores_queries_and_keys(variant):
    m = synthesizer(variant)
    for L, S, causal in ((12, 12, False), (12, 12, True), (7, 12, False), (5, 12, True), (12, 5, True)):
        q, k, v = qkv(L, S, seed=11)
        mask = pad_mask(S)
        off = S - L if causal else 0
        rows = (torch.arange(L) + off).clamp_min(0)
        want = synthesizer_attention_reference(m.R[None, :, rows, :S], v, mask, causal)
        got = m(q, k, v, key_padding_mask=mask, causal=causal)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(m(rand(*q.shape, seed=1), rand(*k.shape, seed=2), v, key_padding_mask=mask,
                                     causal=causal), got)


def test_random_is_learned_and_fixed_random_is_not():
    learned, fixed = synthesizer("random").train(), synthesizer("fixed_random").train()
    assert [n for n, _ in learned.named_parameters()] == ["R"]
    assert list(fixed.parameters()) == [] and "R" in fixed.state_dict()
    q, k, v = qkv(12)
    v.requires_grad_(True)
    learned(q, k, v).square().sum().backward()
    assert learned.R.grad is not None and learned.R.grad[:, :12, :12].abs().sum() > 0
    assert (learned.R.grad[:, 12:] == 0).all() and (learned.R.grad[:, :, 12:] == 0).all()  # rows / columns unused
    fixed(q, k, v).sum().backward()
    assert v.grad is not None and not fixed.R.requires_grad


def test_dense_uses_the_first_outputs_of_its_mlp():
    m = synthesizer("dense")  # max_len 16
    q, k, v = qkv(10, seed=12)
    out = m(q, k, v)
    with torch.no_grad():
        m.w2[..., 10:] = 7.0
        m.b2[..., 10:] = 7.0
    torch.testing.assert_close(m(q, k, v), out)


@pytest.mark.parametrize("variant", ["dense", "random"])
def test_synthesizer_step_equals_the_causal_pass(variant):
    m = synthesizer(variant)
    q, k, v = qkv(10, seed=13)
    full, state = m(q, k, v, causal=True), None
    for t in range(10):
        y, state = m.step(q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1], state)
        torch.testing.assert_close(y[:, :, 0], full[:, :, t])
    with pytest.raises(ValueError, match="key length S=17 exceeds max_len=16"):
        for _ in range(7):
            y, state = m.step(q[:, :, :1], k[:, :, :1], v[:, :, :1], state)


@pytest.mark.parametrize("variant", ["dense", "random"])
@pytest.mark.parametrize(("L", "S", "causal"), [(20, 20, False), (20, 12, False), (20, 20, True), (12, 20, True),
                                                (20, 12, True)])
def test_synthesizer_flop_formula_equals_the_flop_counter(variant, L, S, causal):
    m = build("synthesizer", {"head_dim": D, "n_heads": H, "max_len": 20}, variant=variant).eval()
    q, k, v = (x.float() for x in qkv(L, S))
    f = attention_flops(m, B=B, H=H, q_axes=L, k_axes=S, D=D, Dv=DV, causal=causal)
    assert f.matmul == counted(m, q, k, v, causal)


def test_synthesizer_option_errors_and_refusals():
    sizes = {"head_dim": D, "n_heads": H, "max_len": 16}
    with pytest.raises(ValueError, match="synthesizer: variant='factorized'; allowed: dense, random, fixed_random"):
        build("synthesizer", sizes, variant="factorized")
    with pytest.raises(ValueError, match=r"synthesizer: dropout=-0.1 must be in \[0, 1\)"):
        build("synthesizer", sizes, dropout=-0.1)
    with pytest.raises(ValueError, match="synthesizer: head_dim=8, n_heads=3 and max_len=0 must be >= 1"):
        build("synthesizer", {**sizes, "max_len": 0})
    q, k, v = qkv(12, 17)
    with pytest.raises(ValueError, match="key length S=17 exceeds max_len=16"):
        synthesizer("dense")(q, k, v)
    q, k, v = qkv(17, 12)
    synthesizer("dense")(q, k, v)  # dense: any number of queries
    synthesizer("random")(q, k, v, causal=True)  # causal: query i reads row i + S - L
    with pytest.raises(ValueError, match="query length L=17 exceeds max_len=16"):
        synthesizer("random")(q, k, v)
    with pytest.raises(ValueError, match="built for n_heads=3, got 2 heads"):
        synthesizer("dense")(q[:, :2], k[:, :2], v[:, :2])

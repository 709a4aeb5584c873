"""The fixed-pattern sparse entries: ``sparse_transformer`` (fixed / strided), ``longformer`` and ``bigbird``.

Each fast kernel equals its dense-mask reference (float64) for every variant, causal and not, with padded keys; each
dense pattern equals the paper's definition written out element by element; the kernels keep their memory below
L^2; causal runs do not depend on later tokens at block sizes that matter; options are validated; FLOP formulas
equal FlopCounterMode where the kernels are blocked (the registry-wide test runs the defaults, which at its 100 tokens
leave BigBird with two global blocks, i.e. dense)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from attnbench import attention
from attnbench.attention.bigbird import (
    BigBirdAttention,
    bigbird_attention,
    bigbird_attention_reference,
    bigbird_block_mask,
    bigbird_mask,
    random_blocks,
)
from attnbench.attention.block_sparse import n_blocks
from attnbench.attention.flops import attention_flops
from attnbench.attention.longformer import (
    LongformerAttention,
    longformer_attention,
    longformer_attention_reference,
    longformer_mask,
)
from attnbench.attention.sparse_transformer import (
    SparseTransformerAttention,
    sparse_transformer_attention,
    sparse_transformer_attention_reference,
    sparse_transformer_mask,
)

B, H, D, DV = 2, 3, 5, 4
LENGTHS = (1, 7, 12, 37, 64)  # shorter than a block, not multiples of the blocks, a multiple
TIGHT = {"atol": 1e-12, "rtol": 1e-12}


def rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def inputs(L: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """q, k, v (float64) and a padding mask: row 0 with a random third of its keys padded (garbage in them), row 1
    all padding."""
    q, k, v = rand(B, H, L, D, seed=seed), rand(B, H, L, D, seed=seed + 1), rand(B, H, L, DV, seed=seed + 2)
    keep = torch.rand(B, L, generator=torch.Generator().manual_seed(seed + 3)) > 1 / 3
    keep[1] = False
    pad = ~keep[:, None, :, None]
    return q, k.masked_fill(pad, 50.0), v.masked_fill(pad, -70.0), keep


ST_CASES = [("fixed", 4, 1), ("fixed", 5, 0), ("fixed", 3, 2), ("fixed", 50, 10), ("strided", 1, 0),
            ("strided", 3, 0), ("strided", 4, 0), ("strided", 50, 0)]


# ----------------------------------------------------------------------------- fast kernel == dense reference
@pytest.mark.parametrize(("pattern", "stride", "c"), ST_CASES)
def test_sparse_transformer_equals_its_dense_reference(pattern, stride, c):
    for L, causal, padded in itertools.product(LENGTHS, (False, True), (False, True)):
        q, k, v, keep = inputs(L, seed=L)
        m = keep if padded else None
        torch.testing.assert_close(sparse_transformer_attention(q, k, v, pattern, stride, c, m, causal),
                                   sparse_transformer_attention_reference(q, k, v, pattern, stride, c, m, causal),
                                   **TIGHT)


@pytest.mark.parametrize(("window", "n_global"), [(0, 0), (2, 0), (2, 1), (3, 2), (20, 1), (70, 3), (1, 30)])
def test_longformer_equals_its_dense_reference(window, n_global):
    """Windows narrower than one block, wider than the 64-query block (several key blocks per side), n_global 0,
    more global tokens than the sequence holds."""
    for L, causal, padded in itertools.product(LENGTHS + (150,), (False, True), (False, True)):
        q, k, v, keep = inputs(L, seed=L)
        m = keep if padded else None
        torch.testing.assert_close(longformer_attention(q, k, v, window, n_global, m, causal),
                                   longformer_attention_reference(q, k, v, window, n_global, m, causal), **TIGHT)


@pytest.mark.parametrize(("block_size", "n_random"), [(1, 1), (2, 2), (3, 1), (4, 3), (5, 0), (64, 3)])
def test_bigbird_equals_its_dense_reference(block_size, n_random):
    for L, causal, padded in itertools.product(LENGTHS, (False, True), (False, True)):
        q, k, v, keep = inputs(L, seed=L)
        m = keep if padded else None
        rnd = random_blocks(n_blocks(L, block_size), n_random, H, seed=L, causal=causal)
        torch.testing.assert_close(bigbird_attention(q, k, v, block_size, rnd, m, causal),
                                   bigbird_attention_reference(q, k, v, block_size, rnd, m, causal), **TIGHT)


def test_modules_run_the_pure_functions_and_padded_rows_give_zeros():
    q, k, v, keep = inputs(37)
    cases = [(SparseTransformerAttention("strided", stride=4), lambda c: sparse_transformer_attention_reference(
                 q, k, v, "strided", 4, 0, keep, c)),
             (LongformerAttention(window=3, n_global=2), lambda c: longformer_attention_reference(
                 q, k, v, 3, 2, keep, c)),
             (BigBirdAttention(block_size=4, n_random=2, seed=5), lambda c: bigbird_attention_reference(
                 q, k, v, 4, random_blocks(10, 2, H, 5, c), keep, c))]
    for att, ref in cases:
        for causal in (False, True):
            out = att.double()(q, k, v, key_padding_mask=keep, causal=causal)
            torch.testing.assert_close(out, ref(causal), **TIGHT)
            assert (out[1] == 0).all()  # the fully padded row


# ----------------------------------------------------------------------------- the patterns, as the papers write them
def test_sparse_transformer_masks_are_the_papers_sets():
    """Child et al. (sec. 4.3), element by element: strided A(1) = {max(0, i - l), ..., i}, A(2) = {j: (i - j) mod l
    = 0} (causal); fixed A(1) = {j: floor(j / l) = floor(i / l)}, A(2) = {j: j mod l in {l - c, ..., l}} read modulo
    l as LRA reads it (its first position, 0 = l mod l, and its last c); non-causal: both directions."""
    L = 23
    for l, c, causal in itertools.product((1, 3, 5, 30), (0, 1, 2), (False, True)):  # noqa: E741
        strided, fixed = torch.zeros(L, L, dtype=torch.bool), torch.zeros(L, L, dtype=torch.bool)
        summary = {x % l for x in range(l - c, l + 1)}
        for i, j in itertools.product(range(L), range(L)):
            near = (max(0, i - l) <= j <= i) if causal else abs(i - j) <= l
            strided[i, j] = (near or (i - j) % l == 0) and (j <= i or not causal)
            fixed[i, j] = (j // l == i // l or j % l in summary) and (j <= i or not causal)
        assert torch.equal(sparse_transformer_mask(L, "strided", l, c, causal), strided)
        if c < l:
            assert torch.equal(sparse_transformer_mask(L, "fixed", l, c, causal), fixed)


def test_longformer_and_bigbird_masks_are_the_papers_sets():
    L = 19
    for w, g, causal in itertools.product((0, 1, 4), (0, 1, 3), (False, True)):
        want = torch.tensor([[(abs(i - j) <= w or j < g or i < g) and (j <= i or not causal) for j in range(L)]
                             for i in range(L)])
        assert torch.equal(longformer_mask(L, w, g, causal), want)
    b, nb = 3, 7  # 21 positions; random blocks from the table
    for causal in (False, True):
        rnd = random_blocks(nb, 2, 2, seed=1, causal=causal)
        layout = bigbird_block_mask(nb, rnd, causal)
        glob = {0} if causal else {0, nb - 1}
        for h, n, m in itertools.product(range(2), range(nb), range(nb)):
            near = (n - 1 <= m <= n) if causal else abs(n - m) <= 1
            want = near or m in glob or n in glob or m in rnd[h, n].tolist()
            assert bool(layout[h, n, m]) == want, (h, n, m, causal)
        tokens = bigbird_mask(nb * b - 1, b, rnd, causal)  # the last block one short
        i, j = torch.arange(nb * b - 1)[:, None], torch.arange(nb * b - 1)[None, :]
        want = layout[:, i // b, j // b] & ((j <= i) | (not causal))
        assert torch.equal(tokens, want)


def test_fast_kernels_give_weight_exactly_on_the_pattern():
    """v = identity: row i of the output is query i's weights; they are > 0 exactly on the pattern's real keys."""
    L = 30
    q, k, _, keep = inputs(L, seed=7)
    eye = torch.eye(L, dtype=torch.float64).expand(B, H, L, L)
    rnd = random_blocks(n_blocks(L, 3), 1, H, 0, False)
    cases = [(sparse_transformer_attention(q, k, eye, "fixed", 4, 1, keep), sparse_transformer_mask(L, "fixed", 4, 1,
              False)), (sparse_transformer_attention(q, k, eye, "strided", 4, 0, keep),
                        sparse_transformer_mask(L, "strided", 4, 0, False)),
             (longformer_attention(q, k, eye, 2, 1, keep), longformer_mask(L, 2, 1, False)),
             (bigbird_attention(q, k, eye, 3, rnd, keep), bigbird_mask(L, 3, rnd, False)[None])]
    for w, allowed in cases:
        assert torch.equal(w > 0, (allowed & keep[:, None, None, :]).expand(B, H, L, L))


# ----------------------------------------------------------------------------- random blocks
def test_bigbird_random_blocks_are_legal_seeded_and_length_independent_when_causal():
    nb, r = 40, 3
    for causal in (False, True):
        rnd = random_blocks(nb, r, 4, seed=0, causal=causal)  # (H, nb, r)
        assert rnd.shape == (4, nb, r)
        n = torch.arange(nb)[None, :, None]
        ok = rnd >= 0
        if causal:
            legal = (rnd >= 1) & (rnd <= n - 2)
            assert torch.equal(ok.sum(-1), (n[..., 0] - 2).clamp(0, r).expand(4, nb))  # row n: n - 2 legal blocks
        else:
            legal = (rnd >= 1) & (rnd <= nb - 2) & ((rnd - n).abs() > 1)
            assert not ok[:, [0, nb - 1]].any() and ok[:, 1:nb - 1].all()  # global rows have none
        assert (legal | ~ok).all()
        picked = rnd.masked_fill(~ok, -1).sort(-1).values
        assert ((picked[..., 1:] != picked[..., :-1]) | (picked[..., 1:] < 0)).all()  # distinct in a row
        assert torch.equal(rnd, random_blocks(nb, r, 4, seed=0, causal=causal))  # seeded
        assert not torch.equal(rnd, random_blocks(nb, r, 4, seed=1, causal=causal))
        assert not torch.equal(rnd[0], rnd[1])  # heads differ
    short = random_blocks(17, r, 4, seed=0, causal=True)
    assert torch.equal(short, random_blocks(nb, r, 4, seed=0, causal=True)[:, :17])  # prefix-consistent
    # spread: over many rows the draws cover the legal range, not a few favourites
    many = random_blocks(400, 3, 1, seed=2, causal=True)[0, 200:]
    assert many.unique().numel() > 150


def test_bigbird_seed_changes_the_output_and_rand_must_fit_the_length():
    q, k, v, _ = inputs(64)
    outs = [BigBirdAttention(block_size=4, n_random=2, seed=s).double()(q, k, v) for s in (0, 0, 1)]
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    with pytest.raises(ValueError, match="rand has 3 rows, the length 64 has 16 blocks of 4"):
        bigbird_attention(q, k, v, 4, torch.full((H, 3, 2), -1))


# ----------------------------------------------------------------------------- causal: no look-ahead
@pytest.mark.parametrize("att", [SparseTransformerAttention("fixed", stride=4, c=1),
                                 SparseTransformerAttention("strided", stride=3),
                                 LongformerAttention(window=3, n_global=2),
                                 BigBirdAttention(block_size=3, n_random=2)], ids=lambda a: a.name)
def test_causal_output_at_i_equals_the_prefix_run(att):
    """At block sizes far below the length (the CAB pattern test runs the defaults at 50 tokens: one block)."""
    q, k, v, keep = inputs(40, seed=3)
    att = att.double()
    full = att(q, k, v, key_padding_mask=keep, causal=True)
    for i in (0, 1, 5, 11, 12, 26, 39):
        part = att(q[:, :, :i + 1], k[:, :, :i + 1], v[:, :, :i + 1], key_padding_mask=keep[:, :i + 1], causal=True)
        torch.testing.assert_close(part[:, :, i], full[:, :, i], **TIGHT)
    assert not torch.allclose(att(q, k, v, key_padding_mask=keep), full)  # non-causal does look ahead


def test_end_padding_changes_nothing_where_the_pattern_ignores_the_length():
    """Sparse Transformer's and Longformer's patterns do not depend on L: a row padded at the end gives its real
    tokens the output of the unpadded row. BigBird's last block is global, so its non-causal pattern moves with the
    padded length (as HF's, which pads to whole blocks); causal BigBird does not move."""
    q, k, v = rand(B, H, 30, D, seed=4), rand(B, H, 30, D, seed=5), rand(B, H, 30, DV, seed=6)
    keep = torch.arange(30)[None] < torch.tensor([30, 19])[:, None]  # row 1: 19 real tokens
    for att, causal_only in ((SparseTransformerAttention("fixed", 4, 1), False),
                             (SparseTransformerAttention("strided", 4), False), (LongformerAttention(3, 2), False),
                             (BigBirdAttention(3, 2), True)):
        att = att.double()
        for causal in (True,) if causal_only else (False, True):
            out = att(q, k, v, key_padding_mask=keep, causal=causal)[1, :, :19]
            alone = att(q[1:, :, :19], k[1:, :, :19], v[1:, :, :19], causal=causal)[0]
            torch.testing.assert_close(out, alone, **TIGHT)
    att = BigBirdAttention(3, 2).double()
    assert not torch.allclose(att(q, k, v, key_padding_mask=keep)[1, :, :19],
                              att(q[1:, :, :19], k[1:, :, :19], v[1:, :, :19])[0])


# ----------------------------------------------------------------------------- memory and gradients
class LargestTensor(TorchDispatchMode):
    """The largest number of elements of any tensor an op returns while active."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def largest_tensor(fn) -> int:
    """The most elements of any tensor created by ``fn()`` and the backward of its sum."""
    with LargestTensor() as seen:
        fn().sum().backward()
    return seen.largest


@pytest.mark.parametrize(("name", "opts"), [("sparse_transformer", {"pattern": "strided", "stride": 32}),
                                            ("sparse_transformer", {"pattern": "fixed", "stride": 64, "c": 4}),
                                            ("longformer", {"window": 16}), ("bigbird", {"block_size": 16})])
def test_no_tensor_of_length_squared(name, opts):
    """Forward and backward at L = 2048 (B = H = 1), causal and not: no op returns anything near L^2 elements (the
    fixed pattern's scores, L (l + (c + 1) L / l), are its quadratic part, here L^2 / 9)."""
    L = 2048
    att = attention.build(name, **opts)
    q, k, v = (torch.randn(1, 1, L, 8, requires_grad=True) for _ in range(3))
    for causal in (False, True):
        assert largest_tensor(lambda c=causal: att(q, k, v, causal=c)) < L * L // 8, causal
    # the check catches a dense pattern: the reference builds (L, L) masks and scores
    assert largest_tensor(lambda: longformer_attention_reference(q, k, v, 16, 1)) >= L * L


@pytest.mark.parametrize("att", [SparseTransformerAttention("fixed", stride=3, c=1),
                                 SparseTransformerAttention("strided", stride=3),
                                 LongformerAttention(window=2, n_global=1),
                                 BigBirdAttention(block_size=2, n_random=1)], ids=lambda a: a.name)
def test_gradcheck(att):
    L = 11
    q, k, v, keep = inputs(L, seed=9)
    keep[1, :3] = True  # a row with a few real keys (an all-padded row has zero output and zero gradient)
    args = tuple(x[:1, :1].clone().requires_grad_() for x in (q, k, v))
    att = att.double()
    for causal in (False, True):
        def fn(a, b, c, causal=causal):
            return att(a, b, c, key_padding_mask=keep[1:], causal=causal)

        assert torch.autograd.gradcheck(fn, args)


def test_dropout_applies_in_training_only():
    q, k, v, keep = inputs(24)
    for att in (SparseTransformerAttention("fixed", 4, 1, dropout=0.5), LongformerAttention(2, 1, dropout=0.5),
                BigBirdAttention(4, 1, dropout=0.5)):
        att = att.double()
        ref = att.eval()(q, k, v, key_padding_mask=keep)
        torch.manual_seed(0)
        out = att.train()(q, k, v, key_padding_mask=keep)
        assert torch.isfinite(out).all() and not torch.allclose(out, ref)
        assert (out[1] == 0).all()


# ----------------------------------------------------------------------------- options and refusals
@pytest.mark.parametrize(("cls", "kw", "match"), [
    (SparseTransformerAttention, {"pattern": "blocky"}, "pattern='blocky'; allowed: 'fixed', 'strided'"),
    (SparseTransformerAttention, {"stride": 0}, "stride=0 must be >= 1"),
    (SparseTransformerAttention, {"stride": 8, "c": 8}, r"c=8 must be in \[0, stride=8\)"),
    (SparseTransformerAttention, {"c": -1}, r"c=-1 must be in \[0, stride=50\)"),
    (SparseTransformerAttention, {"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
    (LongformerAttention, {"window": -1}, "window=-1 must be >= 0"),
    (LongformerAttention, {"n_global": -2}, "n_global=-2 must be >= 0"),
    (LongformerAttention, {"dropout": -0.1}, "dropout=-0.1"),
    (BigBirdAttention, {"block_size": 0}, "block_size=0 must be >= 1"),
    (BigBirdAttention, {"n_random": -1}, "n_random=-1 must be >= 0"),
    (BigBirdAttention, {"dropout": 2.0}, "dropout=2.0"),
])
def test_option_validation(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


def test_strided_has_no_summaries_so_c_is_not_checked_and_pure_functions_check_the_pattern():
    assert SparseTransformerAttention("strided", stride=4, c=10).stride == 4  # c is the fixed pattern's
    q = torch.randn(1, 1, 8, 4)
    for fn in (sparse_transformer_attention, sparse_transformer_attention_reference):
        with pytest.raises(ValueError, match="pattern='dense'"):
            fn(q, q, q, "dense", 4, 1)


@pytest.mark.parametrize("name", ["sparse_transformer", "longformer", "bigbird"])
def test_cross_attention_is_refused_with_the_lengths(name):
    att = attention.build(name)
    with pytest.raises(ValueError, match=rf"{name} attention needs as many queries as keys .* L=5, S=9"):
        att(torch.randn(1, 1, 5, 4), torch.randn(1, 1, 9, 4), torch.randn(1, 1, 9, 4))


# ----------------------------------------------------------------------------- FLOP formulas, blocked configurations
@pytest.mark.parametrize(("name", "opts"), [
    ("sparse_transformer", {"pattern": "fixed", "stride": 7, "c": 2}), ("sparse_transformer", {"pattern": "strided",
                                                                                                "stride": 7}),
    ("longformer", {"window": 3, "n_global": 2}), ("longformer", {"window": 70, "n_global": 0}),
    ("bigbird", {"block_size": 8, "n_random": 2}), ("bigbird", {"block_size": 16, "n_random": 0})])
def test_flop_formula_equals_flop_counter_when_blocked(name, opts):
    module = attention.build(name, **opts).eval()
    for L, causal in itertools.product((100, 257), (False, True)):
        q, k, v = torch.randn(2, 2, L, 8), torch.randn(2, 2, L, 8), torch.randn(2, 2, L, 6)
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            module(q, k, v, causal=causal)
        f = attention_flops(module, B=2, H=2, q_axes=L, D=8, Dv=6, causal=causal)
        assert f.matmul == fc.get_total_flops(), (name, opts, L, causal)

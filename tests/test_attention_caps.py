"""Every entry's declared capabilities match its behaviour (sizes, shared q/k, query mask, fp32 under autocast),
and masks go through the transformer blocks: padded batches and causal stacks."""

from __future__ import annotations

import pytest
import torch

from attnbench import attention
from attnbench.attention.registry import SIZES, AttentionBase, CapabilityError, Caps, register, with_sizes
from attnbench.layers.block import TensorBlock
from tests.test_attention_contract import AXES, NAMES, TEST_VALUES, B, D, H, L, make, padding_mask, qkv

SIZE_VALUES = {"head_dim": D, "n_heads": H, "max_len": 16}


def options(name: str) -> dict:
    """TEST_VALUES for the entry's constructor options that are not sizes (build fills those)."""
    return {p: v for p, v in TEST_VALUES.items()
            if p in attention.registry.accepted_options(attention.get(name)) and p not in SIZES}


# ----------------------------------------------------------------------------- declared caps vs behaviour
@pytest.mark.parametrize("name", NAMES)
def test_build_fills_exactly_the_declared_sizes(name):
    caps = attention.get(name).caps
    declared = [s for s, cap in SIZES.items() if getattr(caps, cap)]
    assert with_sizes(name, SIZE_VALUES, {}) == {s: SIZE_VALUES[s] for s in declared}
    assert isinstance(attention.build(name, SIZE_VALUES, **options(name)), attention.get(name))
    for s in declared:
        with pytest.raises(TypeError, match=f"{name}.*needs {s}"):
            attention.build(name, {k: v for k, v in SIZE_VALUES.items() if k != s}, **options(name))
    if caps.fixed_len:  # an option set to a value wins over the size; one left as None (yaml ???) is filled
        assert with_sizes(name, SIZE_VALUES, {"max_len": 40})["max_len"] == 40
        assert with_sizes(name, SIZE_VALUES, {"max_len": None})["max_len"] == 16
    with pytest.raises(KeyError, match="unknown size 'n_rows'"):
        with_sizes(name, {"n_rows": 2}, {})


@pytest.mark.parametrize("name", NAMES)
def test_shared_qk_where_declared(name):
    caps = attention.get(name).caps
    assert make(name).shared_qk is False  # TEST_VALUES: shared_qk=False where it is an option
    if not caps.shared_qk:
        with pytest.raises(TypeError, match="unknown option 'shared_qk'"):
            attention.build(name, SIZE_VALUES, shared_qk=True, **options(name))
        return
    att = make(name, shared_qk=True)
    assert att.shared_qk is True
    q, k, v = qkv(name)
    assert att(q, q, v).shape == v.shape
    with pytest.raises(ValueError, match=f"{name}: shared_qk=True needs the same tensor"):
        att(q, k, v)


@pytest.mark.parametrize("name", NAMES)
def test_query_padding_mask_where_declared(name):
    caps = attention.get(name).caps
    att = make(name)
    q, k, v = qkv(name)
    mask = padding_mask()  # (B, L); tensor entries: padding along the first axis of the grid, (B, *AXES)
    if caps.tensor:
        mask = torch.ones(B, *AXES, dtype=torch.bool)
        mask[0, -1], mask[1] = False, False
    if not caps.query_padding_mask:
        with pytest.raises(TypeError, match="query_padding_mask"):
            att(q, k, v, query_padding_mask=mask)
        return
    out = att(q, k, v, key_padding_mask=mask, query_padding_mask=mask)
    m = mask[:, None, ..., None]  # (B, 1, *axes, 1)
    assert (out[~m.expand_as(out)] == 0).all(), "padded queries give zeros"
    # the real queries' outputs do not depend on the padded queries (they take no slot / leave the pooling)
    q2 = torch.where(m, q, 7.0 * torch.randn_like(q))
    torch.testing.assert_close(att(q2, k, v, key_padding_mask=mask, query_padding_mask=mask), out)


@pytest.mark.parametrize("name", NAMES)
def test_fp32_entries_compute_in_fp32_and_return_the_input_dtype(name):
    """fp32: under CPU autocast (bf16 matmuls) the output equals the autocast-free one bit for bit, and bf16
    inputs give bf16 outputs equal to the fp32 computation on the same values, rounded once."""
    if not attention.get(name).caps.fp32:
        pytest.skip("not declared fp32")
    att = make(name)
    q, k, v = qkv(name)
    ref = att(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = att(q, k, v)
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    qb, kb, vb = (t.bfloat16() for t in (q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = att(qb, kb, vb)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, att(qb.float(), kb.float(), vb.float()).bfloat16())


def test_full_is_not_fp32_under_autocast():
    """The fp32 test above can fail: an entry without the flag runs its matmuls in bf16 under autocast."""
    att, (q, k, v) = make("full"), qkv("full")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = att(q, k, v)
    assert out.dtype == torch.bfloat16


def test_register_checks_the_declarations_against_the_signatures():
    class TakesHeadDim(AttentionBase):
        def __init__(self, head_dim: int) -> None:
            super().__init__()

    with pytest.raises(TypeError, match="caps.needs_head_dim=False but its constructor takes"):
        register("caps_test_head_dim")(TakesHeadDim)

    class QueryMaskUndeclared(AttentionBase):
        def forward(self, q, k, v, *, key_padding_mask=None, causal=False, query_padding_mask=None):
            return v

    with pytest.raises(TypeError, match="caps.query_padding_mask=False but its forward takes"):
        register("caps_test_query_mask")(QueryMaskUndeclared)
    assert "caps_test_head_dim" not in attention.available()

    class Fp32(AttentionBase):
        caps = Caps(fp32=True)

        def forward(self, q, k, v, *, key_padding_mask=None, causal=False):
            return q @ k.transpose(-1, -2) @ v

    with pytest.raises(TypeError, match="declares fp32=False but inherits an fp32 forward"):
        type("NotFp32", (Fp32,), {"caps": Caps()})


# ----------------------------------------------------------------------------- masks through the blocks
E, HEADS = 16, 2


def stack(name: str, n_axes: int = 1, **over) -> torch.nn.Sequential:
    """Two pre-LN blocks (RoPE on axis 0) around entry ``name``, float64, eval mode."""
    torch.manual_seed(0)
    att = {"name": name, **options(name), **over}
    if attention.get(name).caps.fixed_len:
        att["max_len"] = 32
    blocks = [TensorBlock(E, HEADS, 2 * E, n_axes, att, rope_axes=(0,),
                          per_axis_qk=attention.get(name).caps.per_axis_qk) for _ in range(2)]
    return torch.nn.Sequential(*blocks).double().eval()


def run(blocks: torch.nn.Sequential, x: torch.Tensor, **kw) -> torch.Tensor:
    for blk in blocks:
        x = blk(x, **kw)
    return x


PADDED = ["full", "linear", "performer", "local", "linformer", "smyrf"]


@pytest.mark.parametrize("name", PADDED)
def test_padded_batch_gives_the_real_tokens_the_unpadded_output(name):
    """Rows of 20 and 13 real tokens padded to 24 (garbage in the padding) through two blocks: each row's real
    tokens get the outputs of that row run alone, unpadded."""
    blocks = stack(name)
    lengths, N = [20, 13], 24
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, N, E, generator=g, dtype=torch.float64)
    keep = torch.arange(N)[None, :] < torch.tensor(lengths)[:, None]  # (B, N)
    x = torch.where(keep[..., None], x, 50.0 * torch.randn(2, N, E, generator=g, dtype=torch.float64))
    out = run(blocks, x, key_padding_mask=keep)
    for b, r in enumerate(lengths):
        torch.testing.assert_close(out[b, :r], run(blocks, x[b:b + 1, :r])[0])
    # without the mask the padding leaks into the real tokens (the mask is what makes them equal)
    assert not torch.allclose(run(blocks, x)[1, :13], out[1, :13])


def test_padded_batch_over_a_flattened_grid():
    """A (B, 3, 4, E) tensor of sequence-entry tokens: the mask is over the 12 flattened tokens."""
    blocks = stack("full", n_axes=2)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(B, 3, 4, E, generator=g, dtype=torch.float64)
    keep = torch.ones(B, 12, dtype=torch.bool)
    keep[0, 8:] = False  # the last grid row of element 0 is padding
    out = run(blocks, x, key_padding_mask=keep)
    x2 = x.clone()
    x2[0, 2] = 9.0
    torch.testing.assert_close(run(blocks, x2, key_padding_mask=keep)[0, :2], out[0, :2])
    torch.testing.assert_close(out[1], run(blocks, x[1:])[0])


@pytest.mark.parametrize("name", ["hot", "hot_linear"])
@pytest.mark.parametrize("mode", ["product", "sum"])
def test_hot_padded_along_the_sequence_axis_equals_the_unpadded_tensor(name, mode):
    """HOT's masks are padding along an axis: a (B, T, C, E) tensor with T = 9 and 6 real time steps gives the
    real positions the output of the (B, 6, C, E) tensor, through two blocks (pooling, factors, RoPE)."""
    blocks = stack(name, n_axes=2, mode=mode)
    g = torch.Generator().manual_seed(4)
    T, real, C = 9, [6, 9], 5
    x = torch.randn(2, T, C, E, generator=g, dtype=torch.float64)
    keep = (torch.arange(T)[None, :] < torch.tensor(real)[:, None])[:, :, None].expand(2, T, C)  # (B, T, C)
    x = torch.where(keep[..., None], x, 30.0 * torch.randn(2, T, C, E, generator=g, dtype=torch.float64))
    out = run(blocks, x, key_padding_mask=keep.flatten(1))
    torch.testing.assert_close(out[0, :6], run(blocks, x[:1, :6])[0])
    torch.testing.assert_close(out[1], run(blocks, x[1:])[0])
    assert not torch.allclose(run(blocks, x)[0, :6], out[0, :6])
    # a mask that is not padding along axes (one token in the middle) is refused
    bad = torch.ones(2, T, C, dtype=torch.bool)
    bad[0, 2, 3] = False
    with pytest.raises(ValueError, match="product of per-axis masks"):
        run(blocks, x, key_padding_mask=bad.flatten(1))


CAUSAL = [n for n in NAMES if attention.get(n).caps.causal and not attention.get(n).caps.tensor]


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_blocks_do_not_look_ahead(name):
    blocks = stack(name)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, L, E, generator=g, dtype=torch.float64)
    t = 6
    x2 = x.clone()
    x2[:, t + 1:] = 5.0 * torch.randn(B, L - t - 1, E, generator=g, dtype=torch.float64)
    out, out2 = run(blocks, x, causal=True), run(blocks, x2, causal=True)
    torch.testing.assert_close(out2[:, : t + 1], out[:, : t + 1])
    assert not torch.allclose(out2[:, t + 1:], out[:, t + 1:])
    assert not torch.allclose(run(blocks, x2)[:, :t + 1], run(blocks, x)[:, :t + 1]), "non-causal looks ahead"


@pytest.mark.parametrize("name", NAMES)
def test_blocks_refuse_what_the_entry_lacks(name):
    caps = attention.get(name).caps
    blocks = stack(name, n_axes=2)
    x = torch.randn(B, 3, 4, E, dtype=torch.float64)
    keep = torch.ones(B, 12, dtype=torch.bool)
    if not caps.causal:
        with pytest.raises(CapabilityError, match=f"attention {name!r} does not support causal=True; entries "
                                                  "that do: .*full"):
            run(blocks, x, causal=True)
    if not caps.key_padding_mask:
        with pytest.raises(CapabilityError, match=f"{name!r} does not support key_padding_mask=True"):
            run(blocks, x, key_padding_mask=keep)
        return
    with pytest.raises(ValueError, match=r"key_padding_mask must be a \(B, N'\) = \(2, 12\) bool tensor"):
        run(blocks, x, key_padding_mask=keep[:, :6])
    with pytest.raises(ValueError, match="bool tensor"):
        run(blocks, x, key_padding_mask=keep.float())
    assert run(blocks, x, key_padding_mask=keep).shape == x.shape



@pytest.mark.parametrize(("name", "opts"), [("full", {}), ("local", {"window": 2}),
                                            ("smyrf", {"n_hashes": 2, "cluster_size": 4})])
def test_key_slots_bound_the_keys_a_row_attends(name, opts):
    """``key_slots`` (what bench.swap reports) is the most keys a query's row gives weight to: v = identity."""
    att = make(name, **opts)
    q, k, _ = qkv(name)
    w = att(q, k, torch.eye(L).expand(B, H, L, L))  # (B, H, L, S): row i = weights of query i
    support = (w.abs() > 0).sum(-1)  # (B, H, L)
    assert int(support.max()) == attention.get(name).key_slots(opts, L)

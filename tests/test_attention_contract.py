"""Contract tests over every registered attention, skipped only by capability flags; plus the float64
equivalences of the sequence attentions (linear, performer, local, nystrom, linformer)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from attnbench import attention
from attnbench.attention.full import _mask, full_attention_reference
from attnbench.attention.linear import linear_attention, linear_attention_reference
from attnbench.attention.linformer import LinformerAttention, linformer_attention_reference
from attnbench.attention.local import LocalAttention, local_attention_reference
from attnbench.attention.nystrom import (
    NystromAttention,
    iterative_pinv,
    nystrom_attention,
    nystrom_attention_reference,
    segment_means,
)
from attnbench.attention.performer import PerformerAttention, favor_attention, favor_attention_reference
from attnbench.layers.attention import LAYER_PROVIDED, MultiAxisAttention

CONF = Path(__file__).resolve().parents[1] / "conf" / "model" / "attention"
NAMES = attention.available()
B, H, L, D, DV = 2, 2, 12, 8, 6
AXES = (3, 4)  # tensor attentions: a 3 x 4 grid of tokens (12 tokens)

# Values for constructor arguments, keyed by parameter name (never by entry): required ones (no
# default) and small sizes so the tests exercise the approximations (fewer landmarks than tokens, a
# window narrower than the sequence).
TEST_VALUES = {"head_dim": D, "max_len": 16, "k": 5, "n_landmarks": 4, "window": 2, "n_features": 16,
               # reformer: required; the layer passes separate q and k projections
               "shared_qk": False, "height": 2, "n_heads": H,
               # blocked entries (sinkhorn): 3 blocks of 4 at L = 12, not one block of the default
               "block_size": 4,
               # sparse_transformer: 4 blocks of 3 at L = 12, summary offsets {0, 2} (fixed)
               "stride": 3, "c": 1}


def make(name: str, dtype: torch.dtype = torch.float32, **over) -> attention.AttentionBase:
    """Build entry ``name`` with TEST_VALUES for the constructor arguments it has, in eval mode."""
    params = inspect.signature(attention.get(name).__init__).parameters
    kw = {p: TEST_VALUES[p] for p in params if p in TEST_VALUES}
    missing = [p for p, v in params.items() if p != "self" and v.default is inspect.Parameter.empty and p not in kw]
    assert not missing, f"add a test value for {missing} to TEST_VALUES"
    kw.update(over)
    torch.manual_seed(0)
    return attention.build(name, **kw).to(dtype).eval()


def qkv(name: str, L_: int = L, S: int = L, dtype=torch.float32, seed: int = 0, requires_grad: bool = False):
    """Inputs of the right layout: (B,H,L,D) sequences, or (B,H,*AXES,D) for tensor attentions."""
    g = torch.Generator().manual_seed(seed)
    tensor = attention.get(name).caps.tensor
    qs, ks = ((*AXES,), (*AXES,)) if tensor else ((L_,), (S,))
    q = torch.randn(B, H, *qs, D, generator=g, dtype=dtype)
    k = torch.randn(B, H, *ks, D, generator=g, dtype=dtype)
    v = torch.randn(B, H, *ks, DV, generator=g, dtype=dtype)
    return tuple(t.requires_grad_(requires_grad) for t in (q, k, v))


def padding_mask(S: int = L) -> torch.Tensor:
    """(B, S): element 0 has its last third padded, element 1 is all padding."""
    m = torch.ones(B, S, dtype=torch.bool)
    m[0, 2 * S // 3:] = False
    m[1] = False
    return m


sequence_only = [pytest.param(n, marks=pytest.mark.skipif(attention.get(n).caps.tensor,
                                                           reason="tensor attention")) for n in NAMES]


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_determinism(name):
    att = make(name)
    q, k, v = qkv(name)
    out = att(q, k, v)
    assert out.shape == (B, H, *q.shape[2:-1], DV)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out, att(q, k, v)), "two eval-mode calls differ"


@pytest.mark.parametrize("name", NAMES)
def test_cross_attention_shapes_or_refusal(name):
    caps = attention.get(name).caps
    att = make(name)
    if caps.tensor:
        q = torch.randn(B, H, 2, 5, D)  # queries on another grid than keys (3 x 4)
        k, v = torch.randn(B, H, *AXES, D), torch.randn(B, H, *AXES, DV)
        expect = (B, H, 2, 5, DV)
    else:
        q, k, v = qkv(name, L_=7, S=L)
        expect = (B, H, 7, DV)
    if caps.cross_attention:
        assert att(q, k, v).shape == expect
    else:
        with pytest.raises(ValueError, match=name):
            att(q, k, v)


@pytest.mark.parametrize("name", NAMES)
def test_outputs_and_gradients_are_finite(name):
    caps = attention.get(name).caps
    att = make(name).train()
    q, k, v = qkv(name, requires_grad=True)
    kw = {}
    if caps.key_padding_mask and not caps.tensor:
        kw["key_padding_mask"] = padding_mask()  # includes a batch element with every key padded
    for causal in (False, True) if caps.causal else (False,):
        out = att(q, k, v, causal=causal, **kw)
        assert torch.isfinite(out).all()
        out.square().sum().backward()
        for t in (q, k, v):
            assert t.grad is not None and torch.isfinite(t.grad).all()
            t.grad = None
        grads = [p.grad for p in att.parameters()]
        assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sequence_only)
def test_padded_keys_change_nothing_and_dead_rows_are_zero(name):
    caps = attention.get(name).caps
    if not caps.key_padding_mask:
        pytest.skip("no key_padding_mask")
    att = make(name)
    q, k, v = qkv(name)
    mask = padding_mask()
    mask[0, 0] = False  # a padded key at the start too (causal: query 0 then sees no key)
    k2 = torch.where(mask[:, None, :, None], k, 3.0 * torch.randn_like(k) + 2.0)
    v2 = torch.where(mask[:, None, :, None], v, -5.0 * torch.randn_like(v))
    for causal in (False, True) if caps.causal else (False,):
        out = att(q, k, v, key_padding_mask=mask, causal=causal)
        torch.testing.assert_close(att(q, k2, v2, key_padding_mask=mask, causal=causal), out)
        visible = _mask(mask, causal, L, L, q.device).expand(B, 1, L, L)  # (B, 1, L, S)
        dead = ~visible.any(dim=-1)  # (B, 1, L) rows that see no key
        assert dead[1].all() and (dead[0, 0, 0] == causal)
        assert (out.masked_select(dead[..., None].expand_as(out)) == 0).all(), "rows with no key must be 0"


@pytest.mark.parametrize("name", sequence_only)
def test_causal_entries_ignore_future_tokens(name):
    if not attention.get(name).caps.causal:
        pytest.skip("not causal")
    att = make(name)
    q, k, v = qkv(name)
    t = 5
    q2, k2, v2 = (x.clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t + 1:] = 4.0 * torch.randn_like(x[:, :, t + 1:])
    out, out2 = att(q, k, v, causal=True), att(q2, k2, v2, causal=True)
    torch.testing.assert_close(out2[:, :, : t + 1], out[:, :, : t + 1])
    assert not torch.allclose(out2[:, :, t + 1:], out[:, :, t + 1:])


@pytest.mark.parametrize("name", NAMES)
def test_permutation_equivariance_where_declared(name):
    """Permuting the tokens permutes the outputs; permuting keys with their values changes nothing."""
    caps = attention.get(name).caps
    if not caps.permutation_equivariant:
        pytest.skip("position-dependent by design")
    att = make(name, torch.float64)
    q, k, v = qkv(name, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    if caps.tensor:  # a permutation of the first axis of the shared 3 x 4 grid
        p = torch.randperm(AXES[0], generator=g)
        torch.testing.assert_close(att(q[:, :, p], k[:, :, p], v[:, :, p]), att(q, k, v)[:, :, p])
        return
    p = torch.randperm(L, generator=g)
    mask = padding_mask()
    kw = {"key_padding_mask": mask} if caps.key_padding_mask else {}
    kw_p = {"key_padding_mask": mask[:, p]} if caps.key_padding_mask else {}
    out = att(q, k, v, **kw)
    torch.testing.assert_close(att(q[:, :, p], k[:, :, p], v[:, :, p], **kw_p), out[:, :, p])
    if caps.cross_attention:  # keys and values only
        torch.testing.assert_close(att(q, k[:, :, p], v[:, :, p], **kw_p), out)


@pytest.mark.parametrize("name", NAMES)
def test_unsupported_requests_raise(name):
    caps = attention.get(name).caps
    att = make(name)
    q, k, v = qkv(name)
    S = k.shape[2:-1].numel()
    if not caps.causal:
        with pytest.raises(ValueError, match=name):
            att(q, k, v, causal=True)
    if not caps.key_padding_mask:
        with pytest.raises(ValueError, match=name):
            att(q, k, v, key_padding_mask=torch.ones(B, S, dtype=torch.bool))
    if caps.fixed_len:
        n = TEST_VALUES["max_len"] + 1
        q, k, v = qkv(name, L_=n, S=n)
        with pytest.raises(ValueError, match=f"{name}.*{n}.*max_len={n - 1}"):
            att(q, k, v)


@pytest.mark.parametrize("name", NAMES)
def test_learned_params_flag_matches_the_built_module(name):
    has_params = any(True for _ in make(name).parameters())
    assert has_params == attention.get(name).caps.learned_params


@pytest.mark.parametrize("name", NAMES)
def test_works_inside_the_layer_under_autocast(name):
    """The layer fills head_dim; sequence entries see the 3 x 4 grid flattened (12 tokens)."""
    cls = attention.get(name)
    params = inspect.signature(cls.__init__).parameters
    opts = {p: TEST_VALUES[p] for p in params if p in TEST_VALUES and p not in LAYER_PROVIDED}
    torch.manual_seed(0)
    layer = MultiAxisAttention(2 * D, 2, n_axes=2, attention={"name": name, **opts},
                               per_axis_qk=cls.caps.per_axis_qk)
    x = torch.randn(B, *AXES, 2 * D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.shape == x.shape and y.dtype == torch.bfloat16 and torch.isfinite(y).all()


def test_one_yaml_per_registry_key():
    stems = sorted(p.stem for p in CONF.glob("*.yaml"))
    assert stems == NAMES
    for name in NAMES:
        path = CONF / f"{name}.yaml"
        assert path.read_text().startswith("# @package model.net.attention\n")
        cfg = OmegaConf.load(path)
        assert cfg.name == name
        opts = [key for key in cfg if key != "name"]
        attention.check_kwargs(name, dict.fromkeys(opts))
        params = [p for p in inspect.signature(attention.get(name).__init__).parameters if p != "self"]
        assert sorted(opts) == sorted(p for p in params if p not in LAYER_PROVIDED), f"{path} lists not every option"


# ----------------------------------------------------------------------------- equivalences (float64)
def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("Lq", "S"), [(9, 9), (5, 9), (9, 5)])
def test_linear_equals_its_quadratic_formula(causal, Lq, S):
    att = make("linear", torch.float64)
    q, k, v = rand(B, H, Lq, D, seed=1), rand(B, H, S, D, seed=2), rand(B, H, S, DV, seed=3)
    mask = padding_mask(S)
    for m in (None, mask):
        phi = torch.nn.functional.elu
        ref = linear_attention_reference(phi(q) + 1, phi(k) + 1, v, key_padding_mask=m, causal=causal)
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m, causal=causal), ref)
    # the chunked prefix sums agree with the quadratic form for every chunk size
    fq, fk = rand(B, H, Lq, 4, seed=4).abs(), rand(B, H, S, 4, seed=5).abs()
    ref = linear_attention_reference(fq, fk, v, key_padding_mask=mask, causal=causal)
    for chunk in (1, 2, 4, 64):
        torch.testing.assert_close(linear_attention(fq, fk, v, mask, causal, chunk=chunk), ref)


@pytest.mark.parametrize("causal", [False, True])
def test_local_with_a_wide_window_equals_full_attention(causal):
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, L, D, seed=2), rand(B, H, L, DV, seed=3)
    mask = padding_mask()
    for m in (None, mask):
        out = LocalAttention(window=L).double()(q, k, v, key_padding_mask=m, causal=causal)
        torch.testing.assert_close(out, full_attention_reference(q, k, v, key_padding_mask=m, causal=causal))
        # narrow window: the fast path matches the explicit band
        out = LocalAttention(window=2).double()(q, k, v, key_padding_mask=m, causal=causal)
        torch.testing.assert_close(out, local_attention_reference(q, k, v, 2, key_padding_mask=m, causal=causal))


def test_local_window_is_a_band():
    q, k = rand(1, 1, 10, D, seed=1), rand(1, 1, 10, D, seed=2)
    v = torch.eye(10, dtype=torch.float64)[None, None]  # out[i, j] = weight of key j for query i
    w = LocalAttention(window=2).double()(q, k, v)[0, 0]
    i, j = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    assert ((w > 0) == ((i - j).abs() <= 2)).all()
    w = LocalAttention(window=2).double()(q, k, v, causal=True)[0, 0]
    assert ((w > 0) == ((i - j >= 0) & (i - j <= 2))).all()


def test_iterative_pinv_converges_to_the_pseudo_inverse():
    a = torch.softmax(rand(3, 6, 6, seed=1), dim=-1)
    torch.testing.assert_close(iterative_pinv(a, 30), torch.linalg.pinv(a))
    rect = torch.softmax(rand(3, 4, 7, seed=2), dim=-1)  # m x n: a a^+ a = a
    z = iterative_pinv(rect, 30)
    torch.testing.assert_close(rect @ z @ rect, rect)
    assert (iterative_pinv(torch.zeros(2, 3, 3, dtype=torch.float64), 6) == 0).all()


def test_nystrom_with_tokens_as_landmarks_equals_full_attention():
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, L, D, seed=2), rand(B, H, L, DV, seed=3)
    mask = padding_mask()
    for m in (None, mask):
        att = NystromAttention(head_dim=D, n_landmarks=L, pinv_iters=40).double()
        ref = full_attention_reference(q, k, v, key_padding_mask=m)
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m), ref, atol=1e-5, rtol=1e-5)
    # cross attention (L != S, rectangular middle factor) too
    q7 = rand(B, H, 7, D, seed=4)
    att = NystromAttention(head_dim=D, n_landmarks=64, pinv_iters=40).double()
    torch.testing.assert_close(att(q7, k, v), full_attention_reference(q7, k, v), atol=1e-5, rtol=1e-5)


def test_nystrom_segment_landmarks_and_reference():
    x = rand(B, H, 10, D, seed=1)
    means, valid = segment_means(x, 3)  # segments [0,4), [4,7), [7,10)
    torch.testing.assert_close(means[:, :, 1], x[:, :, 4:7].mean(dim=2))
    keep = torch.ones(B, 10, dtype=torch.bool)
    keep[0, 4:7] = False
    keep[0, 0] = False
    means, valid = segment_means(x, 3, keep)
    torch.testing.assert_close(means[0, :, 0], x[0, :, 1:4].mean(dim=1))  # correct count: 3 kept tokens
    assert valid[0, 0].tolist() == [True, False, True] and valid[1].all()
    q, k, v = rand(B, H, L, D, seed=2), rand(B, H, L, D, seed=3), rand(B, H, L, DV, seed=4)
    torch.testing.assert_close(nystrom_attention(q, k, v, 4, 40, padding_mask()),
                               nystrom_attention_reference(q, k, v, 4, padding_mask()))


def test_nystrom_conv_residual():
    att = NystromAttention(head_dim=D, n_landmarks=4, conv_kernel=3).double()
    assert att.conv is not None and sum(p.numel() for p in att.parameters()) == D * 3
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, L, D, seed=2), rand(B, H, L, D, seed=3)
    base = nystrom_attention(q, k, v, 4, 6)
    with torch.no_grad():
        att.conv.weight.zero_()
        att.conv.weight[:, 0, 1] = 1.0  # identity kernel: the residual is V itself
    torch.testing.assert_close(att(q, k, v), base + v)
    with pytest.raises(ValueError, match="conv_kernel=4 must be odd"):
        NystromAttention(head_dim=D, conv_kernel=4)


def test_linformer_uses_the_first_columns_and_refuses_longer_inputs():
    att = LinformerAttention(max_len=16, k=5).double()
    q, k, v = rand(B, H, 7, D, seed=1), rand(B, H, 10, D, seed=2), rand(B, H, 10, DV, seed=3)
    mask = padding_mask(10)
    for m in (None, mask):
        ref = linformer_attention_reference(q, k, v, att.E[:, :10], att.F[:, :10], m)
        torch.testing.assert_close(att(q, k, v, key_padding_mask=m), ref)
    long = rand(B, H, 17, D, seed=4)
    with pytest.raises(ValueError, match="S=17 exceeds max_len=16"):
        att(long, long, long)


def test_performer_equals_its_quadratic_formula():
    att = make("performer", torch.float64)
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, L, D, seed=2), rand(B, H, L, DV, seed=3)
    for causal in (False, True):
        for m in (None, padding_mask()):
            torch.testing.assert_close(att(q, k, v, key_padding_mask=m, causal=causal),
                                       favor_attention_reference(q, k, v, att.proj, m, causal))


@pytest.mark.parametrize("causal", [False, True])
def test_performer_approximates_softmax_better_with_more_features(causal):
    # small inputs: the variance of positive random features grows like exp(|q|^2 + |k|^2)
    q, k, v = 0.3 * rand(4, 2, 10, D, seed=1), 0.3 * rand(4, 2, 10, D, seed=2), rand(4, 2, 10, D, seed=3)
    exact = full_attention_reference(q, k, v, causal=causal)
    errs = []
    for m in (4, 64, 2048):
        att = PerformerAttention(head_dim=D, n_features=m, seed=3).double()
        errs.append((att(q, k, v, causal=causal) - exact).abs().mean().item())
    assert errs[2] < errs[1] < errs[0]
    assert errs[2] < 0.05


def test_performer_redraw_and_redraw_every():
    att = PerformerAttention(head_dim=D, n_features=16, redraw_every=2)
    q, k, v = qkv("performer")
    p0 = att.proj.clone()
    att.eval()
    for _ in range(3):  # eval calls do not count
        att(q, k, v)
    assert torch.equal(att.proj, p0)
    att.train()
    att(q, k, v)
    att(q, k, v)
    assert torch.equal(att.proj, p0)  # the first redraw_every training calls use the initial features
    att(q, k, v)
    assert not torch.equal(att.proj, p0)
    p1 = att.proj.clone()
    att.redraw()
    assert not torch.equal(att.proj, p1)
    assert "proj" in dict(att.named_buffers())
    # the same seed draws the same features
    assert torch.equal(PerformerAttention(head_dim=D, seed=5).proj, PerformerAttention(head_dim=D, seed=5).proj)
    assert PerformerAttention(head_dim=8).n_features == 16  # int(8 ln 8)


def test_favor_attention_function_matches_module():
    att = make("performer", torch.float64)
    q, k, v = rand(B, H, L, D, seed=1), rand(B, H, L, D, seed=2), rand(B, H, L, DV, seed=3)
    torch.testing.assert_close(att(q, k, v, causal=True), favor_attention(q, k, v, att.proj, causal=True))


def test_readme_capability_table_is_current(tmp_path):
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert attention.registry.caps_table() in readme, "README's capability table is stale: run `make readme`"
    # make readme rewrites a stale block in place and leaves the rest alone
    spec = importlib.util.spec_from_file_location("update_readme", root / "scripts" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    stale = tmp_path / "README.md"
    stale.write_text("intro\n<!-- begin caps-table -->\n| old |\n<!-- end caps-table -->\nrest\n")
    assert mod.main(["--check", "--readme", str(stale)]) == 1
    assert mod.main(["--readme", str(stale)]) == 0
    assert stale.read_text() == ("intro\n<!-- begin caps-table -->\n" + attention.registry.caps_table()
                                 + "<!-- end caps-table -->\nrest\n")
    assert mod.main(["--check", "--readme", str(stale)]) == 0
    stale.write_text("no markers")
    with pytest.raises(ValueError, match="no '<!-- begin caps-table -->'"):
        mod.main(["--readme", str(stale)])

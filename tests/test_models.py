"""Layers and the forecaster: shapes, gradients, RoPE and instance-normalisation properties."""

from __future__ import annotations

import pytest
import torch

from attnbench.layers.attention import MultiAxisAttention
from attnbench.layers.rope import apply_rope
from attnbench.models.forecaster import PatchForecaster

HOT = {"name": "hot"}
FULL = {"name": "full"}
LIN = {"name": "hot_linear"}


def small(attention, **kw):
    args = dict(seq_len=32, pred_len=24, attention=attention, patch_len=4, d_model=32, n_heads=4, n_layers=2,
                d_mlp=64, dropout=0.0, per_axis_qk=attention["name"] != "full")
    args.update(kw)
    return PatchForecaster(**args)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    q, k = torch.randn(1, 8), torch.randn(1, 8)
    qs = apply_rope(q.expand(10, 8).contiguous(), 0)  # the same vector at positions 0..9
    ks = apply_rope(k.expand(10, 8).contiguous(), 0)
    s = qs @ ks.T  # (10, 10)
    torch.testing.assert_close(s[2, 5], s[4, 7])
    torch.testing.assert_close(s[0, 0], (q @ k.T)[0, 0])
    torch.testing.assert_close(qs.norm(dim=-1), q.norm().expand(10))  # rotations keep norms


@pytest.mark.parametrize("attention", [HOT, FULL, LIN])
def test_multi_axis_attention_shapes(attention):
    layer = MultiAxisAttention(32, 4, n_axes=3, attention=attention, rope_axes=(0, 2),
                               per_axis_qk=attention["name"] != "full")
    x = torch.randn(2, 3, 4, 5, 32)
    assert layer(x).shape == x.shape
    with pytest.raises(ValueError, match="expected \\(B, 3 axes, E\\)"):
        layer(torch.randn(2, 4, 5, 32))


def test_layer_refuses_bad_options():
    with pytest.raises(ValueError, match="n_heads=5 must divide d_model=32"):
        MultiAxisAttention(32, 5, 2, HOT)
    with pytest.raises(ValueError, match="per_axis_qk=True but attention 'full'"):
        MultiAxisAttention(32, 4, 2, FULL, per_axis_qk=True)
    with pytest.raises(ValueError, match="set by the layer"):
        MultiAxisAttention(32, 4, 2, {"name": "hot_linear", "head_dim": 8})
    with pytest.raises(ValueError, match="rope_axes=\\[2\\] out of range"):
        MultiAxisAttention(32, 4, 2, HOT, rope_axes=(2,))


def test_full_layer_on_one_axis_equals_hot_layer_on_one_axis():
    """With one axis, the HOT layer (pool = identity) computes exactly full attention."""
    torch.manual_seed(0)
    hot = MultiAxisAttention(32, 4, 1, HOT, rope_axes=(0,), per_axis_qk=False).double()
    full = MultiAxisAttention(32, 4, 1, FULL, rope_axes=(0,), per_axis_qk=False).double()
    full.load_state_dict(hot.state_dict())
    x = torch.randn(2, 11, 32, dtype=torch.float64)
    torch.testing.assert_close(hot(x), full(x))


@pytest.mark.parametrize("attention", [HOT, FULL, LIN, {"name": "hot", "mode": "sum"}])
@pytest.mark.parametrize("head", ["mean", "flatten"])
def test_forecaster_shapes_and_gradients(attention, head):
    torch.manual_seed(0)
    m = small(attention, head=head)
    x = torch.randn(3, 32, 5)
    y = m(x)
    assert y.shape == (3, 24, 5)
    y.square().mean().backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_instance_norm_makes_forecasts_affine_equivariant():
    torch.manual_seed(0)
    m = small(HOT).eval().double()
    x = torch.randn(2, 32, 3, dtype=torch.float64)
    a, b = 3.0, -7.0
    torch.testing.assert_close(m(a * x + b), a * m(x) + b, rtol=1e-4, atol=1e-4)


def test_variables_are_exchangeable_for_hot():
    """HOT has no variable embedding: permuting variables permutes the forecasts."""
    torch.manual_seed(0)
    m = small(HOT).eval().double()
    x = torch.randn(2, 32, 4, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(m(x[:, :, perm]), m(x)[:, :, perm])


def test_forecaster_rejects_bad_lengths():
    with pytest.raises(ValueError, match="patch_len=5 must divide seq_len=32"):
        small(HOT, patch_len=5)
    with pytest.raises(ValueError, match="input length 16 != seq_len=32"):
        small(HOT)(torch.randn(1, 16, 3))


# ----------------------------------------------------------------------------- the official HOT forecaster
def official_forecast(m: PatchForecaster, x: torch.Tensor) -> torch.Tensor:
    """Slow reference of the official HOT forecaster (eval mode), re-derived from its formula with einsum and
    the weights of ``m``: x (B, L, C) -> (B, pred_len, C).

    z = (x - mu) / sd per variable; tokens = LN(ReLU(W_e patch + b_e)) (B, C, Np, E); per block
    h = x + W_o (A_var (x)_1 A_patch (x)_2 V) + b_o on LN1(x), where A_i = softmax(q_i k_i^T / sqrt(D)),
    q_i = LN_q(sum over the other axis of Q_i) (RoPE on the patch axis), then h + W2(silu(W1 u) * W3 u),
    u = LN2(h); forecast = W_head LN_f(mean over patches) + b, de-normalised.
    """
    sd_ = {k: v for k, v in m.state_dict().items()}
    ln = torch.nn.functional.layer_norm
    B, L, C = x.shape
    E, H = m.head.in_features, m.blocks[0].attn.n_heads
    D = E // H

    def lin(t, key):  # t @ W^T + b of the Linear named key
        return t @ sd_[key + ".weight"].T + sd_[key + ".bias"]

    def norm(t, key):  # LayerNorm over the last axis with the weights named key
        return ln(t, t.shape[-1:], sd_[key + ".weight"], sd_[key + ".bias"])

    xt = x.transpose(1, 2)  # (B, C, L)
    mu = xt.mean(-1, keepdim=True)
    sd = (((xt - mu) ** 2).mean(-1, keepdim=True) + 1e-5).sqrt()
    patches = ((xt - mu) / sd).unflatten(-1, (L // m.patch_len, m.patch_len))  # (B, C, Np, P)
    h = torch.einsum("bcnp,ep->bcne", patches, sd_["embed.weight"]) + sd_["embed.bias"]
    h = ln(h.relu(), (E,), sd_["embed_post.2.weight"], sd_["embed_post.2.bias"])

    def rope(t):  # (B, N, H, D): pairs (2j, 2j+1) rotated by pos * 10000^(-2j/D); angles in float32 as the codes
        n = t.shape[1]
        ang = torch.arange(n, dtype=torch.float32)[:, None] * 10000.0 ** (-torch.arange(0, D, 2) / D)
        rot = torch.complex(ang.cos().double(), ang.sin().double())  # (N, D/2) e^{i angle}
        tc = torch.view_as_complex(t.reshape(*t.shape[:-1], D // 2, 2).contiguous())
        return torch.view_as_real(tc * rot[None, :, None]).flatten(-2)

    for i in range(len(m.blocks)):
        p = f"blocks.{i}."
        u = ln(h, (E,), sd_[p + "ln1.weight"], sd_[p + "ln1.bias"])
        q = lin(u, p + "attn.q_proj").unflatten(-1, (2, H, D))  # (B, C, Np, axis, H, D)
        k = lin(u, p + "attn.k_proj").unflatten(-1, (2, H, D))
        v = lin(u, p + "attn.v_proj").unflatten(-1, (H, D))  # (B, C, Np, H, D)
        qn, kn = p + "attn.q_norm", p + "attn.k_norm"
        q_var, k_var = norm(q[:, :, :, 0].sum(2), qn), norm(k[:, :, :, 0].sum(2), kn)  # (B, C, H, D)
        q_pat, k_pat = rope(norm(q[:, :, :, 1].sum(1), qn)), rope(norm(k[:, :, :, 1].sum(1), kn))  # (B, Np, H, D)
        a_var = torch.softmax(torch.einsum("bihd,bjhd->bhij", q_var, k_var) / D**0.5, -1)  # (B, H, C, C)
        a_pat = torch.softmax(torch.einsum("bihd,bjhd->bhij", q_pat, k_pat) / D**0.5, -1)  # (B, H, Np, Np)
        y = torch.einsum("bhij,bhnm,bjmhd->binhd", a_var, a_pat, v).flatten(-2)  # (A_var (x) A_pat) vec(V)
        h = h + lin(y, p + "attn.o_proj")
        u = ln(h, (E,), sd_[p + "ln2.weight"], sd_[p + "ln2.bias"])
        g = torch.nn.functional.silu(u @ sd_[p + "mlp.w1.weight"].T) * (u @ sd_[p + "mlp.w3.weight"].T)
        h = h + g @ sd_[p + "mlp.w2.weight"].T
    z = ln(h.mean(2), (E,), sd_["ln_f.weight"], sd_["ln_f.bias"])  # mean over patches, then LayerNorm
    y = (z @ sd_["head.weight"].T + sd_["head.bias"]) * sd + mu  # (B, C, pred_len)
    return y.transpose(1, 2)


def test_mean_head_forecaster_equals_the_official_formula():
    """head=mean is the official forecaster: mean over patches, then the final LayerNorm (not LN per token)."""
    torch.manual_seed(0)
    m = PatchForecaster(seq_len=32, pred_len=40, attention={"name": "hot", "dropout": 0.1}, d_model=32, n_heads=4,
                        n_layers=2, d_mlp=48, head="mean", dropout_layout="official").double().eval()
    with torch.no_grad():  # non-trivial LayerNorm affines everywhere
        for name, p in m.named_parameters():
            if "norm" in name or "ln" in name or name.startswith("embed_post"):
                p.add_(0.2 * torch.randn_like(p))
    x = 2 * torch.randn(3, 32, 5, dtype=torch.float64) + 1
    ref = official_forecast(m, x)
    torch.testing.assert_close(m(x), ref, rtol=0, atol=1e-10)
    # the former head (LayerNorm on each token, then the mean) is another function, which the reference rejects
    hidden = []
    m.blocks[-1].register_forward_hook(lambda mod, i, o: hidden.append(o))  # (B, C, Np, E)
    m(x)
    xt = x.transpose(1, 2)
    mu, sd = xt.mean(-1, keepdim=True), (xt.var(-1, keepdim=True, unbiased=False) + 1e-5).sqrt()
    former = (m.head(m.ln_f(hidden[0]).mean(2)) * sd + mu).transpose(1, 2)
    assert (former - ref).abs().max() > 0.1


def small_layout(layout: str, p: float = 0.3) -> PatchForecaster:
    torch.manual_seed(0)
    return small({"name": "hot", "dropout": p}, dropout=p, head="mean", dropout_layout=layout)


def test_dropout_layouts_agree_in_eval_mode():
    ours, official = small_layout("ours"), small_layout("official")
    assert ours.state_dict().keys() == official.state_dict().keys()
    official.load_state_dict(ours.state_dict())
    x = torch.randn(2, 32, 3)
    assert torch.equal(ours.eval()(x), official.eval()(x))
    # and in train mode they differ (different dropout sites)
    torch.manual_seed(1)
    a = ours.train()(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, official.train()(x))


def dropout_calls(m: PatchForecaster, x: torch.Tensor) -> list[str]:
    """Names of the nn.Dropout modules with p > 0 in call order during one training forward pass."""
    calls: list[str] = []
    hooks = [mod.register_forward_hook(lambda mod, i, o, n=name: calls.append(n))
             for name, mod in m.named_modules() if isinstance(mod, torch.nn.Dropout) and mod.p > 0]
    m.train()(x)
    for hk in hooks:
        hk.remove()
    return calls


def test_official_dropout_layout_has_the_code_dropouts():
    """Official: 4 dropouts per block (attention probabilities, proj_dropout, drop1, drop2) and the patch
    embedding ReLU -> LayerNorm -> Dropout; ours: 3 per block (probabilities, attention output, MLP)."""
    x = torch.randn(2, 32, 3)
    per_block = {
        "official": ["attn.attn.drop", "attn.attn.drop", "attn.drop", "drop_attn", "drop"],  # probs once per axis
        "ours": ["attn.attn.drop", "attn.attn.drop", "attn.drop", "drop"],
    }
    for layout, blk in per_block.items():
        m = small_layout(layout)
        expect = ["embed_post.1"] + [f"blocks.{i}.{n}" for i in range(2) for n in blk] + ["head_drop"]
        assert dropout_calls(m, x) == expect, layout
        assert len({n for n in expect if n.startswith("blocks.0.")}) == (4 if layout == "official" else 3)
        order: list[str] = []
        for mod in m.embed_post:
            mod.register_forward_hook(lambda mod, i, o, acc=order: acc.append(type(mod).__name__))
        m(x)
        want = ["ReLU", "LayerNorm", "Dropout"] if layout == "official" else ["ReLU", "Dropout", "LayerNorm"]
        assert order == want, layout
    # the official embedding ends with dropout: exact zeros at about the rate p among its outputs
    m = small_layout("official", p=0.5)
    out = []
    m.embed_post[1].register_forward_hook(lambda mod, i, o: out.append(o))
    m.train()(torch.randn(8, 32, 3))
    assert 0.4 < (out[0] == 0).float().mean() < 0.6
    with pytest.raises(ValueError, match="dropout_layout='paper'; allowed: ours, official"):
        small(HOT, dropout_layout="paper")

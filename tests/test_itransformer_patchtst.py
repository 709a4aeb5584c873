"""iTransformer and PatchTST (``models.itransformer`` / ``models.patchtst``) against their formulas written out
(patching as a loop, the normalisation's round trip, each forward as plain tensor algebra with the modules'
weights), iTransformer's equivariance over variables and PatchTST's channel independence, shapes under features M
and S, their recipes per data set (conf/recipe/), and a debug run of each through ``train.run``."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from attnbench.attention.full import full_attention_reference
from attnbench.config.checks import validate
from attnbench.errors import ConfigError
from attnbench.layers.seqblock import SeqEncoderLayer
from attnbench.models.informer import sinusoid
from attnbench.models.itransformer import ITransformer, denormalise_series, normalise_series
from attnbench.models.patchtst import PatchTST, n_patches, patches
from tests.conftest import QUICK, train_run

FULL = {"name": "full"}
B, L, P, C, F_ = 3, 24, 12, 5, 4  # small: batch, lookback, horizon, variables, calendar features
SMALL = dict(d_model=16, n_heads=4, e_layers=2, d_ff=32, dropout=0.0)


def naive_patches(x: torch.Tensor, patch_len: int, stride: int) -> torch.Tensor:
    """(B, C, L) -> (B, C, N, patch_len), one window at a time: series s padded with stride copies of s[-1]."""
    out = []
    for row in x.reshape(-1, x.shape[-1]).tolist():
        s = row + [row[-1]] * stride
        out.append([s[i:i + patch_len] for i in range(0, len(s) - patch_len + 1, stride)])
    return torch.tensor(out, dtype=x.dtype).reshape(*x.shape[:-1], -1, patch_len)


@pytest.mark.parametrize(("seq_len", "patch_len", "stride"), [(96, 16, 8), (36, 16, 8), (24, 5, 3), (10, 10, 1)])
def test_patches_are_the_padded_windows(seq_len, patch_len, stride):
    x = torch.randn(2, 3, seq_len)
    got = patches(x, patch_len, stride)
    torch.testing.assert_close(got, naive_patches(x, patch_len, stride), rtol=0, atol=0)
    # the count of the official head: int((seq_len - patch_len) / stride + 2) (models/PatchTST.py)
    assert got.shape[-2] == n_patches(seq_len, patch_len, stride) == int((seq_len - patch_len) / stride + 2)


def test_normalisation_round_trip_and_moments():
    x = torch.randn(B, L, C, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1, 3.0, 100.0]) + 50.0
    xn, mean, std = normalise_series(x)
    assert mean.shape == std.shape == (B, 1, C)
    torch.testing.assert_close(xn.mean(1), torch.zeros(B, C, dtype=torch.float64), rtol=0, atol=1e-12)
    # population variance with 1e-5 under the root: var(xn) = var / (var + 1e-5)
    var = x.var(1, unbiased=False)
    torch.testing.assert_close(xn.var(1, unbiased=False), var / (var + 1e-5))
    torch.testing.assert_close(denormalise_series(xn, mean, std), x)


def reference_encoder(h: torch.Tensor, layers: list[SeqEncoderLayer]) -> torch.Tensor:
    """Post-norm layers written out: LN(h + W_o softmax(Q K^T / sqrt(D)) V), then LN(h + W_2 gelu(W_1 h))."""
    for layer in layers:
        a = layer.attn
        q, k, v = (F.linear(h, m.weight, m.bias).unflatten(-1, (a.n_heads, -1)).transpose(1, 2)  # (B, H, N, D)
                   for m in (a.q_proj, a.k_proj, a.v_proj))
        o = full_attention_reference(q, k, v).transpose(1, 2).flatten(2)  # (B, N, E)
        h = F.layer_norm(h + F.linear(o, a.o_proj.weight, a.o_proj.bias), h.shape[-1:], layer.res1.ln.weight,
                         layer.res1.ln.bias)
        m = layer.mlp
        f = F.linear(F.gelu(F.linear(h, m.w1.weight, m.w1.bias)), m.w2.weight, m.w2.bias)
        h = F.layer_norm(h + f, h.shape[-1:], layer.res2.ln.weight, layer.res2.ln.bias)
    return h


def reference_itransformer(net: ITransformer, x: torch.Tensor, x_mark: torch.Tensor) -> torch.Tensor:
    """Section 3.1 of the paper: tokens = Embedding(X[:, n]) for every variable n (and calendar feature), the
    encoder, LayerNorm, Projection of the variable tokens, de-normalised."""
    mean, std = x.mean(1, keepdim=True), torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
    series = torch.cat([((x - mean) / std).transpose(1, 2), x_mark.transpose(1, 2)], dim=1)  # (B, C + F, L)
    h = reference_encoder(series @ net.embed.weight.T + net.embed.bias, list(net.encoder))
    h = F.layer_norm(h, h.shape[-1:], net.norm.weight, net.norm.bias)
    y = h[:, :x.shape[2]] @ net.projection.weight.T + net.projection.bias  # (B, C, pred_len)
    return y.transpose(1, 2) * std + mean


def reference_patchtst(net: PatchTST, x: torch.Tensor) -> torch.Tensor:
    """Each variable alone: its patches embedded plus the position code, the encoder, BatchNorm with the running
    statistics, the head on the d_model-major flattening, de-normalised."""
    out = torch.empty(x.shape[0], net.pred_len, x.shape[2], dtype=x.dtype)
    bn = net.norm
    for c in range(x.shape[2]):
        s = x[:, :, c]  # (B, L)
        mean, std = s.mean(1, keepdim=True), torch.sqrt(s.var(1, keepdim=True, unbiased=False) + 1e-5)
        p = naive_patches(((s - mean) / std)[:, None], net.patch_len, net.stride)[:, 0]  # (B, N, P)
        pe = sinusoid(p.shape[1], net.embed.out_features).to(x.dtype)  # (N, E)
        h = reference_encoder(p @ net.embed.weight.T + pe, list(net.encoder))  # (B, N, E)
        h = (h - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        z = h.transpose(1, 2).flatten(1)  # feature d of patch p at d * N + p
        out[:, :, c] = (z @ net.head.weight.T + net.head.bias) * std + mean
    return out


def test_itransformer_is_its_formula():
    torch.manual_seed(0)
    net = ITransformer(L, 0, P, F_, FULL, **SMALL).double().eval()
    x, x_mark = torch.randn(B, L, C, dtype=torch.float64) * 3 + 1, torch.rand(B, L, F_, dtype=torch.float64) - 0.5
    torch.testing.assert_close(net(x, x_mark), reference_itransformer(net, x, x_mark))


def test_patchtst_is_its_formula():
    torch.manual_seed(0)
    net = PatchTST(L, P, FULL, patch_len=8, stride=4, **SMALL).double()
    net.train()(torch.randn(8, L, C, dtype=torch.float64))  # move the BatchNorm statistics off their init
    net.eval()
    x = torch.randn(B, L, C, dtype=torch.float64) * 3 + 1
    torch.testing.assert_close(net(x), reference_patchtst(net, x))


def test_itransformer_is_equivariant_over_variables():
    """Variable tokens carry no position: permuting the variables permutes the forecasts (calendar tokens kept)."""
    torch.manual_seed(0)
    net = ITransformer(L, 0, P, F_, FULL, **SMALL).eval()
    x, x_mark = torch.randn(B, L, C), torch.rand(B, L, F_) - 0.5
    perm = torch.randperm(C)
    torch.testing.assert_close(net(x[:, :, perm], x_mark), net(x, x_mark)[:, :, perm])


def test_patchtst_keeps_the_variables_apart():
    """Channel independence: changing one variable's history changes its forecast only."""
    torch.manual_seed(0)
    net = PatchTST(L, P, FULL, patch_len=8, stride=4, **SMALL).eval()
    x = torch.randn(B, L, C)
    x2 = x.clone()
    x2[:, :, 2] = torch.randn(B, L)
    y, y2 = net(x), net(x2)
    assert not torch.allclose(y[:, :, 2], y2[:, :, 2])
    torch.testing.assert_close(y[:, :, [0, 1, 3, 4]], y2[:, :, [0, 1, 3, 4]], rtol=0, atol=0)


def test_calendar_tokens_are_read_only_when_asked():
    torch.manual_seed(0)
    net = ITransformer(L, 0, P, F_, FULL, calendar_tokens=False, **SMALL).eval()
    x = torch.randn(B, L, C)
    torch.testing.assert_close(net(x), net(x, torch.rand(B, L, F_), None))
    with pytest.raises(ValueError, match=r"x_mark None: expected \(3, 24, n_time_features=4\)"):
        ITransformer(L, 0, P, F_, FULL, **SMALL)(x)
    with pytest.raises(ValueError, match="input length 23 != seq_len=24"):
        PatchTST(L, P, FULL, **SMALL)(x[:, 1:])


@pytest.mark.parametrize("model", ["itransformer", "patchtst"])
@pytest.mark.parametrize(("features", "n_in", "n_targets"), [("M", 7, 7), ("S", 1, 1), ("MS", 7, 1)])
def test_the_yaml_builds_the_net_for_each_feature_mode(compose_cfg, model, features, n_in, n_targets):
    cfg = compose_cfg([f"model={model}", "data=ett", f"data.features={features}", "data.pred_len=24",
                       "model.net.d_model=16", "model.net.d_ff=16", "model.net.n_heads=2"])
    validate(cfg)
    assert cfg.model.n_targets == n_targets
    net = instantiate(cfg.model.net).eval()
    assert (net.seq_len, net.pred_len) == (96, 24)
    x = torch.randn(2, 96, n_in)
    y = net(x, torch.rand(2, 96, 4) - 0.5, torch.rand(2, 72, 4)) if model == "itransformer" else net(x)
    assert y.shape == (2, 24, n_in)


def test_the_config_check_refuses_what_the_nets_cannot_build(compose_cfg):
    with pytest.raises(ConfigError, match="model.net.attention.name='hot' is not a sequence attention"):
        validate(compose_cfg(["model=itransformer", "model/attention=hot"]))
    with pytest.raises(ConfigError, match="model.net.patch_len=200 is invalid: at most data.seq_len=96"):
        validate(compose_cfg(["model=patchtst", "model.net.patch_len=200"]))
    with pytest.raises(ConfigError, match="model.net.n_heads=3 must divide model.net.d_model=512"):
        validate(compose_cfg(["model=patchtst", "model.net.n_heads=3", "~recipe"]))
    validate(compose_cfg(["model=patchtst", "model/attention=performer"]))  # any sequence entry


# data.name -> (d_model, n_heads, e_layers, d_ff): conf/recipe/<model>.yaml, from the official scripts
RECIPES = {
    "itransformer": {"ETTh1": (256, 8, 2, 256), "ETTh2": (128, 8, 2, 128), "exchange_rate": (128, 8, 2, 128),
                     "national_illness": (512, 8, 2, 2048)},
    "patchtst": {"ETTh1": (512, 2, 1, 2048), "ETTh2": (512, 4, 3, 2048), "exchange_rate": (512, 8, 2, 2048),
                 "national_illness": (1024, 4, 4, 2048)},
}
DATA = {"ETTh1": ["data=ett"], "ETTh2": ["data=ett", "data.name=ETTh2"], "exchange_rate": ["data=exchange"],
        "national_illness": ["data=illness"]}


@pytest.mark.parametrize("model", sorted(RECIPES))
def test_each_data_set_trains_at_its_recipe(compose_cfg, model):
    """Sizes follow data.name, training is TSLib's run.py (Adam 1e-4, batch 32, 10 epochs, patience 3, no clipping);
    the command line wins; ~recipe leaves the code's defaults."""
    for name, sizes in RECIPES[model].items():
        cfg = compose_cfg([f"model={model}", *DATA[name]])
        validate(cfg)
        n = cfg.model.net
        assert (n.d_model, n.n_heads, n.e_layers, n.d_ff) == sizes, name
        assert (cfg.model.optimizer.lr, cfg.data.batch_size, cfg.trainer.max_epochs,
                cfg.callbacks.early_stopping.patience, cfg.trainer.gradient_clip_val) == (1e-4, 32, 10, 3, None), name
    assert compose_cfg([f"model={model}", "model.net.d_model=64"]).model.net.d_model == 64
    plain = compose_cfg([f"model={model}", "~recipe"])
    assert plain.recipe is None and plain.model.net.d_model == 512 and plain.trainer.max_epochs == 20


@pytest.mark.parametrize("model", ["itransformer", "patchtst"])
def test_debug_fast_trains_in_process(tmp_path, synth_data_dir, model):
    res = train_run([*QUICK, f"model={model}", "data=ett", f"paths.data_dir={synth_data_dir}",
                     "model.net.d_model=16", "model.net.d_ff=32", "model.net.n_heads=2"], tmp_path)
    assert res["status"] == "ok" and res["error"] is None
    for key in ("test/mse", "test/mae", "val/mse", "train/loss"):
        assert math.isfinite(res["metrics"][key]), key
    assert res["choices"]["model"] == model and res["choices"]["recipe"] == model
    assert OmegaConf.create(res["config"]).model.net._target_.endswith(("ITransformer", "PatchTST"))

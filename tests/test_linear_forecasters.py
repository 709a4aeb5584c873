"""DLinear and RLinear (``models.linear_forecasters``) against their formulas written as plain loops, their shapes under
features M and S, their recipes per data set (conf/recipe/), and a debug run through ``train.run``."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from attnbench.config.checks import validate
from attnbench.errors import ConfigError
from attnbench.models.linear_forecasters import DLinear, RLinear, moving_average
from tests.conftest import QUICK, train_run

B, L, P, C = 3, 20, 6, 4  # small: batch, lookback, horizon, variables


def naive_trend(x: torch.Tensor, k: int) -> torch.Tensor:
    """The centred moving average of each series, one window at a time; the ends repeat the first / last value."""
    B_, L_, C_ = x.shape
    half = (k - 1) // 2
    trend = torch.empty_like(x)
    for b in range(B_):
        for c in range(C_):
            s = x[b, :, c].tolist()
            padded = [s[0]] * half + s + [s[-1]] * half
            for t in range(L_):
                trend[b, t, c] = sum(padded[t:t + k]) / k
    return trend


def naive_maps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B, P, C): y[b, :, c] = W_c x[b, :, c] + b_c, W_c the shared (P, L) map or variable c's."""
    out = torch.empty(x.shape[0], weight.shape[-2], x.shape[2], dtype=x.dtype)
    for b in range(x.shape[0]):
        for c in range(x.shape[2]):
            w, v = (weight, bias) if weight.dim() == 2 else (weight[c], bias[c])
            out[b, :, c] = w @ x[b, :, c] + v
    return out


def randomise(net: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 and p.shape[0] == C else 0.0))


@pytest.mark.parametrize("k", [1, 5, 25])
def test_moving_average_is_the_padded_window_mean(k):
    x = torch.randn(B, L, C, dtype=torch.float64)
    torch.testing.assert_close(moving_average(x, k), naive_trend(x, k))


@pytest.mark.parametrize("individual", [False, True])
def test_dlinear_is_two_maps_on_the_decomposition(individual):
    torch.manual_seed(0)
    net = DLinear(L, P, C, moving_avg=5, individual=individual)
    assert torch.all(net.seasonal.weight == 1 / L) and torch.all(net.trend.weight == 1 / L)  # the window's mean
    net.double()
    randomise(net)
    x = torch.randn(B, L, C, dtype=torch.float64)
    trend = naive_trend(x, 5)
    seasonal = x - trend
    want = (naive_maps(seasonal, net.seasonal.weight, net.seasonal.bias)
            + naive_maps(trend, net.trend.weight, net.trend.bias))
    torch.testing.assert_close(net(x), want)
    n_maps = C if individual else 1
    assert sum(p.numel() for p in net.parameters()) == 2 * n_maps * (P * L + P)


@pytest.mark.parametrize("individual", [False, True])
def test_rlinear_is_the_map_of_the_normalised_input_denormalised(individual):
    torch.manual_seed(0)
    net = RLinear(L, P, C, individual=individual, dropout=0.3).double().eval()  # eval: no dropout
    randomise(net)
    gamma, beta = net.revin.affine_weight, net.revin.affine_bias
    x = 5 * torch.randn(B, L, C, dtype=torch.float64) + 3
    z = torch.empty_like(x)
    stats = {}
    for b in range(B):
        for c in range(C):
            s = x[b, :, c]
            mu = sum(s.tolist()) / L
            sd = math.sqrt(sum((v - mu) ** 2 for v in s.tolist()) / L + 1e-5)  # biased variance + eps
            stats[b, c] = mu, sd
            z[b, :, c] = (s - mu) / sd * gamma[c] + beta[c]
    y = naive_maps(z, net.linear.weight, net.linear.bias)
    want = torch.empty_like(y)
    for (b, c), (mu, sd) in stats.items():
        want[b, :, c] = (y[b, :, c] - beta[c]) / (gamma[c] + 1e-10) * sd + mu
    torch.testing.assert_close(net(x), want)
    n_maps = C if individual else 1
    assert sum(p.numel() for p in net.parameters()) == n_maps * (P * L + P) + 2 * C


def test_rlinear_drops_the_normalised_input_in_training_only():
    net = RLinear(L, P, C, dropout=0.5)
    x = torch.randn(B, L, C)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), net(x))
        torch.manual_seed(0)
        a = net.train()(x)
        torch.manual_seed(0)
        b = net(x)
    assert torch.equal(a, b) and not torch.allclose(a, net.eval()(x))


def test_wrong_sizes_are_refused():
    with pytest.raises(ValueError, match="moving_avg=4 must be odd"):
        DLinear(L, P, C, moving_avg=4)
    with pytest.raises(ValueError, match=r"input \(B, 19, 4\) != \(B, seq_len=20, enc_in=4\)"):
        RLinear(L, P, C)(torch.randn(B, L - 1, C))


@pytest.mark.parametrize("model", ["dlinear", "rlinear"])
@pytest.mark.parametrize(("features", "n_in", "n_targets"), [("M", 7, 7), ("S", 1, 1), ("MS", 7, 1)])
def test_the_yaml_builds_the_net_for_each_feature_mode(compose_cfg, model, features, n_in, n_targets):
    cfg = compose_cfg([f"model={model}", "data=ett", f"data.features={features}", "data.pred_len=24"])
    validate(cfg)
    assert cfg.model.n_targets == n_targets
    net = instantiate(cfg.model.net)
    assert (net.seq_len, net.pred_len, net.enc_in) == (96, 24, n_in)
    assert net(torch.randn(2, 96, n_in)).shape == (2, 24, n_in)


def test_an_even_moving_average_fails_the_config_check(compose_cfg):
    cfg = compose_cfg(["model=dlinear", "model.net.moving_avg=24"])
    with pytest.raises(ConfigError, match="model.net.moving_avg=24 is invalid: must be odd"):
        validate(cfg)


# data.name -> (lr, batch, epochs, patience, last lr milestone): conf/recipe/<model>.yaml, from the official scripts
RECIPES = {
    "dlinear": {"ETTh1": (1e-4, 32, 10, 3, 9), "ETTh2": (1e-4, 32, 10, 3, 9),
                "exchange_rate": (1e-4, 32, 10, 3, 9), "national_illness": (1e-4, 32, 10, 3, 9)},
    "rlinear": {"ETTh1": (0.005, 128, 15, 10, 14), "ETTh2": (0.005, 256, 15, 10, 14),
                "exchange_rate": (0.001, 16, 15, 10, 14), "national_illness": (0.001, 16, 15, 10, 14)},
}
DATA = {"ETTh1": ["data=ett"], "ETTh2": ["data=ett", "data.name=ETTh2"], "exchange_rate": ["data=exchange"],
        "national_illness": ["data=illness"]}


@pytest.mark.parametrize("model", sorted(RECIPES))
def test_each_data_set_trains_at_its_recipe(compose_cfg, model):
    """The model's recipe follows data.name; the command line wins over it; ~recipe leaves the shared defaults."""
    for name, (lr, batch, epochs, patience, last) in RECIPES[model].items():
        cfg = compose_cfg([f"model={model}", *DATA[name]])
        got = (cfg.model.optimizer.lr, cfg.data.batch_size, cfg.trainer.max_epochs,
               cfg.callbacks.early_stopping.patience, cfg.model.scheduler.milestones[-1])
        assert got == (lr, batch, epochs, patience, last), name
        assert cfg.model.net.individual is False
    cfg = compose_cfg([f"model={model}", "data.batch_size=8", "model.net.individual=true"])
    assert cfg.data.batch_size == 8 and cfg.model.net.individual is True
    plain = compose_cfg([f"model={model}", "~recipe"])
    assert plain.recipe is None and plain.data.batch_size == 32 and plain.trainer.max_epochs == 20
    assert compose_cfg(["model=hot"]).recipe is None  # a model without a recipe file


@pytest.mark.parametrize("model", ["dlinear", "rlinear"])
def test_debug_fast_trains_in_process(tmp_path, synth_data_dir, model):
    res = train_run([*QUICK, f"model={model}", "data=ett", f"paths.data_dir={synth_data_dir}"], tmp_path)
    assert res["status"] == "ok" and res["error"] is None
    for key in ("test/mse", "test/mae", "val/mse", "train/loss"):
        assert math.isfinite(res["metrics"][key]), key
    assert res["choices"]["model"] == model and res["choices"]["recipe"] == model
    assert res["config"]["trainer"]["max_epochs"] == 1  # debug=fast over the recipe's epochs
    assert OmegaConf.create(res["config"]).model.net._target_.endswith(("DLinear", "RLinear"))

"""The official HOT set-up: parameter counts of the composed configs, the averaged-MAE monitor, the schema
options and experiment=hot/official end to end."""

from __future__ import annotations

import functools
import logging
import math

import pytest
import torch
from hydra.utils import instantiate
from lightning import Trainer
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attnbench.config import ConfigError, ForecastingModelConfig, validate
from attnbench.lit.forecasting import ForecastingModule
from tests.conftest import FAST, train_run


def n_params(cfg) -> int:
    return sum(p.numel() for p in instantiate(cfg.model.net).parameters())


@pytest.mark.parametrize(("overrides", "count"), [
    (["model=hot"], 1_481_184),                                              # flatten head, pred 96
    (["model=hot", "data.pred_len=720"], 3_398_736),                         # flatten head, pred 720
    (["model=hot", "data.pred_len=720", "model.net.head=mean"], 1_279_056),  # the official model
    (["experiment=hot/official"], 1_279_056),
])
def test_parameter_counts_of_the_composed_configs(compose_cfg, overrides, count):
    """Only the official head (mean) at pred_len 720 has the official code's 1,279,056 parameters."""
    assert n_params(compose_cfg(overrides)) == count


def test_official_experiment_composes_with_every_official_setting(compose_cfg):
    cfg = compose_cfg(["experiment=hot/official"])
    validate(cfg)
    assert (cfg.seed, cfg.test_ckpt, cfg.trainer.max_epochs, cfg.trainer.gradient_clip_val) == (43, "last", 50, 1.0)
    assert (cfg.data.split, cfg.data.pred_len, cfg.data.batch_size, cfg.data.drop_last_train) == (
        "official", 720, 128, False)
    assert list(cfg.model.horizons) == [96, 192, 336, 720] and cfg.model.scheduler is None
    assert (cfg.model.monitor, cfg.model.monitor_mode) == ("val/mae_avg", "min")
    net = cfg.model.net
    assert (net.head, net.dropout, net.dropout_layout, net.attention.dropout) == ("mean", 0.1, "official", 0.1)
    assert (cfg.model.optimizer._target_, cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay) == (
        "torch.optim.AdamW", 1e-3, 1e-2)
    es = cfg.callbacks.early_stopping
    assert (es.monitor, es.min_delta, es.patience, es.mode) == ("val/mae_avg", 0.005, 10, "min")
    # the full-attention baseline runs under the same protocol; fp32 on a GPU too, as the code
    validate(compose_cfg(["experiment=hot/official", "model=full"]))
    assert compose_cfg(["experiment=hot/official", "trainer=gpu"]).trainer.precision == "32-true"


def test_monitor_must_be_a_logged_metric(compose_cfg):
    validate(compose_cfg(["model.monitor=val/mae_avg"]))  # one horizon
    validate(compose_cfg(["data.pred_len=192", "model.horizons=[96,192]", "model.monitor=val/mae_96"]))
    with pytest.raises(ConfigError, match="model.monitor='val/mae_avrg'.*did you mean 'val/mae_avg'.*allowed: "
                                          "val/mse, val/mae_avg, val/mae"):
        validate(compose_cfg(["model.monitor=val/mae_avrg"]))
    with pytest.raises(ConfigError, match="model.monitor='val/mae' is invalid"):  # per horizon when several
        validate(compose_cfg(["data.pred_len=192", "model.horizons=[96,192]", "model.monitor=val/mae"]))


class Repeat(nn.Module):
    """A tiny forecaster (B, L, C) -> (B, pred_len, C): a linear map over time."""

    def __init__(self, seq_len: int, pred_len: int) -> None:
        super().__init__()
        self.pred_len = pred_len
        self.lin = nn.Linear(seq_len, pred_len)

    def forward(self, x):
        return self.lin(x.transpose(1, 2)).transpose(1, 2)


@pytest.mark.parametrize("horizons", [None, [2, 3, 6]])
def test_val_mae_avg_is_the_mae_averaged_over_horizons(tmp_path, horizons):
    """val/mae_avg = mean over horizons of the exact MAE of each prefix (batches of unequal size included),
    and every monitor the schema allows is logged."""
    torch.manual_seed(0)
    L_, P, C, N = 8, 6, 3, 7
    x, y = torch.randn(N, L_, C), torch.randn(N, 4 + P, C)  # y: label_len 4 + pred_len rows, as the data module
    module = ForecastingModule(Repeat(L_, P), optimizer=functools.partial(torch.optim.AdamW), n_targets=C,
                               horizons=horizons)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path)
    (logged,) = trainer.validate(module, DataLoader(TensorDataset(x, y), batch_size=3), verbose=False)
    with torch.no_grad():
        out, tgt = module(x), y[:, -P:]
    hs = horizons or [P]
    want = sum((out[:, :h] - tgt[:, :h]).abs().mean() for h in hs) / len(hs)
    assert math.isclose(logged["val/mae_avg"], want.item(), rel_tol=1e-6)
    schema = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ForecastingModelConfig), {
        "n_targets": C, "horizons": horizons,
        "net": {"_target_": "attnbench.models.forecaster.PatchForecaster", "attention": {"name": "hot"}, "seq_len": L_,
                "pred_len": P}}))
    assert set(schema.monitors()) <= set(logged)


@pytest.mark.slow
def test_official_experiment_debug_run(tmp_path, synth_data_dir, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("lightning.pytorch"), "propagate", True)  # to caplog's root handler
    with caplog.at_level(logging.INFO):
        res = train_run([*FAST, f"paths.data_dir={synth_data_dir}", "experiment=hot/official"], tmp_path / "run")
    assert res["status"] == "ok"
    m = res["metrics"]
    for key in ("val/mae_avg", *(f"test/{k}_{h}" for k in ("mse", "mae") for h in (96, 192, 336, 720))):
        assert math.isfinite(m[key]), key
    assert "Restoring states from the checkpoint" not in caplog.text  # tested on the last weights
    assert res["config"]["data"]["split"] == "official" and res["config"]["seed"] == 43

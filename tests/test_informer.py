"""Informer's encoder-decoder forecaster (CAB's LSTF backbone): shapes, start tokens, causality, time features,
attention swaps per position, the experiment's configs, and a debug run through train.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from attnbench import attention_spec
from attnbench.analysis.reference import load_reference
from attnbench.analysis.runs import model_label
from attnbench.analysis.spec import experiment_spec
from attnbench.attention.full import FullAttention
from attnbench.attention.performer import PerformerAttention
from attnbench.attention.registry import CapabilityError
from attnbench.config import ConfigError, validate
from attnbench.data.timeseries import ForecastWindows, time_features
from attnbench.lit.forecasting import ForecastingModule
from attnbench.models.informer import InformerForecaster
from tests.conftest import QUICK, ROOT, train_multirun

FULL = {"name": "full"}
SETTINGS = sorted(p.stem for p in (ROOT / "conf" / "lstf").glob("*.yaml"))


def informer(seq_len=24, label_len=12, pred_len=8, enc_in=3, n_time_features=4, cross=FULL, **kw):
    torch.manual_seed(0)
    opts = dict(d_model=16, n_heads=2, e_layers=2, d_layers=1, d_ff=32, dropout=0.0, self_attention=FULL,
                cross_attention=cross, decoder_self_attention=FULL) | kw
    return InformerForecaster(seq_len, label_len, pred_len, enc_in, n_time_features, **opts).eval()


def inputs(net, B=2):
    g = torch.Generator().manual_seed(1)
    T = net.label_len + net.pred_len
    return (torch.randn(B, net.seq_len, net.enc_in, generator=g), torch.rand(B, net.seq_len, 4, generator=g) - 0.5,
            torch.rand(B, T, 4, generator=g) - 0.5)


def test_shapes_distilling_and_c_out():
    net = informer()
    x, xm, ym = inputs(net)
    assert net(x, xm, ym).shape == (2, 8, 3)
    assert net.encode(x, xm).shape == (2, 12, 16)  # 24 halved once by the distilling layer (e_layers=2)
    assert informer(seq_len=25, e_layers=3).encode(torch.randn(2, 25, 3), torch.zeros(2, 25, 4)).shape[1] == 7
    assert informer(distil=False).encode(x, xm).shape[1] == 24
    assert informer(c_out=1)(x, xm, ym).shape == (2, 8, 1)
    with pytest.raises(ValueError, match="label_len"):
        net(x, xm, ym[:, 1:])


def test_decoder_start_tokens_are_the_last_label_len_inputs():
    net = informer()
    x = torch.randn(2, 24, 3)
    dec = net.decoder_input(x)  # (B, label_len + pred_len, C)
    assert dec.shape == (2, 20, 3)
    torch.testing.assert_close(dec[:, :12], x[:, -12:])
    assert (dec[:, 12:] == 0).all()
    # the data's target window starts with the same label_len steps (Informer's batch_y[:, :label_len])
    data = np.random.default_rng(0).standard_normal((60, 3))
    wx, wy, _, _ = ForecastWindows(data, np.zeros((60, 4)), 24, 12, 8)[5]
    torch.testing.assert_close(wy[:12], wx[-12:])
    assert informer(label_len=0).decoder_input(x).abs().sum() == 0


def test_decoder_self_attention_is_causal():
    """Changing decoder steps >= t leaves the decoder's outputs before t unchanged (and changes those after)."""
    net = informer()
    x, xm, _ = inputs(net)
    memory = net.encode(x, xm)
    h = torch.randn(2, 20, 16)
    h2 = h.clone()
    h2[:, 9:] += torch.randn(2, 11, 16)
    a, b = net.decode(h, memory), net.decode(h2, memory)
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-3


def test_mix_reshuffles_the_decoder_self_attention_heads():
    """mix=True (the official default): with one head it changes nothing; with two it changes the output and lets
    later decoder steps reach earlier outputs (the official code's quirk)."""
    x, xm, ym = inputs(informer())
    for heads, same in ((1, True), (2, False)):
        plain, mixed = informer(n_heads=heads), informer(n_heads=heads, mix=True)
        mixed.load_state_dict(plain.state_dict())
        assert torch.allclose(plain(x, xm, ym), mixed(x, xm, ym)) == same
    memory = mixed.encode(x, xm)
    h = torch.randn(2, 20, 16)
    h2 = h.clone()
    h2[:, 15:] += 1.0
    assert (mixed.decode(h, memory)[:, :15] - mixed.decode(h2, memory)[:, :15]).abs().max() > 1e-3


def test_time_features_of_a_hand_computed_timestamp():
    """2016-07-01 13:45 (a Friday, day 183 of a leap year), Informer's timeenc=1 scaling."""
    hour, dow, dom, doy = 13 / 23 - 0.5, 4 / 6 - 0.5, 0 / 30 - 0.5, 182 / 365 - 0.5
    t = pd.DatetimeIndex(["2016-07-01 13:45:00"])
    np.testing.assert_allclose(time_features(t, "h")[0], [hour, dow, dom, doy], rtol=1e-6)
    np.testing.assert_allclose(time_features(t, "15min")[0], [45 / 59 - 0.5, hour, dow, dom, doy], rtol=1e-6)
    assert time_features(t, "10min").shape == (1, 5)


def test_cross_position_swap_and_refusal():
    full, perf = informer(), informer(cross={"name": "performer"})
    assert isinstance(perf.decoder[0].cross_attn.attn, PerformerAttention)
    assert all(isinstance(m.attn, FullAttention) for m in (perf.decoder[0].self_attn, perf.encoder[0].attn))
    assert isinstance(full.decoder[0].cross_attn.attn, FullAttention)
    perf.load_state_dict(full.state_dict(), strict=False)  # same weights (performer adds its features buffer)
    x, xm, ym = inputs(full)
    assert (full(x, xm, ym) - perf(x, xm, ym)).abs().max() > 1e-4
    with pytest.raises(CapabilityError, match="cross_attention"):
        informer(cross={"name": "local", "window": 4})


def test_forecasting_module_feeds_the_calendar_features():
    net = informer()
    opt = lambda p: torch.optim.SGD(p, lr=0.1)  # noqa: E731
    lit = ForecastingModule(net, opt, n_targets=3)
    x, xm, ym = inputs(net)
    y = torch.randn(2, 20, 3)
    assert lit.calendar
    torch.testing.assert_close(lit._predict((x, y, xm, ym))[0], net(x, xm, ym))


# CAB's tasks/LSTF/scripts/*.sh: (data set, features) -> seq/label/pred, e_layers, d_layers
CAB_SETTINGS = {
    ("ETTh1", "M"): (336, 336, 720, 2, 1), ("ETTh1", "S"): (168, 168, 720, 2, 1),
    ("ETTh2", "M"): (720, 336, 720, 2, 1), ("ETTh2", "S"): (336, 336, 720, 2, 1),
    ("ETTm1", "M"): (672, 384, 672, 2, 1), ("ETTm1", "S"): (384, 384, 672, 2, 1),
    ("weather", "M"): (720, 336, 720, 3, 2), ("weather", "S"): (720, 336, 720, 3, 2),
    ("electricity", "M"): (336, 336, 960, 3, 2), ("electricity", "S"): (336, 336, 960, 3, 2),
}


def test_settings_are_cabs_scripts():
    seen = set()
    for setting in SETTINGS:
        y = OmegaConf.load(ROOT / "conf" / "lstf" / f"{setting}.yaml")
        key = (y.data.name, y.data.features)
        got = (y.data.seq_len, y.data.label_len, y.data.pred_len, y.model.net.e_layers, y.model.net.d_layers)
        assert got == CAB_SETTINGS[key], setting
        seen.add(key)
    assert seen == set(CAB_SETTINGS)


def test_experiment_composes_and_refuses_a_cross_less_entry(compose_cfg):
    cfg = compose_cfg(["experiment=cab/lstf"])
    validate(cfg)
    d, n = cfg.data, cfg.model.net
    assert (d.name, d.features, d.seq_len, d.label_len, d.pred_len) == ("ETTh1", "M", 336, 336, 720)
    assert (n.enc_in, n.n_time_features, n.e_layers, n.d_layers, n.d_model, n.d_ff) == (7, 4, 2, 1, 512, 2048)
    assert cfg.model.optimizer.lr == 1e-4 and cfg.trainer.max_epochs == 6 and cfg.model.net.mix
    c = compose_cfg(["experiment=cab/lstf", "lstf=weather_S", "model/attention@model.net.cross_attention=performer"])
    validate(c)
    assert (c.data.seq_len, c.data.label_len, c.model.net.enc_in, c.model.net.n_time_features) == (720, 336, 1, 5)
    assert c.model.net.cross_attention.name == "performer" and c.model.net.self_attention.name == "full"
    with pytest.raises(ConfigError, match="cross_attention.name='local'.*entries that are: .*performer"):
        validate(compose_cfg(["experiment=cab/lstf", "model/attention@model.net.cross_attention=local"]))
    with pytest.raises(ConfigError, match="label_len"):
        validate(compose_cfg(["experiment=cab/lstf", "model.net.label_len=48"]))
    # each sweep's attentions are sequence entries that support their position
    for exp, position in (("cab/lstf", "cross_attention"), ("cab/lstf_ns", "self_attention")):
        params = OmegaConf.load(ROOT / "conf" / "experiment" / f"{exp}.yaml").hydra.sweeper.params
        names = str(params[f"model/attention@model.net.{position}"]).split(",")
        assert len(names) >= 6 and "full" in names
        for name in names:
            caps = attention_spec.get(name).caps
            assert caps[position] and not caps["tensor"] and not caps["fixed_len"], (exp, name)
    validate(compose_cfg(["experiment=cab/lstf_ns", "model/attention@model.net.self_attention=local"]))


def test_reference_holds_cabs_per_dataset_numbers_whose_means_are_the_paper_table():
    spec = experiment_spec("cab/lstf")
    ref = load_reference(spec.reference)
    assert experiment_spec("cab/lstf_ns").reference == spec.reference

    def mean(model, rows, metric):
        v = ref[(ref.column.isin([f"{model} (S)", f"{model} (M)"])) & ref.row.isin(rows) & (ref.metric == metric)]
        return v.value.mean()

    ett = ["ETTh1/720", "ETTh2/720", "ETTm1/672"]
    # the LSTF table of the digest (B.4): ETT MSE/MAE, Weather, ECL
    for model, (ett_mse, ett_mae, w_mse, e_mse) in {"vanilla": (1.138, 0.775, 0.478, 0.449),
                                                    "ABC": (1.147, 0.809, 0.489, 0.519),
                                                    "Performer": (1.254, 0.819, 0.463, 0.881),
                                                    "cosFormer": (1.219, 0.823, 0.474, 0.632)}.items():
        assert math.isclose(mean(model, ett, "mse"), ett_mse, abs_tol=1.5e-3)
        assert math.isclose(mean(model, ett, "mae"), ett_mae, abs_tol=1.5e-3)
        assert math.isclose(mean(model, ["WTH/720"], "mse"), w_mse, abs_tol=1.5e-3)
        assert math.isclose(mean(model, ["ECL/960"], "mse"), e_mse, abs_tol=1.5e-3)
    assert spec.baseline[0] in set(ref.column)


def test_table_label_names_the_positioned_attention():
    pos = "model/attention@model.net."
    assert model_label({"model": "informer", f"{pos}self_attention": "full", f"{pos}cross_attention": "performer"}) \
        == "informer[cross_attention=performer]"
    assert model_label({"model": "informer", f"{pos}cross_attention": "full"}) == "informer"


def test_debug_run_three_cross_attentions(tmp_path, synth_data_dir):
    """The multirun (in-process) on a synthetic ETTh1 file: full, linear (kernel) and smyrf (clustering) in the
    cross position, a local encoder self-attention (NS), features S."""
    quick = [a for a in QUICK if a != "~callbacks.rich_progress_bar"]  # callbacks=none: nothing to remove
    args = [*quick, f"paths.data_dir={synth_data_dir}", "experiment=cab/lstf", "lstf=ETTh1_S", "data.seq_len=48",
            "data.label_len=24", "data.pred_len=24", "model.net.d_model=16", "model.net.n_heads=2",
            "model.net.d_ff=32", "data.batch_size=8", "data.eval_batch_size=8",
            "model/attention@model.net.self_attention=local",
            "model/attention@model.net.cross_attention=full,linear,smyrf", "callbacks=none", "test_ckpt=last", "seed=0"]
    res = train_multirun(args, tmp_path / "sweep")
    assert len(res) == 3
    for r in res:
        assert r["status"] == "ok", r.get("error")
        assert math.isfinite(r["metrics"]["test/mse"]) and r["config"]["model"]["net"]["enc_in"] == 1
    assert sorted(r["config"]["model"]["net"]["cross_attention"]["name"] for r in res) == ["full", "linear", "smyrf"]


def _sweep(exp: str, position: str) -> list[str]:
    params = OmegaConf.load(ROOT / "conf" / "experiment" / f"{exp}.yaml").hydra.sweeper.params
    return str(params[f"model/attention@model.net.{position}"]).split(",")


@pytest.mark.parametrize(("position", "name"), [("cross_attention", n) for n in _sweep("cab/lstf", "cross_attention")]
                         + [("self_attention", n) for n in _sweep("cab/lstf_ns", "self_attention")])
def test_every_swept_entry_trains_in_its_position(position, name):
    """Each attention of the NC / NS sweeps, built from its yaml, runs forward and backward in its position (odd
    lengths after distilling included)."""
    opts = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / "attention" / f"{name}.yaml"))
    net = informer(seq_len=25, label_len=9, pred_len=7, e_layers=3, **{position: opts}).train()
    out = net(*inputs(net))
    assert out.shape == (2, 7, 3)
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

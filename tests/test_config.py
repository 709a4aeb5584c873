"""Config composition and validation: bad values fail before training, naming the key."""

from __future__ import annotations

import json
import re
import sys

import hydra
import pytest
import torch
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from attnbench import attention, cli
from attnbench.config import ConfigError, validate
from attnbench.train import run_with_results


def test_default_config_composes_and_validates(compose_cfg):
    cfg = compose_cfg()
    validate(cfg)
    assert cfg.data.name == "ETTh1" and cfg.model.net.attention.name == "hot"
    assert cfg.model.n_targets == 7  # features M on ETT: every variable is scored


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["data.pred_len=-5"], "data.pred_len=-5"),
        (["data.seq_len=0"], "data.seq_len=0"),
        (["data.label_len=200"], "data.label_len=200"),
        (["data.name=ETTh3"], "allowed: ETTh1, ETTh2"),
        (["model.net.patch_len=5"], "model.net.patch_len=5 must divide data.seq_len=96"),
        (["model.net.n_heads=6"], "model.net.n_heads=6 must divide model.net.d_model=128"),
        (["model.net.dropout=1.5"], "model.net.dropout=1.5"),
        (["model.optimizer.lr=-1"], "model.optimizer.lr=-1"),
        (["trainer.accelerator=tpu9"], "trainer.accelerator='tpu9'"),
        (["model.horizons=[96,192]"], "outside [1, data.pred_len=96]"),
        (["model/attention=full"], "per_axis_qk=true but attention 'full'"),
        (["+model.net.attention.foo=1"], "unknown option 'foo'"),
        (["model.net.attention.name=hott"], "did you mean 'hot'"),
        (["test_ckpt=middle"], "allowed: best, last"),
        (["dropout_rng=philox"], "allowed: torch, packed"),
        # a Literal annotation of the constructor: its values are the allowed ones
        (["data.features=X"], "data.features='X' is invalid; allowed: M, S, MS"),
        (["model.net.head=avg"], "model.net.head='avg' is invalid; allowed: mean, flatten"),
        (["data.split=hot"], "data.split='hot' is invalid; allowed: tslib, official"),
        (["model.net.dropout_layout=paper"], "model.net.dropout_layout='paper' is invalid; allowed: ours, official"),
        (["model=hot3d", "data=medmnist3d", "data.augment=rot"],
         "data.augment='rot' is invalid; allowed: mul, flip, none"),
        (["model=hot3d", "data=medmnist3d", "model.class_weights=inv"],
         "model.class_weights='inv' is invalid (did you mean 'inverse'?); allowed: none, inverse"),
        (["model.scheduler_interval=batch"], "model.scheduler_interval='batch' is invalid; allowed: epoch, step"),
        # an attention option: typed by the entry's constructor annotation
        (["model=full", "model/attention=local", "model.net.attention.window=abc"],
         "model.net.attention.window='abc' is invalid: attention 'local' takes int"),
        (["model.net.attention.mode=prod"], "model.net.attention.mode='prod' is invalid (did you mean 'product'?)"),
    ],
)
def test_bad_values_name_the_key(compose_cfg, overrides, needle):
    cfg = compose_cfg(overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["data.pred_lenn=3"], "pred_lenn"),  # unknown key
        (["data.batch_size=abc"], "batch_size"),  # wrong type
        (["trainer.max_epoch=3"], "max_epoch"),
    ],
)
def test_schema_rejects_while_composing(compose_cfg, overrides, needle):
    with pytest.raises((ConfigCompositionException, ValidationError, ConfigKeyError, HydraException)) as e:
        compose_cfg(overrides)
    assert needle in str(e.value) + str(e.value.__cause__)


def test_other_groups_compose(compose_cfg):
    for ov in (["model=full"], ["model/attention=hot_linear"], ["data=illness"], ["data=weather"],
               ["trainer=gpu"], ["trainer=ddp"], ["logger=wandb"], ["experiment=hot/forecasting"],
               ["model.net.attention.mode=sum"], ["data.features=MS"]):
        cfg = compose_cfg(ov)
        validate(cfg)
        if ov[0].startswith("trainer=gpu"):  # bf16-mixed or 16-mixed, decided when the run starts (torch)
            assert cfg.trainer.precision == "auto-mixed"
    assert compose_cfg(["data=illness"]).data.seq_len == 36
    assert compose_cfg(["data.features=MS"]).model.n_targets == 1


def test_cli_rejects_misspelt_group_option(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py", "model=hto"])
    with pytest.raises(SystemExit) as e:
        cli.train()
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "model=hto is not an option of the config group 'model' (did you mean model=hot?)" in err
    assert "available: bert, " in err and " full, hot, hot3d, " in err  # whatever options other tasks add


def test_a_bad_value_is_recorded_before_anything_is_built(compose_cfg, tmp_path):
    """The one check of a run (in ``train.run``) fails first: results.json says why, nothing was trained."""
    cfg = compose_cfg(["data.pred_len=-5"], output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"data\.pred_len=-5 is invalid: must be >= 1"):
        run_with_results(cfg)
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["status"] == "failed" and r["error"].startswith("ConfigError: data.pred_len=-5")
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize("name", [n for n in attention.available() if not attention.get(n).caps.tensor])
def test_every_sequence_attention_composes_builds_and_runs_in_the_forecaster(compose_cfg, name):
    """`model=full model/attention=<name>` (required options given) validates, builds and runs a forward pass."""
    tokens = 7 * 96 // 16  # ETT's 7 variables x 96 steps / patch_len 16
    required = ["model.net.attention.max_len=42"] if attention.get(name).caps.fixed_len else []
    required += {"linformer": ["model.net.attention.k=8"]}.get(name, [])
    ov = ["model=full", f"model/attention={name}", "model.net.patch_len=16", "model.net.d_model=32",
          "model.net.n_heads=2", "model.net.d_mlp=64", "model.net.n_layers=1", *required]
    cfg = compose_cfg(ov)
    validate(cfg)
    net = hydra.utils.instantiate(cfg.model.net)
    y = net(torch.randn(2, 96, 7))
    assert y.shape == (2, cfg.data.pred_len, 7) and torch.isfinite(y).all()
    assert tokens == 42
    if name == "super":
        with pytest.raises(ConfigError, match=r"model\.net\.attention\.max_len is required"):
            validate(compose_cfg([o for o in ov if "max_len" not in o]))


@pytest.mark.parametrize("trainer", ["default", "cpu"])
def test_the_trainer_defaults_are_the_projects_not_lightnings(compose_cfg, trainer):
    """The Trainer's schema takes Lightning's signature (accelerator and devices "auto", precision null); the yaml
    states the project's: one CPU device in float32."""
    t = compose_cfg([f"trainer={trainer}"]).trainer
    assert (t.accelerator, t.devices, t.precision) == ("cpu", 1, "32-true")


@pytest.mark.parametrize("key", ["trainer.default_root_dir", "model.n_targets"])
def test_values_a_yaml_must_state_are_required(compose_cfg, key):
    """Where the code's default would be silently wrong (Lightning's None for a run's folder; the forecasting
    module's 1 scored variable), the schema requires the yaml's value: a group node without it is refused."""
    from attnbench.config import SCHEMAS
    from attnbench.config.base import check_schema

    cfg = compose_cfg()
    group, name = key.split(".")
    node = OmegaConf.to_container(cfg[group], resolve=True)
    check_schema(group, SCHEMAS[node["_target_"]], node)  # as composed: fine
    del node[name]
    with pytest.raises(ConfigError, match=rf"{re.escape(key)} is required"):
        check_schema(group, SCHEMAS[node["_target_"]], node)

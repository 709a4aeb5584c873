"""Every experiment (``conf/experiment/**.yaml``) composes and passes the config check with each value its sweep
(``hydra.sweeper.params``) takes, one swept key at a time: a typo in a sweep fails here, not hours into it."""

from __future__ import annotations

import copy

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from attnbench.config import register_configs, validate
from tests.conftest import ROOT

EXPERIMENTS = sorted(str(p.relative_to(ROOT / "conf" / "experiment").with_suffix(""))
                     for p in (ROOT / "conf" / "experiment").rglob("*.yaml"))


@pytest.fixture(scope="module")
def compose_train():
    """compose(overrides, hydra=False) within one Hydra initialisation for the module (cleared after)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        yield lambda overrides, hydra=False: compose("train", overrides=overrides, return_hydra_config=hydra)
    GlobalHydra.instance().clear()


def is_group(key: str) -> bool:
    """``model``, ``model/attention@model.net.cross_attention``, ``lstf``: a config group (else a value's key)."""
    return (ROOT / "conf" / key.split("@")[0]).is_dir()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_sweep_value_composes_and_validates(compose_train, experiment, tmp_path):
    """A group's options are composed one by one; a value (seed, data.name) is set on the composed experiment as
    Hydra applies a key=value override after composing (OmegaConf.update, the schema's types checked)."""
    base = [f"experiment={experiment}", f"paths.output_dir={tmp_path}"]
    cfg = compose_train(base, hydra=True)
    params = cfg.hydra.sweeper.params or {}
    with open_dict(cfg):
        del cfg["hydra"]  # the task's config, as a run gets it
    validate(cfg)
    n = 0
    for o in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()]):
        key = o.get_key_element()
        for value in (list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]):
            job = f"{key}={value}"
            try:
                if is_group(key):
                    validate(compose_train([*base, job]))
                else:
                    one = copy.deepcopy(cfg)
                    OmegaConf.update(one, key, _parse(value), merge=True)
                    validate(one)
            except Exception as e:
                raise AssertionError(f"experiment={experiment} {job}: {type(e).__name__}: {e}") from e
            n += 1
    assert n > 1 or experiment == "treeformer/mlm", params  # every table sweeps; mlm is a step of treeformer/glue


def _parse(value: str):
    """One swept value as Hydra types it (``96`` an int, ``ETTh1`` a string)."""
    return OverridesParser.create().parse_override(f"x={value}").value()

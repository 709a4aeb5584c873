"""A baseline's recipe (conf/recipe/<model>.yaml) and the callbacks it tunes: its early-stopping patience reaches the
callback where the run has one and nothing where it has none (callbacks=none), while a user's own callback key is
still checked by name."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from attnbench.config import ConfigError, validate
from tests.conftest import ROOT

MODELS = sorted(p.stem for p in (ROOT / "conf" / "recipe").glob("*.yaml"))


def recipe_patience(model: str, data_name: str) -> int:
    """The patience the recipe file states for ``data_name`` (its own entry, else ``default``)."""
    recipe = OmegaConf.load(ROOT / "conf" / "recipe" / f"{model}.yaml").recipe
    return OmegaConf.select(recipe, f"{data_name}.patience", default=recipe.default.patience)


def test_the_five_baselines_have_recipes():
    assert MODELS == ["dlinear", "itransformer", "patchtst", "rlinear", "timesnet"]


@pytest.mark.parametrize("model", MODELS)
def test_a_recipe_without_callbacks_composes_and_validates(compose_cfg, model):
    """callbacks=none: the recipe's other values still apply, its patience reaches no callback."""
    cfg = compose_cfg([f"model={model}", "data=ett", "callbacks=none"])
    validate(cfg)
    assert not cfg.callbacks
    assert cfg.recipe.patience == recipe_patience(model, "ETTh1")
    assert cfg.trainer.gradient_clip_val is None  # the recipe is applied


@pytest.mark.parametrize("model", MODELS)
def test_a_recipe_sets_the_early_stopping_patience_of_its_data_set(compose_cfg, model):
    """With the default callbacks the recipe's patience is early stopping's; the command line wins; without the
    recipe it is the callbacks' own 3."""
    for data in (["data=ett"], ["data=illness"]):
        cfg = compose_cfg([f"model={model}", *data])
        validate(cfg)
        assert cfg.callbacks.early_stopping.patience == recipe_patience(model, cfg.data.name), data
    cfg = compose_cfg([f"model={model}", "callbacks.early_stopping.patience=7"])
    assert cfg.callbacks.early_stopping.patience == 7
    assert compose_cfg([f"model={model}", "~recipe"]).callbacks.early_stopping.patience == 3


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("overrides", "needle"), [
    (["+callbacks.early_stopping.patients=2"], "did you mean callbacks.early_stopping.patience?"),
    (["+callbacks.early_stoping.patience=2"], "callbacks.early_stoping needs a _target_"),
    (["callbacks=none", "+callbacks.early_stopping.patience=2"], "callbacks.early_stopping needs a _target_"),
])
def test_a_users_misspelt_callback_key_still_fails(compose_cfg, model, overrides, needle):
    """A misspelt option, a misspelt callback name, or an option of a callback the run does not have."""
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate(compose_cfg([f"model={model}", "data=ett", *overrides]))

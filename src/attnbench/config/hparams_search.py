"""``hparams_search``: an Optuna search (``conf/hparams_search/<name>.yaml``, ``hydra/sweeper=optuna``), checked once
before its first trial (``check_search``, from ``attnbench.sweep.SweepSummary``) and after each trial's run
(``check_trial``, from ``train.run_with_results``: a trial without a finite value fails, its results.json says why).

The sweeper's own node (``hydra.sweeper``: sampler, direction, n_trials, ...) is typed by the plugin's structured
config, so a misspelt sweeper option fails while composing. What it cannot see is checked here: every searched key
names a key of the composed config (a misspelt ``model.optimizer.lrr`` would otherwise fail every trial, one by
one), the direction is the monitored metric's (``model.monitor_mode``), a metric to optimise is named, and no seed
is searched as if it were a hyper-parameter. Each trial's config is then checked as any run's (``checks.validate``):
a sampled value out of range fails that trial, and the study goes on.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnbench.config.base import choice
from attnbench.errors import ConfigError

# model.monitor_mode -> Optuna's direction (the checkpoint callback and early stopping read the same mode)
DIRECTIONS = {"min": "minimize", "max": "maximize"}
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def optuna_direction(mode: str) -> str:
    """``${optuna_direction:${model.monitor_mode}}``: ``min`` -> ``minimize``, ``max`` -> ``maximize``."""
    choice("model.monitor_mode", mode, DIRECTIONS)
    return DIRECTIONS[mode]


def is_search(config: DictConfig) -> bool:
    """Whether the sweep of ``config`` (with its ``hydra`` node) is an Optuna search."""
    return str(OmegaConf.select(config, "hydra.sweeper._target_", default="")) == OPTUNA_SWEEPER


def search_overrides(config: DictConfig) -> dict[str, Any]:
    """The sweep's parameters as the Optuna sweeper reads them: ``hydra.sweeper.params``, then the command line's
    overrides, a later one replacing an earlier one of the same key; ``{key: hydra Override}``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    args = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    return {o.get_key_element(): o for o in OverridesParser.create().parse_overrides([*params, *args])}


def _missing_key(config: DictConfig, key: str) -> str | None:
    """Why ``key`` (dotted) names no key of ``config``, with the closest key where it stops; None if it does."""
    node: Any = config
    for depth, part in enumerate(key.split(".")):
        if not isinstance(node, DictConfig):
            return f"{'.'.join(key.split('.')[:depth])} is not a mapping"
        keys = [str(k) for k in node]
        if part not in keys:
            where = ".".join(key.split(".")[:depth])
            close = difflib.get_close_matches(part, keys, n=1)
            hint = f" (did you mean {where + '.' if where else ''}{close[0]}?)" if close else ""
            return f"{where or 'the config'} has no key {part!r}{hint}"
        node = node._get_node(part)  # the node itself: no interpolation resolved, a ??? value still a key
    return None


def check_search(config: DictConfig) -> None:
    """An Optuna sweep's settings, before its first trial (``config``: the composed config with its ``hydra``
    node); raise ConfigError naming the key and the fix."""
    if not is_search(config):
        return
    metric = config.get("optimized_metric")
    if not metric:
        raise ConfigError("optimized_metric=null: a search needs the metric its trials return (the hparams_search "
                          "configs set optimized_metric=${model.monitor}_best)")
    choices = config.hydra.runtime.choices
    given = set(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    for name, o in search_overrides(config).items():
        key = o.key_or_group
        if (o.input_line in given and not o.is_sweep_override()) or key.split(".")[0] == "hydra" or key in choices:
            continue  # applied while composing (Hydra checked it), Hydra's own, a config group (model/attention=)
        if o.is_add() or o.is_force_add() or o.is_delete():
            continue  # a new key (+key=...) or a deletion: Hydra checks them in each trial
        why = _missing_key(config, key)
        if why is not None:
            raise ConfigError(f"the search parameter {name}={o.input_line.split('=', 1)[-1]} names no key of the "
                              f"config: {why}; fix it in hydra.sweeper.params (conf/hparams_search/) or on the "
                              "command line")
        if key == "seed" and o.is_sweep_override():
            raise ConfigError(f"seed={o.input_line.split('=', 1)[-1]} would be searched as a hyper-parameter (an "
                              "experiment's seeds: hydra.sweeper.params.seed); give every trial one seed: seed=0")
    monitor, mode = config.model.get("monitor"), config.model.get("monitor_mode")
    direction = config.hydra.sweeper.get("direction")
    direction = getattr(direction, "name", direction)  # the plugin's Direction enum or its name
    if mode in DIRECTIONS and metric in (monitor, f"{monitor}_best") and direction != DIRECTIONS[mode]:
        raise ConfigError(f"hydra.sweeper.direction={direction} but optimized_metric={metric} follows "
                          f"model.monitor_mode={mode}: set hydra.sweeper.direction={DIRECTIONS[mode]}, or leave it to "
                          "the hparams_search config (${optuna_direction:${model.monitor_mode}})")


class TrialFailed(RuntimeError):
    """A trial of a search ended without a finite value of ``optimized_metric`` (diverged, or never validated)."""


def in_search() -> bool:
    """Whether this job is a trial of an Optuna search (Hydra's config of the running job says so)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and str(HydraConfig.get().sweeper.get("_target_")) == OPTUNA_SWEEPER


def check_trial(cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """In a trial of a search, ``metrics[cfg.optimized_metric]`` must be a finite number: else raise TrialFailed,
    so that results.json says status failed and why, and Optuna marks the trial FAIL (outside a search: nothing)."""
    key = cfg.get("optimized_metric")
    if not key or not in_search():
        return
    value = metrics.get(key)
    if value is None:
        shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in sorted(metrics) if k.startswith("val/")) or "none"
        raise TrialFailed(f"optimized_metric={key} is not among the run's metrics (val metrics: {shown}): no "
                          "validation ran or none was finite, or no checkpoint callback monitors it "
                          "(callbacks.model_checkpoint)")
    if not math.isfinite(value):
        raise TrialFailed(f"optimized_metric {key}={value}: the run diverged (a smaller model.optimizer.lr, or "
                          "trainer.gradient_clip_val, keeps it finite)")

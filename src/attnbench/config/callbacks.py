"""``callbacks``: the Lightning callbacks the config tree uses and our own, their options typed from the installed
source (``from_code``), with our checks on top. An entry of another ``_target_`` is checked only for having one;
its constructor checks its options."""

from typing import Any

from omegaconf import DictConfig, open_dict

from attnbench.config.base import ENTRY, Checked, by_target, choice, from_code, need

LIGHTNING = "lightning.pytorch.callbacks"


@from_code(f"{LIGHTNING}.ModelCheckpoint")
class ModelCheckpointConfig(Checked):
    def check(self) -> None:
        choice(f"{ENTRY}.mode", self.mode, ["min", "max"])
        need(self.save_top_k >= -1, f"{ENTRY}.save_top_k", self.save_top_k, "must be >= 0, or -1 (keep all)")
        need(self.save_last in (None, True, False, "link"), f"{ENTRY}.save_last", self.save_last,
             'true, false, null or "link"')
        for k in ("every_n_train_steps", "every_n_epochs"):
            v = getattr(self, k)
            need(v is None or v >= 0, f"{ENTRY}.{k}", v, "must be >= 0 or null")


@from_code(f"{LIGHTNING}.EarlyStopping")
class EarlyStoppingConfig(Checked):
    def check(self) -> None:
        choice(f"{ENTRY}.mode", self.mode, ["min", "max"])
        need(self.patience >= 0, f"{ENTRY}.patience", self.patience,
             "must be an int >= 0 (validation checks without improvement before stopping)")
        need(self.min_delta >= 0, f"{ENTRY}.min_delta", self.min_delta, "must be >= 0")


@from_code("attnbench.callbacks.ModelSummary")  # Lightning's ModelSummary without the all-zero FLOPs column
class ModelSummaryConfig(Checked):
    def check(self) -> None:
        need(self.max_depth >= -1, f"{ENTRY}.max_depth", self.max_depth, "must be >= -1")


class ProgressBar(Checked):
    def check(self) -> None:
        need(self.refresh_rate >= 0, f"{ENTRY}.refresh_rate", self.refresh_rate, "must be >= 0")


@from_code(f"{LIGHTNING}.RichProgressBar")
class RichProgressBarConfig(ProgressBar):
    pass


@from_code(f"{LIGHTNING}.TQDMProgressBar")
class TQDMProgressBarConfig(ProgressBar):
    pass


@from_code(f"{LIGHTNING}.LearningRateMonitor")
class LearningRateMonitorConfig(Checked):
    pass


def check_tree_bootstrap(order: str, steps_per_stage: Any, start_height: int, layers_per_stage: int,
                         layer_order: str, key: str = "callbacks.tree_bootstrap") -> None:
    """The options of ``attnbench.lit.treeformer.TreeBootstrap`` (its constructor calls this too: one copy of the
    checks, here because ``config`` is torch-free); the allowed values are its constructor's Literals."""
    allowed = TreeBootstrapConfig.__choices__
    choice(f"{key}.order", order, allowed["order"])
    choice(f"{key}.layer_order", layer_order, allowed["layer_order"])
    is_int = isinstance(steps_per_stage, int) and not isinstance(steps_per_stage, bool)
    need((is_int and steps_per_stage >= 1) or (isinstance(steps_per_stage, float) and 0 < steps_per_stage <= 1),
         f"{key}.steps_per_stage", steps_per_stage,
         "an int >= 1 (optimizer steps per stage) or a float in (0, 1] (fraction of the run's steps)")
    need(start_height >= 0, f"{key}.start_height", start_height, "must be >= 0 (0: one leaf)")
    need(layers_per_stage >= 1, f"{key}.layers_per_stage", layers_per_stage, "must be >= 1")


@from_code("attnbench.lit.treeformer.TreeBootstrap")
class TreeBootstrapConfig(Checked):
    def check(self) -> None:
        check_tree_bootstrap(self.order, self.steps_per_stage, self.start_height, self.layers_per_stage,
                             self.layer_order, ENTRY)


def check_progress_log(every_n_steps: int, enabled: bool | str, key: str = "callbacks.progress_log") -> None:
    """The options of ``attnbench.progress.ProgressLog`` (its constructor calls this too)."""
    need(isinstance(every_n_steps, int) and not isinstance(every_n_steps, bool) and every_n_steps >= 1,
         f"{key}.every_n_steps", every_n_steps, "must be an int >= 1 (optimizer steps between two lines)")
    need(enabled == "auto" or isinstance(enabled, bool), f"{key}.enabled", enabled,
         "auto (log when no progress bar is shown, as when stdout is not a terminal), true or false")


@from_code("attnbench.progress.ProgressLog")
class ProgressLogConfig(Checked):
    def check(self) -> None:
        check_progress_log(self.every_n_steps, self.enabled, ENTRY)


CALLBACK_SCHEMAS: dict[str, type] = {
    **by_target(ModelCheckpointConfig, EarlyStoppingConfig, ModelSummaryConfig, RichProgressBarConfig,
                TQDMProgressBarConfig, LearningRateMonitorConfig, TreeBootstrapConfig, ProgressLogConfig),
    # Lightning's own summaries take the options ours inherits
    f"{LIGHTNING}.ModelSummary": ModelSummaryConfig, f"{LIGHTNING}.RichModelSummary": ModelSummaryConfig,
}
PROGRESS_BARS = (RichProgressBarConfig._target_, TQDMProgressBarConfig._target_)


def drop_disabled_progress_bar(cfg: DictConfig, interactive: bool) -> list[str]:
    """With ``trainer.enable_progress_bar=false``, or when stdout is not a terminal (logs, SLURM), remove the
    progress-bar callbacks and switch the bar off (Lightning refuses a bar callback with the bar disabled, and a
    Rich bar in a log file prints one line per metric). Returns the removed callback names."""
    if cfg.trainer.get("enable_progress_bar") is not False and interactive:
        return []
    cbs = cfg.get("callbacks") or {}
    gone = [k for k, v in cbs.items() if v is not None and v.get("_target_") in PROGRESS_BARS]
    with open_dict(cfg):
        for k in gone:
            del cfg.callbacks[k]
        cfg.trainer.enable_progress_bar = False
    return gone

"""``logger``: Lightning's CSV and W&B loggers, their options typed from the installed source (``from_code``); the
W&B logger's ``**kwargs`` go to ``wandb.init``, whose keywords are options too. ``conf/logger/wandb.yaml`` builds
Lightning's W&B logger through ``WANDB_LOGGER`` (W&B optional: ``attnbench.lit.wandb_logger``), checked by the
same schema."""

from attnbench.config.base import ENTRY, Checked, by_target, from_code, need


@from_code("lightning.pytorch.loggers.CSVLogger")
class CSVLoggerConfig(Checked):
    def check(self) -> None:
        need(self.flush_logs_every_n_steps >= 1, f"{ENTRY}.flush_logs_every_n_steps", self.flush_logs_every_n_steps,
             "must be >= 1")


@from_code("lightning.pytorch.loggers.WandbLogger", forwards="wandb.init")
class WandbLoggerConfig(Checked):
    def check(self) -> None:
        need(self.log_model in (True, False, "all"), f"{ENTRY}.log_model", self.log_model, 'true, false or "all"')


WANDB_LOGGER = "attnbench.lit.wandb_logger.wandb_logger"  # Lightning's WandbLogger(**options), or a warning
LOGGER_SCHEMAS: dict[str, type] = {**by_target(CSVLoggerConfig, WandbLoggerConfig), WANDB_LOGGER: WandbLoggerConfig}

"""``trainer``: Lightning's Trainer, its options typed from the installed Lightning's source (``from_code``); the
checks are ours: the values this project runs with (accelerators, precisions incl. ``auto-mixed``, devices) and
Lightning's batch-limit semantics stated before anything starts."""

from typing import Any

from omegaconf import MISSING

from attnbench.config.base import Checked, choice, from_code, need
from attnbench.errors import ConfigError

# "auto-mixed" (trainer=gpu) becomes bf16-mixed or 16-mixed when the run starts (``hardware.amp_precision``); null:
# Lightning's default (32-true)
PRECISIONS = ["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64", "auto-mixed", None]
ACCELERATORS = ["cpu", "gpu", "cuda", "mps", "auto"]


def check_limit(key: str, value: Any) -> None:
    """Lightning's batch limits: an int is a number of batches, a float a fraction of the loader."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}={value!r} is invalid: an int (number of batches) or a float in [0.0, 1.0] "
                          "(fraction of the loader), or null")
    if isinstance(value, int):
        need(value >= 0, key, value, "an int is a number of batches and must be >= 0 (0 disables the loop)")
    else:
        need(0.0 <= value <= 1.0, key, value, "a float is a fraction of the loader and must lie in [0.0, 1.0]; "
             f"for a number of batches write an int ({key}={int(value)})")


def check_devices(value: Any) -> None:
    """``trainer.devices``: a count >= 1, -1 (all), "auto", a list of device indices or a string of them."""
    allowed = 'an int >= 1, -1 (all), "auto", a list of device indices [0, 1] or a string "0,1"'
    if isinstance(value, int) and not isinstance(value, bool):
        ok = value >= 1 or value == -1
    elif isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        ok = value == "auto" or bool(parts) and all(p.lstrip("-").isdigit() for p in parts)
    elif isinstance(value, list | tuple):
        ok = len(value) > 0 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)
        value = list(value)
    else:
        ok = False
    need(ok, "trainer.devices", value, allowed)


def at_least(key: str, value: Any, low: int, allowed: str) -> None:
    """An int option that is null (Lightning's default) or >= ``low``."""
    need(value is None or value >= low, f"trainer.{key}", value, allowed)


@from_code("lightning.pytorch.Trainer", omit=("logger", "callbacks"))  # the logger and callbacks groups fill these
class TrainerConfig(Checked):
    default_root_dir: str | None = MISSING  # every run's own folder (conf/trainer/default.yaml: paths.output_dir)

    def check(self) -> None:
        choice("trainer.accelerator", self.accelerator, ACCELERATORS)
        choice("trainer.precision", self.precision, PRECISIONS)
        check_devices(self.devices)
        for k in ("max_epochs", "max_steps"):
            v = getattr(self, k)
            need(v is None or v >= 1 or v == -1, f"trainer.{k}", v, "must be >= 1, or -1 (no limit)")
        at_least("min_epochs", self.min_epochs, 0, "must be >= 0")
        at_least("num_nodes", self.num_nodes, 1, "must be >= 1")
        at_least("accumulate_grad_batches", self.accumulate_grad_batches, 1, "must be >= 1 (1 = no accumulation)")
        at_least("check_val_every_n_epoch", self.check_val_every_n_epoch, 1, "must be >= 1 or null")
        at_least("num_sanity_val_steps", self.num_sanity_val_steps, -1, "must be >= 0, or -1 (the whole val loader)")
        at_least("log_every_n_steps", self.log_every_n_steps, 1, "must be >= 1")
        at_least("gradient_clip_val", self.gradient_clip_val, 0, "must be >= 0 or null")
        for k in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"):
            check_limit(f"trainer.{k}", getattr(self, k))
        v = self.val_check_interval
        if isinstance(v, float):
            check_limit("trainer.val_check_interval", v)
        elif isinstance(v, int) and not isinstance(v, bool):
            need(v >= 1, "trainer.val_check_interval", v, "an int is a number of training batches and must be >= 1; "
                 "a float in (0, 1] is a fraction of an epoch")

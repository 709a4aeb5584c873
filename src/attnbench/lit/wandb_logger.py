"""W&B logging that never fails a run, and the test artefacts it shows.

``conf/logger/wandb.yaml`` builds Lightning's ``WandbLogger`` through ``wandb_logger`` (options checked by
``config.logger.WandbLoggerConfig``, Lightning's and ``wandb.init``'s keywords). W&B is optional: where the logger
cannot be built (wandb not installed, an invalid combination such as ``offline`` with ``log_model``) or
``wandb.init`` raises (no API key, no network, an unknown entity), the run says so in one warning and goes on with
its CSV log. ``log_images`` puts a job's test plots (``lit.artifacts``) into its W&B run as images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import DummyLogger, Logger

log = logging.getLogger(__name__)


class _Off:
    """A W&B run that takes every call and attribute chain (``run.config.update(...)``) and does nothing."""

    def __getattr__(self, name: str) -> _Off:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


class OptionalWandbLogger(WandbLogger):
    """Lightning's ``WandbLogger`` whose run, when ``wandb.init`` raises, is ``_Off`` (one warning, no retry)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            try:
                return super().experiment
            except Exception as e:  # W&B is optional: whatever wandb.init raises, training goes on
                log.warning("logger=wandb: wandb.init failed (%s: %s); this run goes on without W&B (metrics: "
                            "csv/metrics.csv). Offline: WANDB_MODE=offline; no W&B: logger=csv", type(e).__name__,
                            str(e).splitlines()[0] if str(e) else "")
                self._experiment, self._log_model = _Off(), False
        return self._experiment

    @property
    def off(self) -> bool:
        """Whether ``wandb.init`` failed (nothing reaches W&B)."""
        return isinstance(self._experiment, _Off)


def wandb_logger(**kwargs: Any) -> Logger:
    """``OptionalWandbLogger(**kwargs)`` (keywords: ``conf/logger/wandb.yaml``, checked by its schema), or a logger
    that does nothing, with one warning, where it cannot be built."""
    try:
        return OptionalWandbLogger(**kwargs)
    except Exception as e:  # wandb not installed (ModuleNotFoundError), or a combination Lightning refuses
        log.warning("logger=wandb: no W&B logger (%s: %s); this run goes on without W&B (metrics: csv/metrics.csv)",
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return DummyLogger()


def log_images(trainer: L.Trainer, images: dict[str, Path]) -> None:
    """Each ``{key: png}`` as a ``wandb.Image`` into the trainer's W&B runs (none: nothing to do); a failure to
    log is one warning, never an error."""
    for lg in trainer.loggers:
        if not isinstance(lg, WandbLogger) or (isinstance(lg, OptionalWandbLogger) and lg.off):
            continue
        for key, path in images.items():
            try:
                lg.log_image(key=key, images=[str(path)], step=trainer.global_step)
            except Exception as e:
                log.warning("W&B: %s (%s) not logged: %s: %s", key, path, type(e).__name__, e)

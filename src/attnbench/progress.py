"""Progress as log lines, for runs without a terminal (``nohup``, SLURM, CI): there the progress bar is off
(``config.drop_disabled_progress_bar``) and a run would say nothing from the model summary to the test table.

``ProgressLog`` (``callbacks.progress_log``) logs, on rank 0, one line every ``every_n_steps`` optimizer steps and
one at the end of each validation::

    step 150 | epoch 3/10, batch 30/60 | train/loss 0.41 | val/mse 0.39 | 12.3 steps/s | ETA epoch 0:00:02, run 0:00:41
    validation, step 180 | epoch 3/10, batch 60/60 | train/loss 0.41 | val/mse 0.38 | 12.1 steps/s | ETA run 0:00:38

through this module's ``logging`` logger (Hydra's console and the run's log file).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch

from attnbench.config.callbacks import check_progress_log

log = logging.getLogger(__name__)


def hms(seconds: float | None) -> str:
    """``H:MM:SS`` (hours not wrapped at a day); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def steps_left(trainer: L.Trainer, batch_idx: int) -> tuple[float, float]:
    """(optimizer steps left in this epoch, in the run) after batch ``batch_idx`` of the epoch; ``inf`` where the
    run does not bound it (no ``max_epochs`` / ``max_steps``, or a training loader without a length).

    An epoch has ``ceil(num_training_batches / accumulate_grad_batches)`` steps (``num_training_batches`` is after
    ``limit_train_batches``; Lightning steps at the epoch's end even when the accumulation is short); the run ends
    at ``max_epochs`` or ``max_steps``, whichever comes first.
    """
    batches, accumulate = trainer.num_training_batches, max(1, trainer.accumulate_grad_batches)
    per_epoch = math.ceil(batches / accumulate) if math.isfinite(batches) else math.inf
    epoch = max(0, per_epoch - math.ceil((batch_idx + 1) / accumulate)) if math.isfinite(per_epoch) else math.inf
    by_epochs = math.inf
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0:
        later = max(0, max_epochs - trainer.current_epoch - 1)  # whole epochs after this one
        by_epochs = epoch + (later * per_epoch if later else 0)  # (0 * inf would be nan)
    max_steps = trainer.max_steps
    by_steps = max(0, max_steps - trainer.global_step) if max_steps is not None and max_steps >= 0 else math.inf
    run = min(by_epochs, by_steps)
    return min(epoch, run), run


class ProgressLog(L.Callback):
    """A log line every ``every_n_steps`` optimizer steps and at each validation end (not the sanity check), on
    rank 0: the global step; epoch and batch in it; the train loss (mean over the batches since the previous line;
    at a validation, over the epoch so far; rank 0's batches); the monitored metric once a validation logged it;
    steps per second since the previous line (validation time left out); ETA of the epoch and of the run.

    The run's ETA counts the steps left to ``trainer.max_epochs`` / ``max_steps`` (whichever ends it first; early
    stopping can end it sooner) at that rate, plus the validation time still to come at the mean per epoch so far.

    ``enabled``: ``auto`` logs when no progress bar is shown (always the case when stdout is not a terminal:
    ``config.drop_disabled_progress_bar`` removes the bar there), so a terminal user sees no duplicate; ``true``
    always; ``false`` never. ``monitor``: the metric to show (null: the checkpoint callback's monitor).
    """

    clock = staticmethod(time.monotonic)  # seconds; a test sets a fake one on the instance

    def __init__(self, every_n_steps: int = 50, enabled: bool | str = "auto", monitor: str | None = None) -> None:
        check_progress_log(every_n_steps, enabled)
        self.every_n_steps, self.enabled, self.monitor = every_n_steps, enabled, monitor
        self.active = False
        self._reset_window(0.0, 0)
        self._val_s = 0.0  # validation seconds of this fit (sanity check excluded)
        self._val_start: float | None = None
        self._fit_step0 = 0  # the global step this fit started at (a resumed fit: the checkpoint's)
        self._epoch_loss: Any = 0.0
        self._epoch_n = 0
        self._rate: float | None = None  # steps/s of the last full window

    @staticmethod
    def wanted(enabled: bool | str, bar_shown: bool) -> bool:
        """Whether lines are logged: ``auto`` when no progress bar is shown."""
        return enabled is True or (enabled == "auto" and not bar_shown)

    # ------------------------------------------------------------------ bookkeeping
    def _reset_window(self, now: float, step: int) -> None:
        self._t0, self._step0, self._paused = now, step, 0.0
        self._loss: Any = 0.0
        self._n = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.active = trainer.is_global_zero and self.wanted(self.enabled, trainer.progress_bar_callback is not None)
        if self.monitor is None and trainer.checkpoint_callback is not None:
            self.monitor = getattr(trainer.checkpoint_callback, "monitor", None)
        if self.active:
            why = "no progress bar" if self.enabled == "auto" else "callbacks.progress_log.enabled=true"
            log.info("progress: a line every %d steps and at each validation (%s)", self.every_n_steps, why)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._reset_window(self.clock(), trainer.global_step)
        self._val_s, self._rate, self._fit_step0 = 0.0, None, trainer.global_step

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_loss, self._epoch_n = 0.0, 0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_start = self.clock()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.active:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            loss = loss.detach().float()  # summed on its device: read (a sync) only when a line is logged
            self._loss, self._n = self._loss + loss, self._n + 1
            self._epoch_loss, self._epoch_n = self._epoch_loss + loss, self._epoch_n + 1
        step = trainer.global_step
        if step // self.every_n_steps > self._step0 // self.every_n_steps:
            now = self.clock()
            seconds = now - self._t0 - self._paused
            if step > self._step0 and seconds > 0:
                self._rate = (step - self._step0) / seconds
            log.info("%s", self.line(trainer, batch_idx, self._mean(self._loss, self._n)))
            self._reset_window(now, step)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._val_start is None:
            return
        start, took = self._val_start, self.clock() - self._val_start
        seconds = start - self._t0 - self._paused  # training seconds of the window so far
        if trainer.global_step > self._step0 and seconds > 0:  # the steps/s since the previous line
            self._rate = (trainer.global_step - self._step0) / seconds
        self._val_s += took
        self._paused += took  # not training time: left out of the steps/s of the window
        self._val_start = None
        if self.active:
            batch_idx = trainer.fit_loop.epoch_loop.batch_progress.current.completed - 1
            log.info("validation, %s", self.line(trainer, batch_idx, self._mean(self._epoch_loss, self._epoch_n),
                                                 validation=True))

    # ------------------------------------------------------------------ the line
    @staticmethod
    def _mean(total: Any, n: int) -> float | None:
        return float(total) / n if n else None

    def eta(self, trainer: L.Trainer, batch_idx: int) -> tuple[float | None, float | None]:
        """Seconds to the end of the epoch and of the run at the last measured rate (None: not known yet); the
        run's includes the validation to come at its mean per epoch trained so far in this fit."""
        if not self._rate:
            return None, None
        epoch, run = steps_left(trainer, batch_idx)
        run_s = run / self._rate
        per_epoch = math.ceil(trainer.num_training_batches / max(1, trainer.accumulate_grad_batches))
        trained = (trainer.global_step - self._fit_step0) / per_epoch if math.isfinite(per_epoch) else 0.0
        if self._val_s and trained > 0 and math.isfinite(run):
            run_s += run / per_epoch * self._val_s / trained
        return epoch / self._rate, run_s

    def line(self, trainer: L.Trainer, batch_idx: int, loss: float | None, validation: bool = False) -> str:
        """``step 150 | epoch 2/10, batch 30/60 | train/loss 0.4123 | val/mse 0.3981 | 12.3 steps/s | ETA ...``
        (epochs and batches counted from 1; a part not known yet is left out)."""
        max_epochs = trainer.max_epochs
        epochs = f"/{max_epochs}" if max_epochs is not None and max_epochs >= 0 else ""
        batches = trainer.num_training_batches
        of = f"/{batches}" if math.isfinite(batches) else ""
        parts = [f"step {trainer.global_step}", f"epoch {trainer.current_epoch + 1}{epochs}, batch {batch_idx + 1}{of}"]
        if loss is not None:
            parts.append(f"train/loss {loss:.4g}")
        value = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if value is not None:
            parts.append(f"{self.monitor} {float(value):.4g}")
        if self._rate:
            parts.append(f"{self._rate:.3g} steps/s")
        epoch_s, run_s = self.eta(trainer, batch_idx)
        if run_s is not None:
            epoch_left, _ = steps_left(trainer, batch_idx)
            shown = [] if validation and epoch_left == 0 else [f"epoch {hms(epoch_s)}"]
            parts.append("ETA " + ", ".join([*shown, f"run {hms(run_s)}"]))
        return " | ".join(parts)

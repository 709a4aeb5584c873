"""Lightning callbacks of our own (imported when the run builds its callbacks; this module loads Lightning).

``ModelSummary``: Lightning's summary without an all-zero FLOPs column. Stopping by signal: save a checkpoint,
exit non-zero, and say what stopped the run.

Lightning turns SIGTERM (a kill, a SLURM preemption or time limit) into ``SIGTERMException`` at the next batch
boundary, a ``SystemExit`` with no code (exit status 0), and Ctrl+C (SIGINT) into ``sys.exit(1)``. ``SaveOnSignal``
writes the state at that point to ``<dirpath>/last.ckpt`` (what ``ckpt_path=`` and a requeued SLURM job resume
from), and ``stopped`` maps both exits to ``RunStopped``: exit status 128 + signal number and a message naming the
signal and the checkpoint. Under submitit (``hydra/launcher=slurm``) its USR2 requeue handler is deferred to the
same batch boundary, after the checkpoint is saved. During fit, Ctrl+C takes the same path (a flag read at the next
batch boundary) instead of a KeyboardInterrupt raised wherever the main thread is: an exception thrown into a
library holding a lock (logging, a data loader, a checkpoint write) can leave the run hung on its way out. A second
Ctrl+C stops at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import ModelSummary as _LightningModelSummary
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

log = logging.getLogger(__name__)


class ModelSummary(_LightningModelSummary):
    """Lightning's text model summary, into the log (file and console), without the FLOPs column and total when
    nothing was counted: Lightning counts FLOPs only on a module's ``example_input_array`` and shows zeros
    without one."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        cols = [c for c in summary_data if total_flops or c[0] != "FLOPs"]
        table = _format_summary_table(total_parameters, trainable_parameters, model_size, total_training_modes,
                                      total_flops, *cols)
        if not total_flops:
            table = "\n".join(line for line in table.splitlines() if not line.endswith("Total Flops"))
        log.info("\n%s", table)


class RunStopped(SystemExit):
    """The run was stopped by a signal; ``code`` is 128 + the signal number, ``str()`` says what happened."""

    def __init__(self, signum: signal.Signals, detail: str = "") -> None:
        super().__init__(128 + int(signum))
        self.message = f"stopped by {signum.name}" + (f"; {detail}" if detail else "")

    def __str__(self) -> str:
        return self.message


def _signal_of(exc: BaseException) -> signal.Signals | None:
    """SIGTERM for Lightning's SIGTERMException, SIGINT for its ``sys.exit(1)`` after a KeyboardInterrupt."""
    if isinstance(exc, SIGTERMException):
        return signal.SIGTERM
    if isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, SystemExit) and isinstance(exc.__context__, KeyboardInterrupt)):
        return signal.SIGINT
    return None


class SaveOnSignal(L.Callback):
    """On SIGTERM or Ctrl+C in a training epoch: ``trainer.save_checkpoint(<dirpath>/<filename>.ckpt)`` (the
    mid-epoch state, resumable with ``ckpt_path=``); the path is kept in ``saved``. A stop during validation saves
    nothing: the last epoch's last.ckpt stands."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.dirpath, self.filename = Path(dirpath), filename
        self.saved: Path | None = None
        self.deferred: tuple | None = None  # (submitit's handler, signum, frame) once its signal came
        self.interrupted = False  # Ctrl+C came during fit: the stop at the next batch boundary is SIGINT's
        self._previous: Any = None
        self._previous_int: Any = None

    # submitit (hydra/launcher=slurm) requeues on USR2 (time limit, preemption) by calling sys.exit from its signal
    # handler, wherever training is. Its handler is deferred instead: Lightning stops at the next batch boundary as
    # for SIGTERM, this callback saves last.ckpt, and ``stopped`` then calls submitit's handler (requeue, exit).
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._graceful_ctrl_c(trainer)
        sig = getattr(signal, "SIGUSR2", None)
        if sig is None:
            return
        prev = signal.getsignal(sig)
        if not callable(prev) or not str(getattr(prev, "__module__", "")).startswith("submitit"):
            return

        def defer(signum: int, frame: Any) -> None:
            log.warning("%s from submitit: stopping at the next batch to save a checkpoint, then requeueing",
                        signal.Signals(signum).name)
            self.deferred = (prev, signum, frame)
            trainer._signal_connector.received_sigterm = True  # Lightning raises SIGTERMException at a batch end

        self._previous = prev
        signal.signal(sig, defer)

    def _graceful_ctrl_c(self, trainer: L.Trainer) -> None:
        """Ctrl+C during fit sets Lightning's stop flag (as SIGTERM does) while Python's own handler is in place;
        an ignored SIGINT (a background job) or another program's handler is left alone."""
        prev = signal.getsignal(signal.SIGINT)
        if prev is not signal.default_int_handler:
            return

        def stop_at_next_batch(signum: int, frame: Any) -> None:
            if self.interrupted:  # the second Ctrl+C: at once
                signal.signal(signal.SIGINT, prev)
                raise KeyboardInterrupt
            self.interrupted = True
            log.warning("Ctrl+C: stopping at the next batch to save a checkpoint (Ctrl+C again stops at once)")
            trainer._signal_connector.received_sigterm = True  # Lightning raises SIGTERMException at a batch end

        self._previous_int = prev
        signal.signal(signal.SIGINT, stop_at_next_batch)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if self._previous is not None:
            signal.signal(signal.SIGUSR2, self._previous)
            self._previous = None
        self._restore_ctrl_c()

    def _restore_ctrl_c(self) -> None:
        """Python's Ctrl+C handler back: at teardown, and on an exception, after which Lightning calls no
        teardown hook (a run stopped in-process must not leave a handler holding its trainer)."""
        if self._previous_int is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_int)
            self._previous_int = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_ctrl_c()
        if _signal_of(exception) is None or trainer.state.fn != TrainerFn.FITTING:
            return
        if not trainer.training:  # stopped in validation: Lightning cannot resume half-way through it; the
            return  # last.ckpt of the previous epoch stands
        # beside the last-epoch checkpoint, also when a resumed run continues in the folder of the one it resumed
        last = [cb.dirpath for cb in trainer.checkpoint_callbacks if cb.monitor is None and cb.dirpath
                and cb.filename == self.filename]
        path = Path(last[0] if last else self.dirpath) / f"{self.filename}.ckpt"
        try:
            # the full state (optimizer, loops, callbacks), said explicitly: left unset, Lightning logs
            # "`weights_only` was not set, defaulting to `False`" (a flag of the save, not of torch.load)
            trainer.save_checkpoint(path, weights_only=False)
        except Exception as e:  # noqa: BLE001 - stopping must go on; the message says the save failed
            log.error("stopping: could not save %s (%s)", path, e)
            return
        self.saved = path
        log.warning("stopping: saved %s at epoch %d, step %d", path, trainer.current_epoch, trainer.global_step)


def stopped(exc: BaseException, trainer: L.Trainer | None) -> RunStopped | None:
    """A RunStopped for an exit caused by SIGTERM/SIGINT/submitit's USR2 (naming the checkpoint saved, if any),
    else None; a deferred submitit handler is called first (it requeues the job)."""
    signum = _signal_of(exc)
    if signum is None:
        return None
    cbs = trainer.callbacks if trainer is not None else []
    if signum == signal.SIGTERM and any(isinstance(cb, SaveOnSignal) and cb.interrupted for cb in cbs):
        signum = signal.SIGINT  # Ctrl+C, stopped through Lightning's SIGTERM flag
    saved = next((cb.saved for cb in cbs if isinstance(cb, SaveOnSignal) and cb.saved is not None), None)
    deferred = next((cb.deferred for cb in cbs if isinstance(cb, SaveOnSignal) and cb.deferred), None)
    if deferred is not None:  # submitit's USR2: now that the checkpoint is saved, let it requeue the job
        handler, signum, frame = deferred
        signum = signal.Signals(signum)
        with contextlib.suppress(SystemExit):  # its exit after requeueing; RunStopped below exits instead
            handler(signum, frame)
    if saved is not None:
        return RunStopped(signum, f"checkpoint saved at the stop: resume with ckpt_path={saved}")
    last = next((cb.last_model_path or cb.best_model_path for cb in cbs if isinstance(cb, ModelCheckpoint)
                 and cb.monitor is None and (cb.last_model_path or cb.best_model_path)), None)
    if last:
        return RunStopped(signum, f"no checkpoint saved at the stop; resume with ckpt_path={last} (the last "
                                  "completed epoch)")
    return RunStopped(signum, "no checkpoint saved")

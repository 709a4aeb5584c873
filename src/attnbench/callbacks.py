"""Lightning callbacks and plugins of our own (imported when the run builds its trainer; this module loads
Lightning).

``ModelSummary``: Lightning's summary without an all-zero FLOPs column. Stopping by signal: save a checkpoint,
exit non-zero, and say what stopped the run. Surviving a kill: ``AtomicCheckpointIO`` (no truncated checkpoint),
``continue_csv_logs`` (a resumed run appends to the metrics.csv of the run it resumes), ``hpc_save_full_state``
(Lightning's SIGUSR1 save says what it saves).

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
import csv
import functools
import itertools
import logging
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import ModelSummary as _LightningModelSummary
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, IterableDataset

from attnbench import checkpoint

log = logging.getLogger(__name__)
# Lightning's warning on a resume from a mid-epoch checkpoint unless the training loader has a state_dict
_NOT_RESUMABLE = "You're resuming from a checkpoint that ended before the epoch ended"


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
    nothing: the last epoch's last.ckpt stands.

    The run resumed from that checkpoint continues the epoch as the stopped run would have: the training loader
    (a ``ResumableLoader``, installed at ``setup``) draws the epoch's shuffled order again and skips the batches
    already trained on, and the epoch's running means (``train/loss_epoch``) start from their values at the stop
    (``state_dict``). Lightning alone restarts the epoch's data in a new order and averages only the batches after
    the resume ("your dataloader is not resumable")."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.dirpath, self.filename = Path(dirpath), filename
        self.saved: Path | None = None
        self.deferred: tuple | None = None  # (submitit's handler, signum, frame) once its signal came
        self.interrupted = False  # Ctrl+C came during fit: the stop at the next batch boundary is SIGINT's
        self._previous: Any = None
        self._previous_int: Any = None
        self.loader: ResumableLoader | None = None  # the training loader of this fit
        self._stop_state: dict[str, Any] = {}  # what the stop's checkpoint holds to continue its epoch
        self._epoch: dict[str, Any] | None = None  # that state, loaded, until the resumed epoch has used it

    # ------------------------------------------------------------------ resuming mid-epoch
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if stage != "fit" or dm is None:
            return
        make = getattr(dm.train_dataloader, "__wrapped__", dm.train_dataloader)  # the datamodule's own

        @functools.wraps(make)
        def train_dataloader() -> Any:
            loader = ResumableLoader.of(make(), self)
            self.loader = loader if isinstance(loader, ResumableLoader) else None
            return loader

        dm.train_dataloader = train_dataloader

    def state_dict(self) -> dict[str, Any]:
        return self._stop_state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._epoch = dict(state_dict) if state_dict.get("batches") else None
        if self._epoch is not None:  # Lightning's "can cause unreliable results": not so here (_say_if_inexact
            # says where it is so)
            warnings.filterwarnings("ignore", message=_NOT_RESUMABLE, category=PossibleUserWarning)

    def _say_if_inexact(self, trainer: L.Trainer) -> None:
        """A fit resumed mid-epoch whose stop state this fit's training loader cannot use (not a plain DataLoader):
        the warning Lightning's would have given (without stop state, Lightning's own says it)."""
        if self._epoch is None:
            return
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        exact = self.loader is not None and (self.loader.resumed or self.loader._pending is not None)
        if trainer.fit_loop.restarting and 0 < done < trainer.num_training_batches and not exact:
            log.warning("resuming mid-epoch (%d of %d batches done) with a training loader that cannot continue the "
                        "epoch: the rest of it draws a new order of its data", done, trainer.num_training_batches)

    def resume_epoch(self) -> tuple[list, int] | None:
        """(RNG states before the epoch's order was drawn, batches trained on) of a fit resumed mid-epoch, once."""
        if self._epoch is None or "order_rng" not in self._epoch:
            return None
        return self._epoch.pop("order_rng"), int(self._epoch["batches"])

    def _epoch_state(self, trainer: L.Trainer) -> dict[str, Any]:
        """The stopped epoch's position, order and running epoch metrics (plain data), when it stopped half-way."""
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if self.loader is None or self.loader.order_rng is None or not 0 < done < trainer.num_training_batches:
            return {}
        results = {}
        for key, m in trainer.fit_loop.epoch_loop._results.items():
            if m.is_tensor and m.meta.on_epoch and not m.has_reset:
                n = m.cumulated_batch_size.detach().cpu() if m.meta.is_mean_reduction else None
                results[key] = [m.value.detach().cpu(), n]
        return {"batches": done, "order_rng": self.loader.order_rng, "epoch_results": results}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """The first batch after a mid-epoch resume: the epoch metrics' running values at the stop are added in
        (``stop + this batch`` is the sum the uninterrupted run formed, to the last bit)."""
        if self._epoch is None:
            return
        results = trainer.fit_loop.epoch_loop._results
        for key, (value, n) in self._epoch.pop("epoch_results", {}).items():
            m = results.get(key)
            if m is None:
                continue
            value = value.to(m.value.device, m.value.dtype)
            if m.meta.is_mean_reduction:
                m.value = value + m.value
                m.cumulated_batch_size = n.to(m.cumulated_batch_size.device) + m.cumulated_batch_size
            elif m.meta.is_sum_reduction:
                m.value = value + m.value
            else:  # max / min
                m.value = m.meta.reduce_fx(value, m.value)
        self._epoch = None

    # submitit (hydra/launcher=slurm) requeues on USR2 (time limit, preemption) by calling sys.exit from its signal
    # handler, wherever training is. Its handler is deferred instead: Lightning stops at the next batch boundary as
    # for SIGTERM, this callback saves last.ckpt, and ``stopped`` then calls submitit's handler (requeue, exit).
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._say_if_inexact(trainer)
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
        self._stop_state = self._epoch_state(trainer)
        try:
            # the full state (optimizer, loops, callbacks), said explicitly: left unset, Lightning logs
            # "`weights_only` was not set, defaulting to `False`" (a flag of the save, not of torch.load)
            trainer.save_checkpoint(path, weights_only=False)
        except Exception as e:  # noqa: BLE001 - stopping must go on; the message says the save failed
            log.error("stopping: could not save %s (%s)", path, e)
            return
        finally:
            self._stop_state = {}
        self.saved = path
        log.warning("stopping: saved %s at epoch %d, step %d", path, trainer.current_epoch, trainer.global_step)


# what a DataLoader keeps of its constructor's options, besides dataset and batching
_LOADER_OPTIONS = ("num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn", "multiprocessing_context",
                   "generator", "prefetch_factor", "persistent_workers", "pin_memory_device", "in_order")


class ResumableLoader(DataLoader):
    """A training DataLoader that records the RNG state from which each epoch's order is drawn (``order_rng``), and
    in a fit resumed mid-epoch (``SaveOnSignal.resume_epoch``) draws that order again from it, skips the batches
    already trained on (their indices: nothing is loaded) and leaves the global RNG as the checkpoint restored it
    (the draws of this iterator's creation undone), so dropout continues as in the stopped run. (With
    ``num_workers`` > 0, a dataset that draws random numbers as it loads draws them in workers started afresh.)"""

    def __init__(self, *args: Any, resume: SaveOnSignal, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume = resume
        self.order_rng: list | None = None  # [torch RNG state, loader generator state or None]
        self.resumed = False  # this loader continued a stopped epoch
        self._pending: tuple[list, int, torch.Tensor] | None = None

    @classmethod
    def of(cls, loader: Any, resume: SaveOnSignal) -> Any:
        """``loader`` rebuilt as a ResumableLoader (same dataset, sampler, batching, workers); anything but a plain
        map-style DataLoader comes back as it is."""
        if type(loader) is not DataLoader or isinstance(loader.dataset, IterableDataset):
            return loader
        batching = ({"batch_size": loader.batch_size, "drop_last": loader.drop_last, "sampler": loader.sampler}
                    if loader.batch_size is not None else {"batch_sampler": loader.batch_sampler})
        same = {k: getattr(loader, k) for k in _LOADER_OPTIONS if hasattr(loader, k)}  # (in_order: torch >= 2.6)
        if not same.get("pin_memory_device"):  # deprecated in newer torch: passed only when set
            same.pop("pin_memory_device", None)
        return cls(loader.dataset, **batching, **same, resume=resume)

    def __iter__(self) -> Any:
        resumed = self.resume.resume_epoch()
        if resumed is not None:  # the global RNG as the checkpoint left it, before this iterator draws its seed
            self._pending = (*resumed, torch.get_rng_state())
        return super().__iter__()

    @property
    def _index_sampler(self) -> Any:
        return _EpochOrder(super()._index_sampler, self)


class _EpochOrder:
    """The loader's index batches for one epoch, their RNG state recorded (or restored) at the order's draw."""

    def __init__(self, batches: Any, loader: ResumableLoader) -> None:
        self.batches, self.loader = batches, loader

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Any:  # runs at the first index fetch: where a shuffling sampler draws the epoch's order
        gen = self.loader.generator
        pending, self.loader._pending = self.loader._pending, None
        if pending is None:
            self.loader.order_rng = [torch.get_rng_state(), gen.get_state() if gen is not None else None]
            yield from self.batches
            return
        (rng, gen_state), skip, at_stop = pending
        torch.set_rng_state(rng)
        if gen is not None and gen_state is not None:
            gen.set_state(gen_state)
        self.loader.order_rng = [rng, gen_state]
        it = iter(self.batches)
        rest = list(itertools.islice(it, skip, skip + 1))  # the order drawn, the trained batches skipped
        torch.set_rng_state(at_stop)
        self.loader.resumed = True
        log.info("resuming mid-epoch: the epoch's order drawn again, %d batches already trained on skipped", skip)
        yield from rest
        yield from it


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


# ----------------------------------------------------------------------------- surviving a kill
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing local files with ``checkpoint.atomic_save`` (a temporary file in the
    same folder, fsync, rename): a process killed during the write leaves the previous ``last.ckpt`` or the new
    one. (Lightning's own writes a temporary file in the system's temp folder and moves it, which is a copy into
    the checkpoint itself where the two are different file systems, as on most clusters.) Remote paths
    (``s3://``) and ``storage_options`` go to Lightning's."""

    def save_checkpoint(self, checkpoint_: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint_, path, storage_options)
            return
        checkpoint.atomic_save(checkpoint_, path)


def resume_step(ckpt: dict[str, Any]) -> int:
    """The logging step a run resumed from ``ckpt`` continues at (Lightning logs at its count of batches that
    stepped an optimizer; the global step where the checkpoint does not hold it)."""
    loop = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    return int(loop.get("_batches_that_stepped", ckpt.get("global_step", 0)))


def _step_of(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")


class _ContinuedMetrics(ExperimentWriter):
    """Lightning's CSV writer for a resumed run: instead of deleting the ``metrics.csv`` it finds (Lightning's
    "Previous log files in this directory will be deleted"), it keeps the rows logged before ``step`` and appends.
    Rows from ``step`` on were logged after the checkpoint was written (the killed attempt went on); the resumed
    run logs those steps again."""

    def __init__(self, log_dir: str, step: int) -> None:
        self.step, self.kept, self.dropped = step, 0, 0
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = self.metrics_file_path
        if not self._fs.isfile(path):
            return
        with self._fs.open(path, "r", newline="") as f:
            reader = csv.DictReader(f)
            rows, keys = list(reader), list(reader.fieldnames or [])
        kept = [r for r in rows if _step_of(r) < self.step]
        self.kept, self.dropped = len(kept), len(rows) - len(kept)
        self.metrics_keys = keys  # the header: a new key later rewrites the file with the old rows in it
        if self.dropped:
            tmp = f"{path}.tmp"
            with self._fs.open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(kept)
            self._fs.mv(tmp, path)


def continue_csv_logs(trainer: L.Trainer, ckpt: dict[str, Any]) -> None:
    """A run resuming from ``ckpt``: each CSVLogger keeps the rows of its ``metrics.csv`` (the same file when the
    run continues in the same folder, as a requeued job does) logged before the checkpoint's step and appends its
    own, so the file holds every step once, as an uninterrupted run's. Call it before anything is logged."""
    if rank_zero_only.rank != 0:
        return
    step = resume_step(ckpt)
    for lg in trainer.loggers:
        if not isinstance(lg, CSVLogger):
            continue
        if lg._experiment is not None:
            raise RuntimeError("continue_csv_logs: the CSV logger already wrote its file; call it before logging")
        lg._fs.makedirs(lg.root_dir, exist_ok=True)  # what CSVLogger.experiment does before building its writer
        writer = _ContinuedMetrics(lg.log_dir, step)
        lg._experiment = writer
        if writer.kept or writer.dropped:
            log.info("resuming at step %d: %s keeps its %d earlier rows%s", step, writer.metrics_file_path,
                     writer.kept, f" ({writer.dropped} logged after the checkpoint dropped: they are logged again)"
                     if writer.dropped else "")


def hpc_save_full_state(trainer: L.Trainer) -> None:
    """Lightning's SLURM auto-requeue (SIGUSR1) saves ``hpc_ckpt_<n>.ckpt`` with ``trainer.save_checkpoint(path)``,
    leaving ``weights_only`` unset, which logs "`weights_only` was not set, defaulting to `False`": the same save
    of the full state, said explicitly. Call it before ``fit`` (which installs the signal handlers)."""
    connector = trainer._signal_connector
    lightning_handler = getattr(connector, "_slurm_sigusr_handler_fn", None)
    if lightning_handler is None:  # another Lightning version: its save as it is
        return

    def handler(signum: Any, frame: Any) -> None:
        trainer.save_checkpoint = functools.partial(type(trainer).save_checkpoint, trainer, weights_only=False)
        try:
            lightning_handler(signum, frame)
        finally:
            del trainer.save_checkpoint

    connector._slurm_sigusr_handler_fn = handler

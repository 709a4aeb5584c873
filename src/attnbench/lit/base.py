"""What every LightningModule here shares: val/test steps through ``_eval_step``, the optimizer and scheduler built
from config, and checkpoints that hold plain data only (hparams as config dicts, RNG states as tensors/lists) so
they load with ``weights_only=True``; a resumed fit restores the RNG states and extends the LR schedule."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from attnbench import checkpoint
from attnbench.errors import ConfigError

log = logging.getLogger(__name__)
Interval = Literal["epoch", "step"]  # scheduler_interval: when the scheduler steps
Mode = Literal["min", "max"]  # monitor_mode: whether the monitored metric improves down or up


def plain(value: Any) -> Any:
    """``value`` as plain data: a (Hydra ``_partial_``) functools.partial -> ``{"_target_": dotted path, **kwargs}``,
    OmegaConf containers -> dicts/lists; the rest as is."""
    if isinstance(value, functools.partial):
        if value.args:
            raise TypeError(f"cannot store a partial with positional arguments {value.args} as config")
        fn = value.func
        return {"_target_": f"{fn.__module__}.{fn.__qualname__}", **{k: plain(v) for k, v in value.keywords.items()}}
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def factory(spec: Any) -> Any:
    """A callable from a partial (as passed by Hydra) or from its plain config dict (as stored in hparams)."""
    if spec is None or callable(spec):
        return spec
    return instantiate(spec, _partial_=True, _convert_="all")


def _replay(sched: LRScheduler, build: Callable[[Optimizer], LRScheduler | None]) -> LRScheduler | None:
    """This run's scheduler (``build``) on a stand-in optimizer with ``sched``'s base learning rates, stepped
    ``sched.last_epoch`` times: the state an uninterrupted run of this run's schedule holds at the restored step.
    None for a scheduler stepped on a metric (ReduceLROnPlateau: no schedule to replay)."""
    if isinstance(sched, ReduceLROnPlateau):
        return None
    stand_in = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(()))], "lr": lr} for lr in sched.base_lrs])
    fresh = build(stand_in)
    stand_in.step()  # no gradients, no change: the scheduler's check that the optimizer stepped first
    for _ in range(sched.last_epoch):
        fresh.step()
    return fresh


class ConfiguredModule(L.LightningModule):
    """Subclasses call ``save_plain_hyperparameters()`` (``optimizer``, ``scheduler``, ``scheduler_interval`` and
    ``monitor`` among their arguments) and define ``_eval_step(batch, stage)``.

    ``run_config`` (the run's resolved config, set by ``attnbench.train.run``) is saved in every checkpoint.
    """

    run_config: dict | None = None
    # True when the module can be tested as built, without training or a checkpoint (``train=false`` with no
    # ``ckpt_path``): a pretrained net fine-tuned for the task, head included (see lit.text_classification)
    evaluable_untrained: bool = False
    # state_dict keys that may differ between a checkpoint and this model (e.g. swapped-in attention buffers)
    checkpoint_ignore: tuple[str, ...] = ()
    _resuming: bool = False  # set by on_load_checkpoint when a fit resumes; the schedule is extended at train start

    def save_plain_hyperparameters(self) -> None:
        """``save_hyperparameters`` with the optimizer/scheduler partials kept as callables on the module and stored
        in hparams (and so in checkpoints) as plain config dicts."""
        self.save_hyperparameters(ignore=["net"], logger=False, frame=_caller_frame())
        self._factories = {k: factory(self.hparams.get(k)) for k in ("optimizer", "scheduler")}
        for k in list(self.hparams):
            self.hparams[k] = plain(self.hparams[k])

    def _eval_step(self, batch, stage: str) -> None:
        raise NotImplementedError

    def add_aux_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the auxiliary losses of the submodules (``models.interfaces.AuxLoss``, e.g. Treeformer's
        balance loss with its weight > 0), logged as ``train/aux_loss``; ``loss`` itself when there are none.
        Task modules call it on their training loss."""
        from attnbench.models.interfaces import AuxLoss

        terms = [t for m in self.modules() if m is not self and isinstance(m, AuxLoss)
                 if (t := m.aux_loss()) is not None]
        if not terms:
            return loss
        aux = torch.stack([t.float() for t in terms]).sum()
        self.log("train/aux_loss", aux, on_step=True, on_epoch=True, batch_size=1)
        return loss + aux

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def build(self, key: str, **kwargs: Any) -> Any:
        """The ``optimizer`` or ``scheduler`` of the config called with ``kwargs`` (None when unset)."""
        make = getattr(self, "_factories", {}).get(key) or factory(self.hparams.get(key))
        return None if make is None else make(**kwargs)

    def build_scheduler(self, optimizer: Optimizer) -> LRScheduler | None:
        """The ``scheduler`` of the config on ``optimizer`` (None when unset); ``configure_optimizers`` and a resumed
        fit (``_extend_schedules``) build it here, so a subclass that passes more arguments overrides this."""
        return self.build("scheduler", optimizer=optimizer)

    def configure_optimizers(self):
        opt = self.build("optimizer", params=self.parameters())
        sched = self.build_scheduler(opt)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": self.hparams.scheduler_interval,
                                                   "monitor": self.hparams.monitor}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, ckpt: dict[str, Any]) -> None:
        ckpt[checkpoint.RNG_KEY] = checkpoint.rng_state()
        if self.run_config is not None:
            ckpt[checkpoint.CONFIG_KEY] = self.run_config

    def on_load_checkpoint(self, ckpt: dict[str, Any]) -> None:
        checkpoint.unwrap_compiled(ckpt["state_dict"])  # Lightning loads the weights after this hook
        if self._trainer is None or self.trainer.state.fn != TrainerFn.FITTING:
            return
        # resuming fit: the RNG states now, before Lightning builds the train loader's iterator (its sampler seed);
        # the schedule once the scheduler state is restored (on_train_start)
        self._resuming = True
        state = ckpt.get(checkpoint.RNG_KEY)
        if state is not None:
            checkpoint.set_rng_state(state)
        else:
            log.warning("resuming from a checkpoint without RNG state: shuffling and dropout restart from the seed")

    def on_train_start(self) -> None:
        if self._resuming:
            self._resuming = False
            self._extend_schedules()

    def _extend_schedules(self) -> None:
        """Resume with this run's schedule: the scheduler is rebuilt from this run's config (e.g. ``T_max`` =
        ``trainer.max_epochs``) and replayed to the restored step (``_replay``); its state and learning rates replace
        the checkpoint's, so a larger budget extends the schedule instead of training on at its end value."""
        spec = {k: v for k, v in (self.hparams.get("scheduler") or {}).items() if not k.startswith("_")}
        for conf in self.trainer.lr_scheduler_configs:
            sched = conf.scheduler
            old = sched.state_dict()
            fresh = _replay(sched, self.build_scheduler)
            new = spec if fresh is None else fresh.state_dict()
            changed = {k: (old[k], new[k]) for k in spec if k in old and k in new and old[k] != new[k]}
            if fresh is None:
                if changed:
                    raise ConfigError(f"resuming with model.scheduler values changed from the checkpoint's "
                                      f"({', '.join(f'{k}: {a} -> {b}' for k, (a, b) in changed.items())}) but "
                                      f"{type(sched).__name__} follows a metric and cannot be replayed to step "
                                      f"{sched.last_epoch}: resume with the checkpoint's values")
                continue
            before = [group["lr"] for group in sched.optimizer.param_groups]
            sched.load_state_dict(new)
            lrs = sched.get_last_lr()
            for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
            if changed or lrs != before:
                log.info("resuming: model.scheduler %s (this run's budget); lr at step %d is now %s (was %s)",
                         ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) or "as configured",
                         sched.last_epoch, lrs, before)


def build_over_training_steps(module: ConfiguredModule, optimizer: Optimizer) -> LRScheduler | None:
    """``build_scheduler`` of the fine-tuning modules (``scheduler_interval="step"``, a ``warmup_ratio``
    hyperparameter): the scheduler (e.g. transformers' linear warm-up/decay) takes ``num_training_steps``, the
    trainer's estimate, and ``num_warmup_steps``, ``warmup_ratio`` of it."""
    if module.hparams.get("scheduler") is None:
        return None
    total = int(module.trainer.estimated_stepping_batches)
    return module.build("scheduler", optimizer=optimizer, num_training_steps=total,
                        num_warmup_steps=int(module.hparams.warmup_ratio * total))


def _caller_frame():
    """The frame of the subclass ``__init__`` that called ``save_plain_hyperparameters``."""
    import inspect

    frame = inspect.currentframe()
    return frame.f_back.f_back if frame is not None and frame.f_back is not None else None


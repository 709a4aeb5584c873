"""Long Range Arena classification: ``ClassificationModule`` (cross-entropy; ``val/acc``, ``test/acc``, AUC beside)
with the LRA optimizer and schedule in its config (``conf/model/optim/lra_rsqrt.yaml``, ``lra_cosine.yaml``: Adam
b1 0.9, b2 0.98, eps 1e-9 with decoupled weight decay = ``torch.optim.AdamW``, and ``lit.schedules.lra_schedule``).

A class of its own so its schema (``config.LRAModelConfig``) can take the optimizer's ``eps``; the batches are
``(tokens, labels)`` as every LRA task module writes them (``data.lra.common``), two-tower tokens included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnbench.lit.base import Interval, Mode
from attnbench.lit.classification import ClassificationModule, ClassWeights


class LRAModule(ClassificationModule):
    """``ClassificationModule`` over ``models.lra.LRAEncoder``; no class weights by default (the official loss)."""

    def __init__(
        self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer], n_classes: int,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        class_weights: ClassWeights = "none", scheduler_interval: Interval = "step", monitor: str = "val/acc",
        monitor_mode: Mode = "max", compile: bool = False,
    ) -> None:
        super().__init__(net, optimizer, n_classes, scheduler=scheduler, class_weights=class_weights,
                         scheduler_interval=scheduler_interval, monitor=monitor, monitor_mode=monitor_mode,
                         compile=compile)

"""Classification LightningModule: cross-entropy (optionally class-weighted), ACC and AUC on val/test.

Metrics follow ``medmnist.Evaluator``: ACC is the accuracy of the arg-max class (for two classes: score of
class 1 >= 0.5, the same thing); AUC is the ROC AUC of the class-1 score for binary tasks and the mean of
the one-vs-rest AUCs (macro) for multi-class tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, MulticlassAccuracy, MulticlassAUROC

from attnbench.data.base import ClassCounted
from attnbench.lit.base import ConfiguredModule, Interval, Mode
from attnbench.signatures import check_literals

ClassWeights = Literal["none", "inverse"]  # class_weights: none, or 1 / train count per class


def inverse_frequency_weights(counts: list[int]) -> Tensor:
    """w_c proportional to 1 / count_c, normalised to sum 1 (the HOT code); empty classes get weight 0."""
    c = torch.tensor(counts, dtype=torch.float32)
    w = torch.where(c > 0, 1.0 / c.clamp_min(1.0), torch.zeros_like(c))
    return w / w.sum()


class ClassificationModule(ConfiguredModule):
    """Trains any ``net: x -> (B, n_classes)`` logits.

    class_weights: "none" or "inverse" (1 / train count per class, read from the datamodule's
    ``class_counts`` at fit time).
    """

    def __init__(
        self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer], n_classes: int,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        class_weights: ClassWeights = "inverse", scheduler_interval: Interval = "epoch", monitor: str = "val/acc",
        monitor_mode: Mode = "max", compile: bool = False,
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes={n_classes} must be >= 2")
        check_literals(ClassificationModule.__init__, class_weights=class_weights)
        self.save_plain_hyperparameters()
        self.net = net
        if compile:
            net.compile()  # in place: the state_dict keeps its keys (torch.compile(net) would add `_orig_mod.`)
        self.n_classes, self.binary = n_classes, n_classes == 2
        self.register_buffer("class_w", torch.ones(n_classes), persistent=False)
        for stage in ("val", "test"):
            if self.binary:
                ms = {"acc": BinaryAccuracy(), "auc": BinaryAUROC()}
            else:
                ms = {"acc": MulticlassAccuracy(n_classes, average="micro"),
                      "auc": MulticlassAUROC(n_classes, average="macro")}
            setattr(self, f"{stage}_metrics", MetricCollection(ms, prefix=f"{stage}/"))

    def setup(self, stage: str) -> None:
        if self.hparams.class_weights == "inverse" and stage == "fit":
            dm = self.trainer.datamodule if self._trainer is not None else None
            if not isinstance(dm, ClassCounted) or dm.class_counts is None:
                raise ValueError(f"class_weights=inverse needs a datamodule with class_counts after setup "
                                 f"(data.base.ClassCounted); got {type(dm).__name__}")
            self.class_w = inverse_frequency_weights(dm.class_counts).to(self.class_w.device) * self.n_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.float(), y, weight=self.class_w)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return self.add_aux_loss(loss)

    def test_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        """Scores the batch; returns it for callbacks (``lit.artifacts.PredictionArtifacts`` saves it)."""
        return self._eval_step(batch, "test")

    def _eval_step(self, batch, stage: str) -> dict[str, Tensor]:
        x, y = batch
        logits = self(x).float()
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), on_epoch=True, batch_size=len(y))
        prob = logits.softmax(-1)
        m = getattr(self, f"{stage}_metrics")
        m.update(prob[:, 1] if self.binary else prob, y)
        self.log_dict(m, on_step=False, on_epoch=True, prog_bar=True)
        return {"probs": prob.detach(), "target": y.detach()}  # (B, C), (B,)

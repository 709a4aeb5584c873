"""GLUE (and IMDB) fine-tuning of a pretrained HF classifier: its own loss, the task's GLUE metrics on val/test.

Metrics per task (GLUE): CoLA Matthews correlation; SST-2, MNLI (matched, mismatched), QNLI, RTE, WNLI accuracy;
MRPC and QQP F1 and accuracy; STS-B Pearson and Spearman correlations; IMDB accuracy. ``<stage>/score`` is the
mean of the task's metrics (the GLUE leaderboard's per-task number), in percent like the papers' tables, and is
what checkpoints and early stopping follow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, BinaryMatthewsCorrCoef, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from attnbench.data.catalog import TEXT_TASKS
from attnbench.errors import ConfigError
from attnbench.lit.base import ConfiguredModule, Interval, Mode, build_over_training_steps
from attnbench.lit.hf_mlm import init_encoder
from attnbench.lit.treeformer import TreeBootstrap
from attnbench.models.interfaces import PretrainedNet

log = logging.getLogger(__name__)


def glue_metrics(task: str) -> dict[str, Metric]:
    """torchmetrics objects of a GLUE task (or IMDB), keyed by the catalogue's metric names."""
    t = TEXT_TASKS[task]
    make = {"mcc": BinaryMatthewsCorrCoef, "f1": BinaryF1Score, "pearson": PearsonCorrCoef,
            "spearman": SpearmanCorrCoef,
            "acc": BinaryAccuracy if t.n_labels == 2 else lambda: MulticlassAccuracy(t.n_labels, average="micro")}
    return {m: make[m]() for m in t.metrics}


class TextClassificationModule(ConfiguredModule):
    """Trains ``net(**batch) -> .loss, .logits`` (an ``AutoModelForSequenceClassification``) on a GLUE task.

    ``scheduler`` may take ``num_training_steps`` (e.g. transformers' linear warmup/decay): it is filled in
    from the trainer's estimate. ``init_from``: a checkpoint of MLM continued pre-training
    (``experiment=treeformer/mlm``) whose encoder replaces the pretrained one when fitting starts
    (``lit.hf_mlm.init_encoder``; a resumed run's checkpoint is restored after it and wins).
    """

    def __init__(self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer], task: str,
                 scheduler: Callable | None = None, scheduler_interval: Interval = "step", warmup_ratio: float = 0.1,
                 monitor: str = "val/score", monitor_mode: Mode = "max", init_from: str | None = None) -> None:
        super().__init__()
        if task not in TEXT_TASKS:
            raise ValueError(f"task={task!r}; allowed: {', '.join(TEXT_TASKS)}")
        self.save_plain_hyperparameters()
        self.net, self.task = net.train(), TEXT_TASKS[task]  # from_pretrained returns eval mode; Lightning keeps it
        # swapped-in attention buffers follow the model, not the checkpoint
        self.checkpoint_ignore = tuple(net.attnbench_model_state) if isinstance(net, PretrainedNet) else ()
        for stage in ("val", "test"):
            setattr(self, f"{stage}_metrics", MetricCollection(glue_metrics(task), prefix=f"{stage}/"))

    @property
    def evaluable_untrained(self) -> bool:
        """True when every weight came from a checkpoint fine-tuned for the task (train=false needs no ckpt)."""
        return isinstance(self.net, PretrainedNet) and bool(self.net.attnbench_trained_head)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Load weights across attention swaps (SMYRF's interchangeability: train with SMYRF, test dense, or the
        reverse): the swapped-in attention's own buffers (e.g. SMYRF's seeded projections) follow the model
        being loaded into, not the checkpoint."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        own = self.state_dict()
        ours = [k for k in {*state, *own} if any(part in k for part in self.checkpoint_ignore)]
        for key in ours:
            if key not in own:
                del state[key]
            elif key not in state:
                state[key] = own[key]

    def setup(self, stage: str) -> None:
        path = self.hparams.get("init_from")
        if stage != "fit" or not path:
            return
        dense = [cb.dense_checkpoint for cb in self.trainer.callbacks
                 if isinstance(cb, TreeBootstrap) and cb.dense_checkpoint]
        if dense:
            raise ConfigError(f"model.init_from={path!r} and callbacks.tree_bootstrap.dense_checkpoint={dense[0]!r} "
                              "both set the weights: keep one (set the other to null)")
        moved = init_encoder(self.net, path, "model.init_from")
        log.info("model.init_from: encoder from %s (%d tensors kept at their init: %s)", path, len(moved["kept"]),
                 ", ".join(moved["kept"][:4]) + (" ..." if len(moved["kept"]) > 4 else ""))
        if moved["unused"]:
            log.warning("model.init_from: %d attention tensors of the checkpoint are not in this model (e.g. %s)",
                        len(moved["unused"]), moved["unused"][0])

    def forward(self, batch: dict) -> Tensor:
        return self.net(**{k: v for k, v in batch.items() if k != "labels"}).logits

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.net(**batch).loss
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["labels"]))
        return self.add_aux_loss(loss)

    def _eval_step(self, batch: dict, stage: str) -> None:
        out = self.net(**batch)
        y = batch["labels"]
        self.log(f"{stage}/loss", out.loss, on_epoch=True, batch_size=len(y))
        logits = out.logits.float()
        pred = logits.squeeze(-1) if self.task.n_labels == 1 else logits.argmax(-1)
        getattr(self, f"{stage}_metrics").update(pred, y)

    def _epoch_end(self, stage: str) -> None:
        m = getattr(self, f"{stage}_metrics")
        values = {k: 100.0 * v for k, v in m.compute().items()}  # percent, as GLUE tables
        values[f"{stage}/score"] = torch.stack(list(values.values())).mean()
        self.log_dict(values, prog_bar=True)
        m.reset()

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    build_scheduler = build_over_training_steps

"""Sequence-to-sequence training: teacher-forced cross-entropy; greedy decoding scored on val/test.

Logged per stage: ``<stage>/loss`` (teacher-forced cross-entropy per target token, EOS included, padding
excluded), ``<stage>/acc_tf`` (teacher-forced next-token accuracy), and from greedy decoding
(``Seq2SeqTransformer.greedy``): ``<stage>/acc`` (token accuracy over the target positions, EOS included: a
sequence stopped early or run on is wrong where it differs) and ``<stage>/exact`` (the share of sequences decoded
exactly, up to and including EOS).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnbench.data.lra.common import PAD_ID
from attnbench.lit.base import ConfiguredModule, Interval, Mode


class Seq2SeqModule(ConfiguredModule):
    """Trains ``net(src, tgt_in) -> (B, T, vocab)`` logits with ``net.greedy(src, steps)`` (models.seq2seq)."""

    def __init__(
        self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        scheduler_interval: Interval = "epoch", label_smoothing: float = 0.0, monitor: str = "val/loss",
        monitor_mode: Mode = "min",
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must lie in [0, 1)")
        self.save_plain_hyperparameters()
        self.net = net

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        return self.net(src, tgt_in)

    def _loss(self, logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=PAD_ID,
                               label_smoothing=smoothing)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        src, tgt_in, labels = batch  # (B, S), (B, T), (B, T)
        loss = self._loss(self(src, tgt_in), labels, self.hparams.label_smoothing)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=int((labels != PAD_ID).sum()))
        return loss

    def _eval_step(self, batch, stage: str) -> None:
        src, tgt_in, labels = batch
        real = labels != PAD_ID  # (B, T)
        n_tok, n_seq = int(real.sum()), labels.shape[0]
        logits = self(src, tgt_in)
        self.log(f"{stage}/loss", self._loss(logits, labels, 0.0), on_epoch=True, batch_size=n_tok)
        tf_hit = (logits.argmax(-1) == labels) & real
        self.log(f"{stage}/acc_tf", tf_hit.sum() / n_tok, on_epoch=True, batch_size=n_tok)
        pred = self.net.greedy(src, labels.shape[1])  # (B, T)
        hit = (pred == labels) & real
        self.log(f"{stage}/acc", hit.sum() / n_tok, on_epoch=True, prog_bar=True, batch_size=n_tok)
        exact = (hit | ~real).all(dim=1).float().mean()
        self.log(f"{stage}/exact", exact, on_epoch=True, prog_bar=True, batch_size=n_seq)

"""Forecasting LightningModule: MSE loss, MSE/MAE metrics per horizon, AdamW + schedule from config."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from attnbench.lit.base import ConfiguredModule, Interval, Mode
from attnbench.models.interfaces import CalendarForecaster, Forecaster, missing


class ForecastingModule(ConfiguredModule):
    """Trains any ``net: (B, seq_len, C) -> (B, pred_len, C)`` that declares its lengths
    (``models.interfaces.Forecaster``); a ``CalendarForecaster`` (Informer) is also given the batch's calendar
    features, ``net(x, x_mark, y_mark)``.

    Scores the last ``n_targets`` variables (all for features M, the target for S/MS). ``horizons``
    lists prefixes of the forecast to score separately (e.g. 96/192/336/720 of one 720-step head, the
    official HOT protocol); the loss is then the mean of their MSEs and ``val/mse`` that of the longest.
    ``val/mae_avg`` (also with one horizon) is the MAE averaged over the horizons, the official monitor.
    """

    def __init__(
        self, net: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None, n_targets: int = 1,
        horizons: Sequence[int] | None = None, scheduler_interval: Interval = "epoch", compile: bool = False,
        monitor: str = "val/mse", monitor_mode: Mode = "min",
    ) -> None:
        super().__init__()
        if not isinstance(net, Forecaster):
            raise TypeError(f"{type(net).__name__} is not a Forecaster: it lacks {', '.join(missing(net, Forecaster))}")
        self.save_plain_hyperparameters()
        self.calendar = isinstance(net, CalendarForecaster)
        self.net = net
        if compile:
            net.compile()  # in place: the state_dict keeps its keys (torch.compile(net) would add `_orig_mod.`)
        self.n_targets = n_targets
        self.pred_len = pred_len = net.pred_len
        self.horizons = sorted(horizons) if horizons else [pred_len]
        if self.horizons[-1] > pred_len or self.horizons[0] < 1:
            raise ValueError(f"horizons={list(self.horizons)} must lie in [1, pred_len={pred_len}]")
        self.multi = len(self.horizons) > 1
        for stage in ("val", "test"):
            for h in self.horizons:
                sfx = f"_{h}" if self.multi else ""
                setattr(self, f"{stage}_metrics{h}", MetricCollection(
                    {"mse": MeanSquaredError(), "mae": MeanAbsoluteError()}, prefix=f"{stage}/", postfix=sfx))

    def forward(self, x: Tensor, x_mark: Tensor | None = None, y_mark: Tensor | None = None) -> Tensor:
        """x (B, seq_len, C); x_mark (B, seq_len, F), y_mark (B, label_len + pred_len, F): calendar nets only."""
        return self.net(x, x_mark, y_mark) if self.calendar else self.net(x)

    def _predict(self, batch) -> tuple[Tensor, Tensor]:
        x, y = batch[0], batch[1]
        marks = batch[2:4] if self.calendar else ()
        out = self(x, *marks)[:, :, -self.n_targets:]  # (B, pred_len, n_targets)
        tgt = y[:, -self.pred_len:, -self.n_targets:]
        return out, tgt

    def training_step(self, batch, batch_idx: int) -> Tensor:
        out, tgt = self._predict(batch)
        loss = torch.stack([F.mse_loss(out[:, :h], tgt[:, :h]) for h in self.horizons]).mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(out))
        return self.add_aux_loss(loss)

    def test_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        """Scores the batch; returns it for callbacks (``lit.artifacts.PredictionArtifacts`` saves it)."""
        return self._eval_step(batch, "test")

    def _eval_step(self, batch, stage: str) -> dict[str, Tensor]:
        out, tgt = self._predict(batch)
        for h in self.horizons:
            m = getattr(self, f"{stage}_metrics{h}")
            m.update(out[:, :h].float().flatten(), tgt[:, :h].float().flatten())
            self.log_dict(m, on_step=False, on_epoch=True, prog_bar=(h == self.horizons[-1]))
        # MAE averaged over the horizons (the official HOT early-stopping monitor, val-avg-mae); the batch mean
        # weighted by batch size is the exact epoch mean, every window having h x n_targets values per horizon
        mae_avg = torch.stack([F.l1_loss(out[:, :h].float(), tgt[:, :h].float()) for h in self.horizons]).mean()
        # sync_dist: under DDP every rank's share enters the epoch mean, so all ranks agree on the monitor
        self.log(f"{stage}/mae_avg", mae_avg, on_epoch=True, batch_size=len(out), sync_dist=True)
        if self.multi:  # alias of the longest horizon, the monitor of early stopping/checkpoints
            self.log(f"{stage}/mse", F.mse_loss(out.float(), tgt.float()), on_epoch=True, batch_size=len(out),
                     sync_dist=True)
        # (B, pred_len, n_targets) twice, and the input of the last variable (B, seq_len)
        return {"forecast": out.detach(), "target": tgt.detach(), "history": batch[0][:, :, -1].detach()}
